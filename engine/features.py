"""Features of one track, computed block by block in bounded memory.

The dB scale's ``top_db`` floor is relative to the maximum of the whole track,
so blocks are converted to dB without it, the running maximum is tracked, and
the floor is applied once at the end: the result equals the one-shot
``power_to_db(melspectrogram(y))`` on the whole signal, while the raw audio of
a long track is never held in memory (only its features are).

Every block of features is checked to be finite as it is computed: float
samples far beyond +-1 (1e38) are finite but overflow the power spectrum to
inf, and one inf would be stored and later turn a training normaliser into NaN.
Such a track fails with kind ``non_finite_features`` and nothing of it is stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .errors import AudioError
from .ffmpeg import open_audio
from .spec import FeatureSpec

# Frames per call of the MFCC kernel (about 95 s of audio at the defaults).
MFCC_SLICE_FRAMES = 4096

__all__ = ["TrackFeatures", "LogMelAccumulator", "features_from_blocks", "compute_features", "compute_track"]


@dataclass
class TrackFeatures:
    """Features of one track and what the file was.

    Attributes
    ----------
    features : dict of str to np.ndarray [shape=(n_frames, n_bins), dtype=float32]
    n_samples : int
        Samples at the spec's rate.
    source_sr, source_channels : int
    """

    features: dict
    n_samples: int
    source_sr: int
    source_channels: int

    @property
    def n_frames(self) -> int:
        return next(iter(self.features.values())).shape[0]


class LogMelAccumulator:
    """Centred log-mel frames of a signal that arrives in blocks.

    Frames are those of ``center=True, pad_mode="constant"``: the signal is
    conceptually padded with ``n_fft // 2`` zeros on both sides and each block
    of complete frames is computed with ``center=False`` on a buffer that
    keeps the overlap (fewer than ``n_fft`` samples) between blocks.

    Parameters
    ----------
    spec : FeatureSpec
    path : str, optional
        The file the signal comes from, named by the errors.

    Raises
    ------
    AudioError
        kind "non_finite_features" (from ``push`` or ``finish``) as soon as a
        block of frames holds NaN or inf.
    """

    def __init__(self, spec: FeatureSpec, path: str = "") -> None:
        self.spec = spec
        self.path = str(path)
        self.n_samples = 0
        self._pending = np.zeros(spec.n_fft // 2, dtype=np.float32)
        self._frames: list[np.ndarray] = []  # each (k, n_mels) float32, dB without top_db

    def _emit(self, buffer: np.ndarray) -> np.ndarray:
        from mgc.kernels import frame_count, log_melspectrogram, melspectrogram

        spec = self.spec
        if buffer.size < spec.n_fft:
            return buffer
        n_frames = frame_count(buffer.size, n_fft=spec.n_fft, hop_length=spec.hop_length, center=False)
        used = (n_frames - 1) * spec.hop_length + spec.n_fft
        mel = dict(
            sr=spec.sr,
            n_fft=spec.n_fft,
            hop_length=spec.hop_length,
            center=False,
            n_mels=spec.n_mels,
            fmin=spec.fmin,
            fmax=spec.fmax,
            htk=spec.htk,
            norm=spec.norm,
        )
        if spec.log_scale == "log10_1p":
            db = log10_1p(melspectrogram(buffer[:used], **mel))
        else:
            db = log_melspectrogram(buffer[:used], **mel, ref=1.0, amin=1e-10, top_db=None)
        _check_finite(db, "logmel", self.path)
        self._frames.append(np.ascontiguousarray(db.T, dtype=np.float32))
        return buffer[n_frames * spec.hop_length :]

    def push(self, block: np.ndarray) -> None:
        """Add mono float32 samples ``block [shape=(n,)]``."""
        self.n_samples += block.size
        pending, n_fft, hop = self._pending, self.spec.n_fft, self.spec.hop_length
        if block.size < 2 * n_fft or pending.size == 0:
            self._pending = self._emit(np.concatenate([pending, block]))
            return
        # Frames that start in the pending samples, from a short joined buffer; the
        # rest straight from the block (no copy of the whole block).
        n_joint = -(-pending.size // hop)
        joint_end = (n_joint - 1) * hop + n_fft - pending.size
        self._emit(np.concatenate([pending, block[:joint_end]]))
        self._pending = self._emit(block[n_joint * hop - pending.size :]).copy()

    def finish(self) -> np.ndarray:
        """All frames: float32 ``(n_frames, n_mels)`` in dB, floored at ``max - top_db``."""
        tail = np.zeros(self.spec.n_fft // 2, dtype=np.float32)
        self._pending = self._emit(np.concatenate([self._pending, tail]))
        # Move the blocks into one array, freeing each as it goes: the peak is the
        # features plus one block, not twice the features (an hour is 80 MB).
        logmel = np.empty((sum(len(b) for b in self._frames), self.spec.n_mels), dtype=np.float32)
        position = 0
        while self._frames:
            block = self._frames.pop(0)
            logmel[position : position + len(block)] = block
            position += len(block)
        if self.spec.top_db is not None:
            np.maximum(logmel, logmel.max() - np.float32(self.spec.top_db), out=logmel)
        return logmel


def log10_1p(power: np.ndarray) -> np.ndarray:
    """Musicnn's ``log10(1 + 10000 * power)`` as its code computed it, float32 ``(same shape)``.

    musicnn casts the mel power to float16, then (under the NumPy 1.x it was
    written for, which promoted ``10000 * float16`` to float32) takes the log
    in float32. Under NumPy 2 the same expression stays in float16 and
    overflows above a power of 6.55, so the promotion is written out here.
    """
    power = np.asarray(power).astype(np.float16).astype(np.float32)
    return np.log10(np.float32(10000) * power + np.float32(1))


def _check_finite(values: np.ndarray, feature: str, path: str) -> None:
    """Raise AudioError "non_finite_features" if ``values`` holds NaN or inf."""
    if not np.isfinite(values).all():
        raise AudioError("non_finite_features", path, f"first in {feature}")


def features_from_blocks(blocks: Iterable[np.ndarray], spec: FeatureSpec, path: str = "") -> tuple[dict, int]:
    """The spec's features from a stream of mono blocks at ``spec.sr``.

    Returns
    -------
    features : dict of str to np.ndarray [shape=(n_frames, n_bins), dtype=float32]
    n_samples : int

    Raises
    ------
    AudioError
        kind "no_samples" for an empty stream, "too_short" below ``n_fft`` samples,
        "non_finite_features" when a feature would hold NaN or inf.
    """
    accumulator = LogMelAccumulator(spec, path)
    for block in blocks:
        accumulator.push(block)
    if accumulator.n_samples == 0:
        raise AudioError("no_samples", path)
    if accumulator.n_samples < spec.n_fft:
        raise AudioError("too_short", path, f"{accumulator.n_samples} samples at {spec.sr} Hz < n_fft={spec.n_fft}")
    logmel = accumulator.finish()
    out = {}
    if "mfcc" in spec.features:
        from mgc.kernels import mfcc

        # In slices of frames (each frame's DCT is independent): the kernel's
        # temporaries then stay a few MB however long the track is.
        out["mfcc"] = np.empty((len(logmel), spec.n_mfcc), dtype=np.float32)
        for start in range(0, len(logmel), MFCC_SLICE_FRAMES):
            S = np.ascontiguousarray(logmel[start : start + MFCC_SLICE_FRAMES].T)
            piece = mfcc(S=S, sr=spec.sr, n_mfcc=spec.n_mfcc).T
            _check_finite(piece, "mfcc", path)
            out["mfcc"][start : start + MFCC_SLICE_FRAMES] = piece
    if "logmel" in spec.features:
        out["logmel"] = logmel
    return {name: out[name] for name in spec.features}, accumulator.n_samples


def compute_track(path, spec: FeatureSpec, *, offset=None, duration=None) -> TrackFeatures:
    """Decode, resample and featurise one file (the extraction code path).

    Raises
    ------
    AudioError
        When the file cannot be used; ``.kind`` says why.
    """
    stream = open_audio(path, spec.sr, offset=offset, duration=duration)
    features, n_samples = features_from_blocks(stream.blocks(), spec, stream.path)
    return TrackFeatures(features, n_samples, stream.source_sr, stream.source_channels)


def compute_features(path, spec: FeatureSpec | None = None, *, offset=None, duration=None) -> dict:
    """Features of one audio file, exactly as extraction would store them.

    Parameters
    ----------
    path : str or Path
        Audio file.
    spec : FeatureSpec, optional
        Defaults to ``FeatureSpec()``.
    offset, duration : float, optional
        Window in seconds, as ``librosa.load``.

    Returns
    -------
    dict of str to np.ndarray [shape=(n_frames, n_bins), dtype=float32]
        One entry per name in ``spec.features``. Log-mel is rounded to the store
        dtype (float16 by default) and back, so it equals what a store returns.

    Raises
    ------
    AudioError
        When the file cannot be used; ``.kind`` says why.
    """
    spec = FeatureSpec() if spec is None else spec
    result = compute_track(path, spec, offset=offset, duration=duration).features
    if "logmel" in result and spec.logmel_dtype != "float32":
        result["logmel"] = result["logmel"].astype(spec.logmel_dtype).astype(np.float32)
    return result
