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


def _mel_one(signal, window, hop_length, block_frames, power, bin_offsets, bin_bands, bin_weights, out):
    """Mel (or any sparse filterbank) spectrogram of one padded signal into ``out`` (n_bands, n_frames).

    The filterbank is given per FFT bin (CSR): bin ``b`` feeds bands
    ``bin_bands[bin_offsets[b]:bin_offsets[b + 1]]`` with the matching
    ``bin_weights`` (at most two for triangular mel filters). Bins are
    visited in order, each bin's power computed for a block of frames and
    added into its bands' accumulators: frames are the inner, vectorised axis
    and no power spectrogram is ever stored.
    """
    n_bands, n_frames = out.shape
    n_fft = window.shape[0]
    n_used = bin_offsets.shape[0] - 1
    buffer = np.empty((block_frames, n_fft), dtype=signal.dtype)
    bin_power = np.empty(block_frames, dtype=signal.dtype)
    accumulators = np.empty((n_bands, block_frames), dtype=signal.dtype)
    for first in range(0, n_frames, block_frames):
        count = min(block_frames, n_frames - first)
        block = buffer[:count]
        _fill_frames(signal, window, hop_length, first, block)
        spectrum = np.fft.rfft(block)
        accumulators[:, :count] = 0.0
        for b in range(n_used):
            lo = bin_offsets[b]
            hi = bin_offsets[b + 1]
            if lo == hi:
                continue
            for i in range(count):
                bin_power[i] = _magnitude(spectrum[i, b], power)
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


def _stft_batch(padded, window, hop_length, block_frames, out):
    for s in range(padded.shape[0]):
        _stft_one(padded[s], window, hop_length, block_frames, out[s])


def _stft_batch_parallel(padded, window, hop_length, block_frames, out):
    for s in prange(padded.shape[0]):
        _stft_one(padded[s], window, hop_length, block_frames, out[s])


def _mel_batch(padded, window, hop_length, block_frames, power, bin_offsets, bin_bands, bin_weights, out):
    for s in range(padded.shape[0]):
        _mel_one(padded[s], window, hop_length, block_frames, power, bin_offsets, bin_bands, bin_weights, out[s])


def _mel_batch_parallel(padded, window, hop_length, block_frames, power, bin_offsets, bin_bands, bin_weights, out):
    for s in prange(padded.shape[0]):
        _mel_one(padded[s], window, hop_length, block_frames, power, bin_offsets, bin_bands, bin_weights, out[s])


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
