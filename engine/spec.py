"""The feature spec: every parameter that changes the numbers in a store."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from mgc.kernels.validate import one_of, positive_int, real_number

from .errors import SpecError

__all__ = ["FeatureSpec", "FEATURES", "SPEC_PRESETS"]

# Feature name -> (what it is, dtype choices). Bins: logmel has n_mels, mfcc n_mfcc.
FEATURES = ("logmel", "mfcc")
LOGMEL_DTYPES = ("float16", "float32")
LOG_SCALES = ("db", "log10_1p")


@dataclass(frozen=True)
class FeatureSpec:
    """Parameters of the features written into a store.

    The defaults are librosa 0.11's for ``melspectrogram``/``power_to_db``/``mfcc``
    (``ref=1.0``, ``amin=1e-10``, Hann window, centred frames, zero padding).

    Parameters
    ----------
    sr : int
        Sample rate every track is resampled to (soxr, "HQ").
    n_fft, hop_length : int
        Frame length and hop, in samples at ``sr``.
    n_mels, fmin, fmax, htk, norm :
        Mel filterbank, as ``librosa.filters.mel``.
    top_db : float or None
        Dynamic range of the dB scale, relative to the maximum of the whole track.
    n_mfcc : int
        Number of MFCC coefficients (DCT-II, orthonormal, no liftering).
    features : tuple of str
        Which of ``"logmel"`` and ``"mfcc"`` to store.
    logmel_dtype : str
        On-disk dtype of the log-mel array, ``"float16"`` (default, half the size)
        or ``"float32"``. MFCC are always stored as float32. Reads return float32.
    log_scale : str
        ``"db"`` (default): ``power_to_db`` as above. ``"log10_1p"``: musicnn's
        ``log10(1 + 10000 * mel power)``, computed as musicnn did (the mel
        power cast to float16 first, the log in float32), for
        ``mgc.models.pretrained``'s front-end; it needs ``top_db=None`` and no MFCC.
        Left out of ``to_dict`` (and so of ``hash``) when ``"db"``, so the specs
        of stores made before it existed keep their hash.
    """

    sr: int = 22050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = False
    norm: str | None = "slaney"
    top_db: float | None = 80.0
    n_mfcc: int = 20
    features: tuple[str, ...] = FEATURES
    logmel_dtype: str = "float16"
    log_scale: str = "db"

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        for name in ("sr", "n_fft", "hop_length", "n_mels", "n_mfcc"):
            object.__setattr__(self, name, positive_int(name, getattr(self, name), error=SpecError))
        nyquist = self.sr / 2
        fmax = nyquist if self.fmax is None else self.fmax
        if not 0 <= self.fmin < fmax <= nyquist:
            raise SpecError(
                f"need 0 <= fmin < fmax <= sr/2, got fmin={self.fmin!r}, fmax={self.fmax!r} at sr={self.sr}"
            )
        one_of("norm", self.norm, ("slaney", None), error=SpecError)
        if self.top_db is not None:
            real_number("top_db", self.top_db, minimum=0, error=SpecError)
        if not self.features or len(set(self.features)) != len(self.features):
            raise SpecError(f"features must be a non-empty list without repeats, got {list(self.features)}")
        for feature in self.features:
            one_of("feature", feature, FEATURES, error=SpecError)
        one_of("logmel_dtype", self.logmel_dtype, LOGMEL_DTYPES, error=SpecError)
        one_of("log_scale", self.log_scale, LOG_SCALES, error=SpecError)
        if self.log_scale != "db" and (self.top_db is not None or "mfcc" in self.features):
            raise SpecError(f"log_scale={self.log_scale!r} needs top_db=None and no mfcc (both belong to the dB scale)")
        if "mfcc" in self.features and self.n_mfcc > self.n_mels:
            raise SpecError(f"n_mfcc ({self.n_mfcc}) cannot exceed n_mels ({self.n_mels})")

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field (``features`` as a list)."""
        out = asdict(self)
        out["features"] = list(self.features)
        if out["log_scale"] == "db":
            del out["log_scale"]  # specs from before log_scale existed keep their hash
        return out

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        """The inverse of ``to_dict``; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SpecError(f"unknown FeatureSpec fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    @property
    def hash(self) -> str:
        """A short stable hash (12 hex digits) of the canonical JSON of the spec."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]

    @property
    def frames_per_second(self) -> float:
        """Feature frames per second of audio (``sr / hop_length``)."""
        return self.sr / self.hop_length

    def n_bins(self, feature: str) -> int:
        """Width of one frame of ``feature`` (``n_mels`` or ``n_mfcc``)."""
        if feature == "logmel":
            return self.n_mels
        if feature == "mfcc":
            return self.n_mfcc
        raise SpecError(f"unknown feature {feature!r}; choose among {', '.join(FEATURES)}")

    def mel_frequencies(self):
        """Centre frequencies in Hz of the ``n_mels`` bands ``(n_mels,)``, for axes and captions."""
        from mgc.kernels import mel_frequencies

        return mel_frequencies(self.n_mels + 2, fmin=self.fmin, fmax=self.fmax or self.sr / 2, htk=self.htk)[1:-1]

    def n_frames(self, n_samples: int) -> int:
        """Frames of a track of ``n_samples`` at ``sr`` (centred frames, as librosa)."""
        from mgc.kernels import frame_count

        return frame_count(n_samples, n_fft=self.n_fft, hop_length=self.hop_length, center=True)


#: Named specs (``mgc extract --preset NAME``): the front-end a pretrained model expects.
SPEC_PRESETS = {
    # musicnn (models.pretrained): 16 kHz, n_fft 512, hop 256, 96 bands, log10(1 + 10000 * mel power).
    "musicnn": {
        "sr": 16000,
        "n_fft": 512,
        "hop_length": 256,
        "n_mels": 96,
        "fmin": 0.0,
        "fmax": None,
        "htk": False,
        "norm": "slaney",
        "top_db": None,
        "n_mfcc": 20,
        "features": ["logmel"],
        "logmel_dtype": "float32",
        "log_scale": "log10_1p",
    },
}
