"""Private Numba cores. They only loop over arrays and write into ``out``.

The public wrappers (``stft.py``, ``spectral.py``) validate, pad and
allocate; everything here assumes valid, contiguous inputs:

* ``padded``  : (n_signals, n_padded) float32/float64, already centre-padded
* ``window``  : (n_fft,) of the same dtype, already centred in the frame
* ``out``     : preallocated output of the documented shape
* ``complex_like`` : an empty array whose dtype (complex64 or complex128)
  the scratch spectrum takes, since Numba cannot derive it from ``padded``

Frames are transformed ``block_frames`` at a time with one batched real FFT
(rocket-fft's low-level ``r2c``: DUCC0/pocketfft, SIMD across frames) that
writes its result bin-major, ``(n_bins, block_frames)``, through a transposed
view. Everything after the FFT then runs along frames, on contiguous memory,
in loops LLVM vectorises; the frame buffer and its spectrum stay in cache.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange
from rocket_fft import r2c

from ._jit import jit, jit_parallel

#: Frames per batched FFT (benchmarks/kernels.py on a 2 MiB-L2 core: 32 to 128 within noise).
BLOCK_FRAMES = 64


def _fill_frames(signal, window, hop_length, first_frame, buffer):
    """Copy frames ``first_frame...`` of ``signal`` times ``window`` into ``buffer`` (count, n_fft)."""
    n_fft = window.shape[0]
    for i in range(buffer.shape[0]):
        start = (first_frame + i) * hop_length
        # 1-D views of equal length let LLVM vectorise the product.
        row = buffer[i]
        segment = signal[start : start + n_fft]
        for k in range(n_fft):
            row[k] = segment[k] * window[k]


def _transform_block(signal, window, hop_length, first, buffer, spectrum_by_bin):
    """Window frames ``first..first+count`` and FFT them into ``spectrum_by_bin`` (n_bins, count)."""
    _fill_frames(signal, window, hop_length, first, buffer)
    # Writing through the transposed view costs nothing extra: each SIMD lane
    # of the FFT is one frame, so lanes land side by side.
    r2c(buffer, spectrum_by_bin.T, np.array([1]), True, 1.0, 1)


def _magnitude(value, power):
    squared = value.real * value.real + value.imag * value.imag
    if power == 2.0:
        return squared
    if power == 1.0:
        return math.sqrt(squared)
    return math.sqrt(squared) ** power


def _stft_one(signal, window, hop_length, block_frames, out):
    """Complex STFT of one padded signal into ``out`` (n_bins, n_frames)."""
    n_frames = out.shape[1]
    buffer = np.empty((block_frames, window.shape[0]), dtype=signal.dtype)
    for first in range(0, n_frames, block_frames):
        count = min(block_frames, n_frames - first)
        # The FFT writes straight into the output's columns.
        _transform_block(signal, window, hop_length, first, buffer[:count], out[:, first : first + count])


def _power_one(signal, window, hop_length, block_frames, power, complex_like, out):
    """``|STFT| ** power`` of one padded signal into ``out`` (n_bins, n_frames)."""
    n_bins, n_frames = out.shape
    buffer = np.empty((block_frames, window.shape[0]), dtype=signal.dtype)
    spectrum = np.empty((n_bins, block_frames), dtype=complex_like.dtype)
    for first in range(0, n_frames, block_frames):
        count = min(block_frames, n_frames - first)
        _transform_block(signal, window, hop_length, first, buffer[:count], spectrum[:, :count])
        for b in range(n_bins):
            source = spectrum[b]
            target = out[b]
            for i in range(count):
                target[first + i] = _magnitude(source[i], power)


def _mel_one(signal, window, hop_length, block_frames, power, complex_like, bin_offsets, bin_bands, bin_weights, out):
    """Sparse-filterbank (mel) power spectrogram of one padded signal into ``out`` (n_bands, n_frames).

    The filterbank is given per FFT bin (CSR): bin ``b`` feeds bands
    ``bin_bands[bin_offsets[b]:bin_offsets[b + 1]]`` with the matching
    ``bin_weights`` (at most two for triangular mel filters). Each bin's power
    is computed for a block of frames and added into its bands' accumulators:
    no power spectrogram is stored, and bins above the last band are skipped.
    """
    n_bands, n_frames = out.shape
    n_fft = window.shape[0]
    n_used = bin_offsets.shape[0] - 1
    buffer = np.empty((block_frames, n_fft), dtype=signal.dtype)
    spectrum = np.empty((n_fft // 2 + 1, block_frames), dtype=complex_like.dtype)
    bin_power = np.empty(block_frames, dtype=signal.dtype)
    accumulators = np.empty((n_bands, block_frames), dtype=signal.dtype)
    for first in range(0, n_frames, block_frames):
        count = min(block_frames, n_frames - first)
        _transform_block(signal, window, hop_length, first, buffer[:count], spectrum[:, :count])
        accumulators[:, :count] = 0.0
        for b in range(n_used):
            lo = bin_offsets[b]
            hi = bin_offsets[b + 1]
            if lo == hi:
                continue
            source = spectrum[b]
            for i in range(count):
                bin_power[i] = _magnitude(source[i], power)
            for e in range(lo, hi):
                weight = bin_weights[e]
                target = accumulators[bin_bands[e]]
                for i in range(count):
                    target[i] += weight * bin_power[i]
        for m in range(n_bands):
            source = accumulators[m]
            target = out[m]
            for i in range(count):
                target[first + i] = source[i]


# Serial and parallel drivers are separate functions, not one function compiled
# twice, because Numba's on-disk cache does not key on `parallel`.
def _stft_batch(padded, window, hop_length, block_frames, out):
    for s in range(padded.shape[0]):
        _stft_one(padded[s], window, hop_length, block_frames, out[s])


def _stft_batch_parallel(padded, window, hop_length, block_frames, out):
    for s in prange(padded.shape[0]):
        _stft_one(padded[s], window, hop_length, block_frames, out[s])


def _power_batch(padded, window, hop_length, block_frames, power, complex_like, out):
    for s in range(padded.shape[0]):
        _power_one(padded[s], window, hop_length, block_frames, power, complex_like, out[s])


def _power_batch_parallel(padded, window, hop_length, block_frames, power, complex_like, out):
    for s in prange(padded.shape[0]):
        _power_one(padded[s], window, hop_length, block_frames, power, complex_like, out[s])


def _mel_batch(padded, window, hop_length, block_frames, power, complex_like, bin_offsets, bin_bands, bin_weights, out):
    for s in range(padded.shape[0]):
        _mel_one(
            padded[s],
            window,
            hop_length,
            block_frames,
            power,
            complex_like,
            bin_offsets,
            bin_bands,
            bin_weights,
            out[s],
        )


def _mel_batch_parallel(
    padded, window, hop_length, block_frames, power, complex_like, bin_offsets, bin_bands, bin_weights, out
):
    for s in prange(padded.shape[0]):
        _mel_one(
            padded[s],
            window,
            hop_length,
            block_frames,
            power,
            complex_like,
            bin_offsets,
            bin_bands,
            bin_weights,
            out[s],
        )


_fill_frames = jit(_fill_frames)
_transform_block = jit(_transform_block)
_magnitude = jit(_magnitude)
_stft_one = jit(_stft_one)
_power_one = jit(_power_one)
_mel_one = jit(_mel_one)
stft_batch = jit(_stft_batch)
stft_batch_parallel = jit_parallel(_stft_batch_parallel)
power_batch = jit(_power_batch)
power_batch_parallel = jit_parallel(_power_batch_parallel)
mel_batch = jit(_mel_batch)
mel_batch_parallel = jit_parallel(_mel_batch_parallel)
