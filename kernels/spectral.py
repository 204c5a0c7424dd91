"""Mel spectrograms and decibel scaling: librosa's numbers, one fused pass."""

from __future__ import annotations

import functools

import numpy as np

from . import _core
from ._errors import ParameterError
from ._simd import LANES
from .filters import check_norm, filterbank_by_bin, filterbank_by_segment, mel_filterbank
from .stft import check_finite, complex_like, frames_setup, run_tapped, tapped_args, tapped_setup
from .validate import power as check_power
from .validate import real_number

__all__ = ["melspectrogram", "power_to_db", "log_melspectrogram"]


@functools.lru_cache(maxsize=32)
def _bands(sr, n_fft, n_mels, fmin, fmax, htk, norm, dtype_name):
    weights = mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    bin_offsets, bin_bands, bin_weights = filterbank_by_bin(weights)
    return weights.shape[0], bin_offsets, bin_bands, bin_weights.astype(dtype_name)


@functools.lru_cache(maxsize=32)
def _vector_bands(sr, n_fft, n_mels, fmin, fmax, htk, norm, c0, c1):
    """The float32 vector kernel's tables, the window folded in (see ``_core``), or None for another filterbank."""
    weights = mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    segments = filterbank_by_segment(weights)
    if segments is None or c0 == 0.0:
        return None
    gain = np.float64(c0) * np.float64(c0)
    return (
        np.float32(np.float64(c1) / np.float64(c0)),
        segments.first_bins,
        segments.bands,
        (segments.low_weights.astype(np.float64) * gain).astype(np.float32),
        (segments.high_weights.astype(np.float64) * gain).astype(np.float32),
    )


def _mel_staged(tapped, power, mel_args, floor, parallel) -> np.ndarray | None:
    """The vector kernel's mel bands by blocks (``_core``'s staging), each at least ``floor``, or None.

    It applies to float32 signals, ``power=2`` and a window given as taps
    (``tapped`` not None), with a triangular filterbank. The returned array is
    ``(n_signals, n_blocks, n_mels, width)``; lanes past the last frame hold ``floor``.
    """
    if tapped is None or power != 2.0 or tapped.signals.dtype != np.float32:
        return None
    sr, n_mels, fmin, fmax, htk, norm = mel_args
    key = (sr, tapped.body.shape[2], n_mels, fmin, fmax, bool(htk), check_norm(norm))
    tables = _vector_bands(*key, float(tapped.taps[0]), float(tapped.taps[1]))
    if tables is None:
        return None
    n_frames = tapped.n_frames
    width = -(-min(_core.BLOCK_FRAMES, n_frames) // LANES) * LANES
    n_blocks = -(-n_frames // width)
    staging = np.empty((tapped.signals.shape[0], n_blocks, n_mels, width), dtype=np.float32)
    staging[:, -1, :, n_frames - (n_blocks - 1) * width :] = floor if np.isfinite(floor) else 0.0
    finite = np.empty(tapped.signals.shape[0], dtype=np.bool_)
    driver = _core.mel_vector_batch_parallel if parallel else _core.mel_vector_batch
    driver(tapped.head, tapped.body, tapped.tail, tapped.starts, n_frames, *tables, np.float32(floor), finite, staging)
    check_finite(finite, tapped.signals)
    return staging


def _check_db_args(amin, top_db) -> None:
    real_number("amin", amin, minimum=0, strictly=True)
    if top_db is not None:
        real_number("top_db", top_db, minimum=0)


def melspectrogram(
    y: np.ndarray,
    *,
    sr: float = 22050,
    n_fft: int = 2048,
    hop_length: int = 512,
    win_length: int | None = None,
    window="hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm="slaney",
    parallel: bool = False,
) -> np.ndarray:
    """Mel-scaled spectrogram, equal to ``librosa.feature.melspectrogram``.

    Frames, windows, transforms, takes ``|X| ** power`` and applies the mel
    filterbank in one pass, using the filterbank's sparsity (each FFT bin
    feeds at most two bands).

    Parameters
    ----------
    y : np.ndarray [shape=(..., n), dtype=float32 or float64]
        Audio; leading axes are channels or a batch of equal-length clips.
    sr : float > 0
        Sampling rate of ``y``.
    n_fft, hop_length, win_length, window, center, pad_mode
        As in :func:`kernels.stft` (note ``hop_length=512`` by default here, as in librosa).
    power : float > 0
        Exponent of the magnitude: 2 for power, 1 for magnitude.
    n_mels, fmin, fmax, htk, norm
        As in :func:`kernels.mel_filterbank`.
    parallel : bool
        Spread stacked signals over Numba threads.

    Returns
    -------
    S : np.ndarray [shape=(..., n_mels, n_frames), dtype of y]
    """
    power = check_power(power)
    frames = dict(n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window, center=center)
    tapped = tapped_setup(y, **frames, pad_mode=pad_mode)
    return _mel_from(y, tapped, frames, pad_mode, power, (sr, n_mels, fmin, fmax, htk, norm), parallel)


def _mel_from(y, tapped, frames, pad_mode, power, mel_args, parallel) -> np.ndarray:
    """:func:`melspectrogram` once :func:`tapped_setup` has run (``tapped`` None: the window is applied in time)."""
    sr, n_mels, fmin, fmax, htk, norm = mel_args
    staged = _mel_staged(tapped, power, mel_args, -np.inf, parallel)
    if staged is not None:
        out = np.empty((staged.shape[0], staged.shape[2], tapped.n_frames), dtype=np.float32)
        _core.unblock_db(staged, out, np.float32(1.0), np.float32(0.0), np.float32(-np.inf))
        return out.reshape(tapped.leading + out.shape[1:])
    if tapped is not None:
        n_bands, bin_offsets, bin_bands, bin_weights = _bands(
            sr, tapped.body.shape[2], n_mels, fmin, fmax, bool(htk), check_norm(norm), tapped.signals.dtype.name
        )
        driver = _core.mel_taps_batch_parallel if parallel else _core.mel_taps_batch
        return run_tapped(tapped, driver, n_bands, *tapped_args(tapped, power), bin_offsets, bin_bands, bin_weights)
    padded, window_values, hop_length, n_frames, leading = frames_setup(y, **frames, pad_mode=pad_mode)
    n_fft = window_values.shape[0]
    n_bands, bin_offsets, bin_bands, bin_weights = _bands(
        sr, n_fft, n_mels, fmin, fmax, bool(htk), check_norm(norm), padded.dtype.name
    )
    out = np.empty((padded.shape[0], n_bands, n_frames), dtype=padded.dtype)
    driver = _core.mel_batch_parallel if parallel else _core.mel_batch
    driver(
        padded,
        window_values,
        hop_length,
        _core.BLOCK_FRAMES,
        power,
        complex_like(padded.dtype),
        bin_offsets,
        bin_bands,
        bin_weights,
        out,
    )
    return out.reshape(leading + out.shape[1:])


def _reference_db(magnitude, ref, amin) -> float:
    ref_value = ref(magnitude) if callable(ref) else np.abs(ref)
    return float(10.0 * np.log10(np.maximum(amin, ref_value)))


def _to_db_inplace(S: np.ndarray, *, ref, amin, top_db) -> np.ndarray:
    """Librosa's dB formula, step by step and in place (numpy's SIMD log10 is the fast part)."""
    ref_db = _reference_db(S, ref, amin)
    if not S.size:
        return S
    kind = S.dtype.type
    flat = S.reshape(-1)  # S is C-contiguous: a view
    _core.floor_at(flat, kind(amin))
    np.log10(S, out=S)
    # 10 * x - ref_db rounds monotonically, so the peak in dB is the peak's log: one pass, not three.
    floor = kind(10.0) * S.max() - kind(ref_db) - kind(top_db) if top_db is not None else kind(-np.inf)
    _core.db_finish(flat, kind(10.0), kind(ref_db), kind(floor))
    return S


def power_to_db(S: np.ndarray, *, ref=1.0, amin: float = 1e-10, top_db: float | None = 80.0) -> np.ndarray:
    """Convert a power spectrogram to decibels, equal to ``librosa.power_to_db``.

    ``10 * log10(max(amin, S)) - 10 * log10(max(amin, ref))``, then floored at
    ``top_db`` below the maximum of the whole array.

    Parameters
    ----------
    S : np.ndarray [shape=(..., d, t), real, non-negative]
        Power spectrogram.
    ref : float or callable
        Reference power; a callable (such as ``numpy.max``) is applied to ``S``.
    amin : float > 0
        Floor on ``S`` and ``ref`` before the logarithm.
    top_db : float >= 0 or None
        Dynamic range kept below the peak; ``None`` keeps everything.

    Returns
    -------
    S_db : np.ndarray [shape=(..., d, t)]
        float32 for float32 input, float64 otherwise.
    """
    _check_db_args(amin, top_db)
    S = np.asarray(S)
    if np.iscomplexobj(S):
        raise ParameterError("S must be real: pass np.abs(S) ** 2 for a complex spectrogram")
    if not np.issubdtype(S.dtype, np.floating):
        S = S.astype(np.float64)
    out = np.array(S, dtype=S.dtype if S.dtype in (np.float32, np.float64) else np.float64, order="C", copy=True)
    return _to_db_inplace(out, ref=ref, amin=amin, top_db=top_db)


def log_melspectrogram(
    y: np.ndarray,
    *,
    sr: float = 22050,
    n_fft: int = 2048,
    hop_length: int = 512,
    win_length: int | None = None,
    window="hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm="slaney",
    ref=1.0,
    amin: float = 1e-10,
    top_db: float | None = 80.0,
    parallel: bool = False,
) -> np.ndarray:
    """Log-mel spectrogram in dB: ``power_to_db(melspectrogram(y, ...), ...)`` fused.

    The engine's hot path. The mel spectrogram is converted to dB in place, so
    no intermediate array beyond the output is allocated.

    Parameters
    ----------
    y : np.ndarray [shape=(..., n), dtype=float32 or float64]
    sr, n_fft, hop_length, win_length, window, center, pad_mode, power, n_mels, fmin, fmax, htk, norm
        As in :func:`melspectrogram`.
    ref, amin, top_db
        As in :func:`power_to_db`. ``top_db`` is relative to the maximum of
        the whole output, all leading axes included (as librosa).
    parallel : bool
        Spread stacked signals over Numba threads.

    Returns
    -------
    S_db : np.ndarray [shape=(..., n_mels, n_frames), dtype of y]
    """
    _check_db_args(amin, top_db)
    power = check_power(power)
    mel_args = (sr, n_mels, fmin, fmax, htk, norm)
    frames = dict(n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window, center=center)
    tapped = tapped_setup(y, **frames, pad_mode=pad_mode)
    staged = None if callable(ref) else _mel_staged(tapped, power, mel_args, amin, parallel)
    if staged is not None:
        # dB over the blocks (numpy's SIMD log10 in place, written front to back), then written out row by row.
        np.log10(staged, out=staged)
        ref_db = np.float32(_reference_db(None, ref, amin))
        peak = np.float32(10.0) * staged.max() - ref_db if staged.size else np.float32(0.0)
        floor = peak - np.float32(top_db) if top_db is not None else np.float32(-np.inf)
        out = np.empty((staged.shape[0], staged.shape[2], tapped.n_frames), dtype=np.float32)
        _core.unblock_db(staged, out, np.float32(10.0), ref_db, np.float32(floor))
        return out.reshape(tapped.leading + out.shape[1:])
    S = _mel_from(y, tapped, frames, pad_mode, power, mel_args, parallel)
    return _to_db_inplace(S, ref=ref, amin=amin, top_db=top_db)
