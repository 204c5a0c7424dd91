"""Private Numba cores. They only loop over arrays and write into ``out``.

The public wrappers (``stft.py``, ``spectral.py``) validate, pad and
allocate; everything here assumes valid, contiguous inputs:

* ``padded``  : (n_signals, n_padded) float32/float64, already centre-padded
* ``window``  : (n_fft,) of the same dtype, already centred in the frame
* ``out``     : preallocated output of the documented shape

Frames are transformed ``BLOCK_FRAMES`` at a time with one batched real FFT
(rocket-fft's pocketfft, SIMD across frames) so that the frame buffer and its
spectrum stay in cache while power and mel bands are taken from them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ._jit import jit, jit_parallel

#: Frames per batched FFT. Chosen by benchmarks/kernels.py on this machine.
BLOCK_FRAMES = 64


def _fill_frames(signal, window, hop_length, first_frame, buffer):
    """Copy frames ``first_frame...`` of ``signal`` times ``window`` into ``buffer``."""
    n_fft = window.shape[0]
    for i in range(buffer.shape[0]):
        start = (first_frame + i) * hop_length
        # 1-D views of equal length let LLVM vectorise the product.
        row = buffer[i]
        segment = signal[start : start + n_fft]
        for k in range(n_fft):
            row[k] = segment[k] * window[k]


def _stft_one(signal, window, hop_length, block_frames, out):
    """Complex STFT of one padded signal into ``out`` (n_bins, n_frames)."""
    n_frames = out.shape[1]
    n_fft = window.shape[0]
    buffer = np.empty((block_frames, n_fft), dtype=signal.dtype)
    for first in range(0, n_frames, block_frames):
        count = min(block_frames, n_frames - first)
        block = buffer[:count]
        _fill_frames(signal, window, hop_length, first, block)
        spectrum = np.fft.rfft(block)
        for i in range(count):
            for b in range(out.shape[0]):
                out[b, first + i] = spectrum[i, b]


def _magnitude(value, power):
    squared = value.real * value.real + value.imag * value.imag
    if power == 2.0:
        return squared
    if power == 1.0:
        return math.sqrt(squared)
    return math.sqrt(squared) ** power


def _mel_one(signal, window, hop_length, block_frames, power, starts, offsets, values, out):
    """Mel power spectrogram of one padded signal into ``out`` (n_mels, n_frames)."""
    n_mels, n_frames = out.shape
    n_fft = window.shape[0]
    n_used = 1  # bins above the last band's run never feed a band: skip their power
    for m in range(n_mels):
        n_used = max(n_used, starts[m] + offsets[m + 1] - offsets[m])
    buffer = np.empty((block_frames, n_fft), dtype=signal.dtype)
    # Bin-major power so the band sums run along frames: independent
    # accumulators that vectorise, instead of one serial chain per band.
    power_by_bin = np.empty((n_used, block_frames), dtype=signal.dtype)
    band = np.empty(block_frames, dtype=signal.dtype)
    for first in range(0, n_frames, block_frames):
        count = min(block_frames, n_frames - first)
        block = buffer[:count]
        _fill_frames(signal, window, hop_length, first, block)
        spectrum = np.fft.rfft(block)
        for i in range(count):
            row = spectrum[i]
            for b in range(n_used):
                power_by_bin[b, i] = _magnitude(row[b], power)
        for m in range(n_mels):
            start = starts[m]
            lo = offsets[m]
            band[:count] = 0.0
            for j in range(offsets[m + 1] - lo):
                weight = values[lo + j]
                source = power_by_bin[start + j]
                for i in range(count):
                    band[i] += weight * source[i]
            target = out[m]
            for i in range(count):
                target[first + i] = band[i]


def _stft_batch(padded, window, hop_length, block_frames, out):
    for s in range(padded.shape[0]):
        _stft_one(padded[s], window, hop_length, block_frames, out[s])


def _stft_batch_parallel(padded, window, hop_length, block_frames, out):
    for s in prange(padded.shape[0]):
        _stft_one(padded[s], window, hop_length, block_frames, out[s])


def _mel_batch(padded, window, hop_length, block_frames, power, starts, offsets, values, out):
    for s in range(padded.shape[0]):
        _mel_one(padded[s], window, hop_length, block_frames, power, starts, offsets, values, out[s])


def _mel_batch_parallel(padded, window, hop_length, block_frames, power, starts, offsets, values, out):
    for s in prange(padded.shape[0]):
        _mel_one(padded[s], window, hop_length, block_frames, power, starts, offsets, values, out[s])


def _db_inplace(values, amin, ref_db):
    """``values <- 10 log10(max(amin, values)) - ref_db``; returns the maximum."""
    flat = values.reshape(-1)
    top = -np.inf
    for i in range(flat.shape[0]):
        level = 10.0 * math.log10(max(amin, flat[i])) - ref_db
        flat[i] = level
        top = max(top, flat[i])
    return top


def _floor_inplace(values, floor):
    flat = values.reshape(-1)
    for i in range(flat.shape[0]):
        if flat[i] < floor:
            flat[i] = floor


_fill_frames = jit(_fill_frames)
_magnitude = jit(_magnitude)
_stft_one = jit(_stft_one)
_mel_one = jit(_mel_one)
# The serial and parallel drivers are separate functions (not one function
# compiled twice) because Numba's on-disk cache does not key on `parallel`.
stft_batch = jit(_stft_batch)
stft_batch_parallel = jit_parallel(_stft_batch_parallel)
mel_batch = jit(_mel_batch)
mel_batch_parallel = jit_parallel(_mel_batch_parallel)
db_inplace = jit(_db_inplace)
floor_inplace = jit(_floor_inplace)
