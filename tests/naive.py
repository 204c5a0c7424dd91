"""Brute-force NumPy references for the kernels (stumpy's ``tests/naive.py`` habit).

Each function here is the textbook definition written out with explicit loops
and float64 arithmetic, sharing no code with ``kernels`` (no Numba, no
``np.pad``, no scipy DCT), so a test that compares the two needs no librosa.
They follow the kernels' public conventions: librosa's parameter names,
spectrograms bin-major ``(..., n_bins or n_mels, n_frames)``, the output dtype
following the input (float32 in, float32/complex64 out).

They are slow on purpose; keep the signals short.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "frame_count",
    "pad_index",
    "center_pad",
    "hann",
    "stft",
    "hz_to_mel",
    "mel_to_hz",
    "mel_filterbank",
    "power_to_db",
    "melspectrogram",
    "dct2_matrix",
    "mfcc",
]

PAD_MODES = ("constant", "reflect", "edge", "symmetric")


def frame_count(n_samples: int, *, n_fft: int, hop_length: int, center: bool) -> int:
    """``1 + (n + 2 * (n_fft // 2) - n_fft) // hop`` centred, ``1 + (n - n_fft) // hop`` otherwise."""
    if center:
        return 1 + (n_samples + 2 * (n_fft // 2) - n_fft) // hop_length
    return 1 + (n_samples - n_fft) // hop_length


def pad_index(i: int, n: int, mode: str) -> int | None:
    """The sample of a length-``n`` signal that padded position ``i`` (relative to sample 0) holds.

    ``None`` means a zero (constant mode outside the signal). Reflection past
    both ends repeats, as numpy's (and so librosa's) padding does.
    """
    if 0 <= i < n:
        return i
    if mode == "constant":
        return None
    if mode == "edge":
        return 0 if i < 0 else n - 1
    if mode == "reflect":  # ... 2 1 | 0 1 2 ... n-1 | n-2 n-3 ...: period 2(n - 1)
        if n == 1:
            return 0
        period = 2 * (n - 1)
        k = i % period
        return k if k < n else period - k
    if mode == "symmetric":  # ... 1 0 | 0 1 ... n-1 | n-1 n-2 ...: period 2n
        period = 2 * n
        k = i % period
        return k if k < n else period - 1 - k
    raise ValueError(f"unknown pad mode {mode!r}")


def center_pad(y: np.ndarray, pad: int, mode: str) -> np.ndarray:
    """Pad a 1-D float64 signal by ``pad`` samples on both sides, one index at a time."""
    n = y.shape[0]
    out = np.zeros(n + 2 * pad, dtype=np.float64)
    for j in range(out.shape[0]):
        source = pad_index(j - pad, n, mode)
        if source is not None:
            out[j] = y[source]
    return out


def hann(win_length: int, n_fft: int | None = None) -> np.ndarray:
    """Periodic Hann window ``0.5 - 0.5 cos(2 pi k / N)``, zero-padded to the centre of ``n_fft``."""
    n_fft = win_length if n_fft is None else n_fft
    window = np.array([0.5 - 0.5 * math.cos(2.0 * math.pi * k / win_length) for k in range(win_length)])
    left = (n_fft - win_length) // 2
    out = np.zeros(n_fft)
    out[left : left + win_length] = window
    return out


def _complex_dtype(dtype) -> type:
    return np.complex64 if np.dtype(dtype) == np.float32 else np.complex128


def stft(
    y: np.ndarray,
    *,
    n_fft: int = 2048,
    hop_length: int | None = None,
    win_length: int | None = None,
    window: np.ndarray | None = None,
    center: bool = True,
    pad_mode: str = "constant",
) -> np.ndarray:
    """Framed STFT: pad, cut frame ``t`` at ``t * hop_length``, window it, ``np.fft.rfft`` it.

    Parameters
    ----------
    y : np.ndarray [shape=(..., n)]
    window : np.ndarray [shape=(n_fft,)], optional
        Already centred in the frame; the periodic Hann of ``win_length`` when omitted.

    Returns
    -------
    D : np.ndarray [shape=(..., 1 + n_fft // 2, n_frames)], complex64 for float32 input
    """
    win_length = n_fft if win_length is None else win_length
    hop_length = max(1, win_length // 4) if hop_length is None else hop_length
    window = hann(win_length, n_fft) if window is None else np.asarray(window, dtype=np.float64)
    y = np.asarray(y)
    n_frames = frame_count(y.shape[-1], n_fft=n_fft, hop_length=hop_length, center=center)
    out = np.zeros(y.shape[:-1] + (1 + n_fft // 2, n_frames), dtype=_complex_dtype(y.dtype))
    for index in np.ndindex(*y.shape[:-1]):
        signal = y[index].astype(np.float64)
        padded = center_pad(signal, n_fft // 2, pad_mode) if center else signal
        for t in range(n_frames):
            frame = padded[t * hop_length : t * hop_length + n_fft]
            out[index + (slice(None), t)] = np.fft.rfft(frame * window)
    return out


def hz_to_mel(hz: float, *, htk: bool = False) -> float:
    """One frequency to mels: HTK's ``2595 log10(1 + f / 700)``, or Slaney's linear-then-log scale."""
    if htk:
        return 2595.0 * math.log10(1.0 + hz / 700.0)
    # Slaney: 3 mels per 200 Hz up to 1 kHz (15 mels), then 27 mels per factor 6.4.
    if hz < 1000.0:
        return hz / (200.0 / 3.0)
    return 15.0 + math.log(hz / 1000.0) / (math.log(6.4) / 27.0)


def mel_to_hz(mel: float, *, htk: bool = False) -> float:
    """The inverse of :func:`hz_to_mel`."""
    if htk:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    if mel < 15.0:
        return mel * (200.0 / 3.0)
    return 1000.0 * math.exp((mel - 15.0) * (math.log(6.4) / 27.0))


def mel_filterbank(
    *,
    sr: float,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm="slaney",
) -> np.ndarray:
    """Triangular filters between ``n_mels + 2`` mel-spaced edges, one weight at a time.

    ``norm`` is "slaney" (divide each triangle by half its width in Hz), None,
    or a number p (unit p-norm rows).

    Returns
    -------
    weights : np.ndarray [shape=(n_mels, 1 + n_fft // 2), dtype=float64]
    """
    fmax = sr / 2.0 if fmax is None else fmax
    low, high = hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk)
    edges = [mel_to_hz(low + (high - low) * k / (n_mels + 1), htk=htk) for k in range(n_mels + 2)]
    weights = np.zeros((n_mels, 1 + n_fft // 2))
    for m in range(n_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        for b in range(weights.shape[1]):
            f = b * sr / n_fft
            rising = (f - left) / (centre - left)
            falling = (right - f) / (right - centre)
            weights[m, b] = max(0.0, min(rising, falling))
        if norm == "slaney":
            weights[m] *= 2.0 / (right - left)
        elif norm is not None:
            length = np.max(weights[m]) if np.isinf(norm) else np.sum(weights[m] ** norm) ** (1.0 / norm)
            if length > 0:
                weights[m] /= length
    return weights


def power_to_db(S: np.ndarray, *, ref=1.0, amin: float = 1e-10, top_db: float | None = 80.0) -> np.ndarray:
    """``10 log10(max(amin, S)) - 10 log10(max(amin, ref))``, floored ``top_db`` below the overall maximum.

    Computed in float64; returns float64.
    """
    S = np.asarray(S, dtype=np.float64)
    ref_value = ref(S) if callable(ref) else abs(ref)
    db = 10.0 * np.log10(np.maximum(amin, S)) - 10.0 * math.log10(max(amin, ref_value))
    if top_db is not None and db.size:
        db = np.maximum(db, db.max() - top_db)
    return db


def melspectrogram(
    y: np.ndarray,
    *,
    sr: float = 22050,
    n_fft: int = 2048,
    hop_length: int = 512,
    win_length: int | None = None,
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm="slaney",
) -> np.ndarray:
    """``mel_filterbank @ |stft| ** power`` with the Hann window; float64, shape (..., n_mels, n_frames)."""
    D = stft(
        y.astype(np.float64),
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        center=center,
        pad_mode=pad_mode,
    )
    weights = mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    return np.einsum("mb,...bt->...mt", weights, np.abs(D) ** power)


def dct2_matrix(n_out: int, n_in: int, *, norm: str | None = "ortho") -> np.ndarray:
    """Rows of the DCT-II written out: ``C[k, n] = cos(pi k (2n + 1) / (2 N))``.

    ``norm="ortho"`` scales row 0 by ``sqrt(1 / N)`` and the others by
    ``sqrt(2 / N)`` (an orthonormal matrix); ``None`` is scipy's unnormalised
    ``2 * sum(...)``.
    """
    C = np.zeros((n_out, n_in))
    for k in range(n_out):
        for n in range(n_in):
            C[k, n] = math.cos(math.pi * k * (2 * n + 1) / (2 * n_in))
        if norm == "ortho":
            C[k] *= math.sqrt((1.0 if k == 0 else 2.0) / n_in)
        elif norm is None:
            C[k] *= 2.0
        else:
            raise ValueError(f"norm must be 'ortho' or None, got {norm!r}")
    return C


def mfcc(S_db: np.ndarray, *, n_mfcc: int = 20, norm: str | None = "ortho", lifter: float = 0) -> np.ndarray:
    """MFCCs of a dB mel spectrogram ``(..., n_mels, n_frames)``: DCT-II along the mel axis, then liftering."""
    S_db = np.asarray(S_db, dtype=np.float64)
    C = dct2_matrix(n_mfcc, S_db.shape[-2], norm=norm)
    if lifter > 0:
        k = np.arange(1, n_mfcc + 1)
        C = C * (1 + (lifter / 2) * np.sin(np.pi * k / lifter))[:, None]
    return np.einsum("km,...mt->...kt", C, S_db)
