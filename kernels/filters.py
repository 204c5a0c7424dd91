"""Mel scale conversions and the mel filterbank, equal to librosa's."""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from ._errors import ParameterError
from .validate import positive_int, real_number

__all__ = ["hz_to_mel", "mel_to_hz", "mel_frequencies", "fft_frequencies", "mel_filterbank"]

_F_SP = 200.0 / 3  # Slaney: linear below 1 kHz at 200/3 Hz per mel
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(frequencies, *, htk: bool = False) -> np.ndarray:
    """Convert Hz to mels (Slaney's scale, or HTK's with ``htk=True``).

    Parameters
    ----------
    frequencies : number or np.ndarray [shape=(n,)]
    htk : bool

    Returns
    -------
    mels : np.ndarray [shape=(n,)]
    """
    frequencies = np.asanyarray(frequencies, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + frequencies / 700.0)
    mels = frequencies / _F_SP
    log_region = frequencies >= _MIN_LOG_HZ
    return np.where(
        log_region, _MIN_LOG_MEL + np.log(np.maximum(frequencies, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, mels
    )


def mel_to_hz(mels, *, htk: bool = False) -> np.ndarray:
    """Convert mels to Hz (the inverse of :func:`hz_to_mel`).

    Parameters
    ----------
    mels : number or np.ndarray [shape=(n,)]
    htk : bool

    Returns
    -------
    frequencies : np.ndarray [shape=(n,)]
    """
    mels = np.asanyarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    freqs = _F_SP * mels
    log_region = mels >= _MIN_LOG_MEL
    return np.where(log_region, _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mels, _MIN_LOG_MEL) - _MIN_LOG_MEL)), freqs)


def mel_frequencies(n_mels: int = 128, *, fmin: float = 0.0, fmax: float = 11025.0, htk: bool = False) -> np.ndarray:
    """Centre frequencies of ``n_mels`` bands evenly spaced on the mel scale.

    Returns
    -------
    frequencies : np.ndarray [shape=(n_mels,), dtype=float64]
    """
    mels = np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), n_mels)
    return mel_to_hz(mels, htk=htk)


def fft_frequencies(*, sr: float = 22050, n_fft: int = 2048) -> np.ndarray:
    """Frequencies of the ``1 + n_fft // 2`` bins of a real FFT.

    Returns
    -------
    frequencies : np.ndarray [shape=(1 + n_fft // 2,), dtype=float64]
    """
    return np.fft.rfftfreq(n=n_fft, d=1.0 / sr)


def check_norm(norm):
    """Return ``norm`` if it is 'slaney', None or a positive number (a p-norm)."""
    if norm is None or norm == "slaney":
        return norm
    if isinstance(norm, numbers.Real) and not isinstance(norm, bool) and (norm > 0):
        return norm
    raise ParameterError(f"norm must be 'slaney', None or a positive number (p-norm), got {norm!r}")


def _check_band(sr, fmin, fmax):
    sr = real_number("sr", sr, minimum=0, strictly=True)
    fmin = real_number("fmin", fmin, minimum=0.0)
    nyquist = sr / 2.0
    fmax = nyquist if fmax is None else real_number("fmax", fmax, minimum=0, strictly=True)
    if fmax > nyquist:
        raise ParameterError(f"fmax={fmax} must not exceed sr / 2 = {nyquist}")
    if fmin >= fmax:
        raise ParameterError(f"fmin={fmin} must be below fmax={fmax}")
    return sr, fmin, fmax


def mel_filterbank(
    *,
    sr: float,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm="slaney",
    dtype=np.float32,
) -> np.ndarray:
    """Triangular mel filters, equal to ``librosa.filters.mel``.

    Parameters
    ----------
    sr : float > 0
        Sampling rate of the signal.
    n_fft : int > 0
        FFT size.
    n_mels : int > 0
        Number of mel bands.
    fmin, fmax : float
        Band edges in Hz, ``0 <= fmin < fmax <= sr / 2``; ``fmax=None`` means ``sr / 2``.
    htk : bool
        HTK's mel formula instead of Slaney's.
    norm : {"slaney", None} or number > 0
        "slaney" divides each triangle by its width in Hz (constant energy per
        band); a number p normalises each filter to unit p-norm.
    dtype : np.dtype
        Output dtype.

    Returns
    -------
    weights : np.ndarray [shape=(n_mels, 1 + n_fft // 2)]
    """
    n_fft = positive_int("n_fft", n_fft)
    n_mels = positive_int("n_mels", n_mels)
    sr, fmin, fmax = _check_band(sr, fmin, fmax)
    norm = check_norm(norm)
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=dtype)
    fftfreqs = fft_frequencies(sr=sr, n_fft=n_fft)
    mel_f = mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    if norm == "slaney":
        # In place on the cast weights, as librosa does, so the rounding matches.
        weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    elif norm is not None:
        magnitude = np.abs(weights)
        if np.isinf(norm):
            length = magnitude.max(axis=-1, keepdims=True)
        else:
            length = np.sum(magnitude**norm, axis=-1, keepdims=True) ** (1.0 / norm)
        length[length < np.finfo(weights.dtype).tiny] = 1.0
        weights = weights / length
    return weights


def filterbank_by_bin(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Compress a filterbank to, for each FFT bin, the bands it feeds (CSR by bin).

    A triangular mel filter is non-zero on one run of bins and each bin feeds
    at most two bands, so the product costs about two multiply-adds per bin
    instead of ``n_mels``. Bins above the last non-zero weight are dropped:
    their power is never needed.

    Parameters
    ----------
    weights : np.ndarray [shape=(n_bands, n_bins)]

    Returns
    -------
    bin_offsets : np.ndarray [shape=(n_used + 1,), dtype=int64]
        Bin ``b`` feeds entries ``bin_offsets[b]:bin_offsets[b + 1]``.
    bin_bands : np.ndarray [shape=(n_entries,), dtype=int64]
        Band index of each entry, increasing within a bin.
    bin_weights : np.ndarray [shape=(n_entries,), dtype of weights]
        Weight of each entry.
    """
    bands, bins = np.nonzero(weights.T)[::-1]  # sorted by bin, then band
    n_used = int(bins.max()) + 1 if bins.size else 0
    bin_offsets = np.zeros(n_used + 1, dtype=np.int64)
    np.cumsum(np.bincount(bins, minlength=n_used), out=bin_offsets[1:])
    return bin_offsets, bands.astype(np.int64), np.ascontiguousarray(weights[bands, bins])


class BandSegments(NamedTuple):
    """A filterbank in which each FFT bin feeds at most two adjacent bands, by runs of bins.

    Bin ``b`` (``b < n_used``) adds ``low_weights[b]`` of its power to band
    ``m`` and ``high_weights[b]`` to band ``m + 1``, where ``m`` is the band of
    its run: bins ``first_bins[s]:first_bins[s + 1]`` all have band
    ``bands[s]``, and ``bands`` increases. A bin feeding one band has a zero
    high weight; a bin feeding none has zero weights and the band of the fed
    bin before it. Triangular mel filters always have this form.
    """

    first_bins: np.ndarray  # (n_runs + 1,) int64
    bands: np.ndarray  # (n_runs,) int64
    low_weights: np.ndarray  # (n_used,)
    high_weights: np.ndarray  # (n_used,)


def filterbank_by_segment(weights: np.ndarray) -> BandSegments | None:
    """The filterbank ``(n_bands, n_bins)`` as :class:`BandSegments`, or None when it has another shape.

    Bins above the last non-zero weight are dropped, as in :func:`filterbank_by_bin`.
    """
    bin_offsets, bin_bands, bin_weights = filterbank_by_bin(weights)
    counts = np.diff(bin_offsets)
    n_used = counts.shape[0]
    if n_used == 0 or counts.max() > 2:
        return None
    first = bin_bands[bin_offsets[:-1][counts > 0]]  # each fed bin's lowest band
    if np.any(bin_bands[bin_offsets[:-1][counts == 2] + 1] != bin_bands[bin_offsets[:-1][counts == 2]] + 1):
        return None  # two bands that are not neighbours
    low = np.zeros(n_used, dtype=bin_weights.dtype)
    high = np.zeros(n_used, dtype=bin_weights.dtype)
    band = np.zeros(n_used, dtype=np.int64)
    fed = np.flatnonzero(counts > 0)
    band[fed] = first
    low[fed] = bin_weights[bin_offsets[fed]]
    two = np.flatnonzero(counts == 2)
    high[two] = bin_weights[bin_offsets[two] + 1]
    # A bin that feeds nothing takes the band of the fed bin before it (0 before the first): zero weights.
    carried = np.maximum.accumulate(np.where(counts > 0, np.arange(n_used), -1))
    band = np.where(carried >= 0, band[np.maximum(carried, 0)], 0)
    if np.any(np.diff(band) < 0):
        return None
    starts = np.flatnonzero(np.r_[True, np.diff(band) != 0])
    return BandSegments(
        first_bins=np.r_[starts, n_used].astype(np.int64),
        bands=band[starts].astype(np.int64),
        low_weights=low,
        high_weights=high,
    )
