"""Named exceptions for everything a user can cause in the engine.

Every message says what was wrong and what to do about it; the CLI prints the
message without a traceback.
"""

from __future__ import annotations

from mgc.kernels import MgcError

__all__ = [
    "MgcError",
    "EngineError",
    "AudioError",
    "CorpusError",
    "SpecError",
    "StoreError",
    "SpecMismatchError",
    "StoreLockedError",
    "AUDIO_ERROR_KINDS",
    "MgcWarning",
    "check_at_least",
]

# Reasons a single track cannot be used. They are written verbatim into the
# failures table of a shard, so keep them short, stable and lower_snake_case.
AUDIO_ERROR_KINDS = {
    "missing": "the file does not exist",
    "is_directory": "the path is a directory, not an audio file",
    "not_a_file": "the path is a pipe, socket or device, not a regular file (reading it could block forever)",
    "permission": "the file exists but cannot be read by this user",
    "empty": "the file has zero bytes",
    "unsupported": "the file's format is not one soundfile (libsndfile) can decode",
    "unreadable": "the file is not valid audio (wrong content or corrupt header)",
    "bad_sample_rate": "the sample rate is outside the accepted range",
    "too_many_channels": "the file has more channels than accepted",
    "too_long": "the audio to use is longer than accepted",
    "truncated": "the file ends before the length its header declares",
    "corrupt": "the audio stream is damaged and could not be decoded completely",
    "no_samples": "the file (or the requested offset/duration window) holds no samples",
    "non_finite": "the audio holds NaN or infinite samples",
    "too_short": "the audio is shorter than one analysis frame (n_fft samples)",
    "non_finite_features": "the features hold NaN or inf (float samples far beyond -1..1 overflow the power spectrum)",
    "crashed": "the worker process died twice while decoding or computing this track",
    "internal": "an unexpected error while processing this track (please report it)",
}


class EngineError(MgcError):
    """Base class of every error the engine raises on purpose."""


class AudioError(EngineError):
    """One audio file cannot be used.

    Parameters
    ----------
    kind : str
        One of the keys of ``AUDIO_ERROR_KINDS``.
    path : str
        The file concerned.
    detail : str, optional
        What the decoder said, when it said something useful.
    """

    def __init__(self, kind: str, path, detail: str = "") -> None:
        if kind not in AUDIO_ERROR_KINDS:
            raise ValueError(f"unknown audio error kind {kind!r}")
        self.kind = kind
        self.path = str(path)
        self.detail = detail
        message = f"{self.path}: {AUDIO_ERROR_KINDS[kind]}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class CorpusError(EngineError, ValueError):
    """The corpus folder or manifest cannot be listed (bad path, bad CSV)."""


class SpecError(EngineError, ValueError):
    """A FeatureSpec field has an invalid value."""


class StoreError(EngineError):
    """A feature store is missing, damaged or of an unknown schema version."""


class SpecMismatchError(StoreError):
    """The store exists and was made with another spec or other run options."""


class StoreLockedError(StoreError):
    """Another extraction is writing into the same store right now."""


class MgcWarning(UserWarning):
    """Something a user should know that does not stop the work (a stray file, an empty label).

    Raised with ``warnings.warn(message, MgcWarning)``; the CLI prints each as one
    ``warning:`` line, a library user sees Python's usual warning.
    """


def check_at_least(name: str, value, low, *, strict: bool = False) -> None:
    """Refuse ``value`` below ``low`` (``strict``: not above it); None passes (it means "the default").

    The one wording of every range check, in the CLI (``name`` is the flag) and in the
    library's configs (``name`` is the field): "NAME must be at least 1, got 0".

    Raises
    ------
    MgcError
    """
    if value is None:
        return
    if value != value or (value <= low if strict else value < low):  # NaN fails too
        bound = f"greater than {low}" if strict else f"at least {low}"
        raise MgcError(f"{name} must be {bound}, got {value}")
