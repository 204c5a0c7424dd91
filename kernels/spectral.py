"""Mel spectrograms and decibel scaling: librosa's numbers, one fused pass."""

from __future__ import annotations

import functools

import numpy as np

from . import _core
from ._errors import ParameterError
from .filters import check_norm, filterbank_by_bin, mel_filterbank
from .stft import complex_like, frames_setup, run_tapped, tapped_setup
from .validate import power as check_power
from .validate import real_number

__all__ = ["melspectrogram", "power_to_db", "log_melspectrogram"]


@functools.lru_cache(maxsize=32)
def _bands(sr, n_fft, n_mels, fmin, fmax, htk, norm, dtype_name):
    weights = mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    bin_offsets, bin_bands, bin_weights = filterbank_by_bin(weights)
    return weights.shape[0], bin_offsets, bin_bands, bin_weights.astype(dtype_name)


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
    tapped = tapped_setup(
        y, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window, center=center, pad_mode=pad_mode
    )
    if tapped is not None:
        n_bands, bin_offsets, bin_bands, bin_weights = _bands(
            sr, tapped.body.shape[2], n_mels, fmin, fmax, bool(htk), check_norm(norm), tapped.signals.dtype.name
        )
        driver = _core.mel_taps_batch_parallel if parallel else _core.mel_taps_batch
        return run_tapped(tapped, driver, n_bands, power, bin_offsets, bin_bands, bin_weights)
    padded, window_values, hop_length, n_frames, leading = frames_setup(
        y, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window, center=center, pad_mode=pad_mode
    )
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
    S = melspectrogram(
        y,
        sr=sr,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=center,
        pad_mode=pad_mode,
        power=power,
        n_mels=n_mels,
        fmin=fmin,
        fmax=fmax,
        htk=htk,
        norm=norm,
        parallel=parallel,
    )
    return _to_db_inplace(S, ref=ref, amin=amin, top_db=top_db)
