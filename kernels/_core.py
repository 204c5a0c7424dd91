"""Private Numba cores. They only loop over arrays and write into ``out``.

The public wrappers (``stft.py``, ``spectral.py``) validate, pad and
allocate; everything here assumes valid, contiguous inputs:

* ``padded``  : (n_signals, n_padded) float32/float64, already centre-padded
* ``window``  : (n_fft,) of the same dtype, already centred in the frame
* ``out``     : preallocated output of the documented shape
* ``complex_like`` : an empty array whose dtype (complex64 or complex128)
  the scratch spectrum takes, since Numba cannot derive it from ``padded``

Two paths. The time-window path (``*_batch``: every window, and the complex
STFT) multiplies frames by the window into a buffer before the FFT. The
frequency-window path (``*_taps_batch``: Hann, Hamming and boxcar windows that
fill the frame, the default) FFTs the frames unwindowed, read in place, and
applies the window across bins afterwards (see the section below); it takes
the frames as three strided segments instead of ``padded`` and ``window``.

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

from ._jit import jit, jit_inline, jit_parallel
from ._simd import LANES, vadd, vfloor, vload, vmul, vpairsum, vsplat, vsplat_at, vstore

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


# --- The frequency-domain-window path -------------------------------------
#
# A periodic cosine-sum window of two terms filling the frame (Hann, Hamming,
# boxcar: ``w[n] = a0 - a1 cos(2 pi n / N)``) multiplies each frame by a sum of
# two complex exponentials, so its spectrum is a three-tap filter across bins:
# ``X_w[m] = c0 X[m] + c1 (X[m - 1] + X[m + 1])`` with ``c0 = a0``,
# ``c1 = -a1 / 2``. The FFT then reads the frames in place from the signal
# (a strided view, no windowed copy), and the window costs three loads per bin
# in the power loop, where the spectrum is already in cache. The FFT of an
# unwindowed frame also gives, in its DC bin, the plain sum of the frame: a
# non-finite sample anywhere in it makes that bin non-finite, so the input's
# finiteness is checked from the spectrum instead of by another pass.


def _fft_piece(frames, start, first, end, spectrum):
    """FFT the frames of one segment (output frames ``start...``) that fall in ``first..end`` into ``spectrum``."""
    lo = max(first, start)
    hi = min(end, start + frames.shape[0])
    if lo < hi:
        n_bins = frames.shape[1] // 2 + 1
        target = spectrum[1 : n_bins + 1, lo - first : hi - first]
        r2c(frames[lo - start : hi - start], target.T, np.array([1]), True, 1.0, 1)


def _spectrum_block(head, body, tail, starts, first, count, spectrum):
    """FFT unwindowed output frames ``first..first+count`` into rows ``1..n_bins`` of ``spectrum``.

    The frames come from whichever of the three segments hold them (a block
    may span two). Rows 0 and ``n_bins + 1`` receive the conjugate-symmetric
    neighbours ``X[-1] = conj(X[1])`` and ``X[n_bins] = conj(X[n_fft - n_bins])``,
    so the three-tap window reads rows ``m, m + 1, m + 2`` for bin ``m``.
    Returns whether every frame's DC bin (its sum) is finite.
    """
    n_fft = body.shape[1]
    n_bins = n_fft // 2 + 1
    _fft_piece(head, starts[0], first, first + count, spectrum)
    _fft_piece(body, starts[1], first, first + count, spectrum)
    _fft_piece(tail, starts[2], first, first + count, spectrum)
    low = spectrum[2]
    high = spectrum[n_fft - n_bins + 1]
    below = spectrum[0]
    above = spectrum[n_bins + 1]
    finite = True
    dc = spectrum[1]
    for i in range(count):
        below[i] = np.conj(low[i])
        above[i] = np.conj(high[i])
        value = dc[i].real
        if not (value - value == 0.0):  # NaN or infinity
            finite = False
    return finite


def _windowed_power(spectrum, b, count, c0, c1, power, bin_power):
    """``|c0 X[b] + c1 (X[b - 1] + X[b + 1])| ** power`` for ``count`` frames into ``bin_power``."""
    previous = spectrum[b]
    current = spectrum[b + 1]
    following = spectrum[b + 2]
    if power == 2.0:
        for i in range(count):
            re = c0 * current[i].real + c1 * (previous[i].real + following[i].real)
            im = c0 * current[i].imag + c1 * (previous[i].imag + following[i].imag)
            bin_power[i] = re * re + im * im
    else:
        for i in range(count):
            re = c0 * current[i].real + c1 * (previous[i].real + following[i].real)
            im = c0 * current[i].imag + c1 * (previous[i].imag + following[i].imag)
            squared = re * re + im * im
            bin_power[i] = math.sqrt(squared) if power == 1.0 else math.sqrt(squared) ** power


def _power_taps_one(head, body, tail, starts, taps, block_frames, power, complex_like, out):
    """``|STFT| ** power`` of one signal, given as three segments of frames, into ``out`` (n_bins, n_frames).

    Returns False if a frame held a non-finite sample.
    """
    n_bins, n_frames = out.shape
    c0 = taps[0]
    c1 = taps[1]
    block_frames = max(1, min(block_frames, n_frames))
    spectrum = np.empty((n_bins + 2, block_frames), dtype=complex_like.dtype)
    bin_power = np.empty(block_frames, dtype=out.dtype)
    finite = True
    for first in range(0, n_frames, block_frames):
        count = min(block_frames, n_frames - first)
        if not _spectrum_block(head, body, tail, starts, first, count, spectrum):
            finite = False
        for b in range(n_bins):
            _windowed_power(spectrum, b, count, c0, c1, power, bin_power)
            target = out[b]
            for i in range(count):
                target[first + i] = bin_power[i]
    return finite


def _mel_taps_one(
    head, body, tail, starts, taps, block_frames, power, complex_like, bin_offsets, bin_bands, bin_weights, out
):
    """Mel power spectrogram of one signal, given as three segments of frames, into ``out`` (n_bands, n_frames).

    As :func:`_mel_one`, with the window applied as three taps across bins
    (see above) and the frames read in place. Returns False if a frame held a
    non-finite sample.
    """
    n_bands, n_frames = out.shape
    n_bins = body.shape[1] // 2 + 1
    n_used = bin_offsets.shape[0] - 1
    c0 = taps[0]
    c1 = taps[1]
    block_frames = max(1, min(block_frames, n_frames))
    spectrum = np.empty((n_bins + 2, block_frames), dtype=complex_like.dtype)
    bin_power = np.empty(block_frames, dtype=out.dtype)
    accumulators = np.empty((n_bands, block_frames), dtype=out.dtype)
    finite = True
    for first in range(0, n_frames, block_frames):
        count = min(block_frames, n_frames - first)
        if not _spectrum_block(head, body, tail, starts, first, count, spectrum):
            finite = False
        accumulators[:, :count] = 0.0
        for b in range(n_used):
            lo = bin_offsets[b]
            hi = bin_offsets[b + 1]
            if lo == hi:
                continue
            _windowed_power(spectrum, b, count, c0, c1, power, bin_power)
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
    return finite


# --- The mel power spectrogram in explicit vectors (float32, power 2) --------
#
# The loops above run along frames inside a loop over bins, so every bin loads
# its three spectrum rows and loads and stores its bands' accumulators. Here a
# chunk of frames (``LANES`` frames, two vectors of interleaved re/im floats)
# walks up the bins instead, carrying in registers the two rows it has already
# loaded (``X[b - 1]``, ``X[b]``), its two open bands' accumulators (the
# filterbank as :class:`filters.BandSegments`: each bin feeds band ``m`` and
# ``m + 1`` of its run) and loading one row per bin; a band is written out,
# once, when the walk leaves it. With the window folded in, ``X_w = c0 (X[b] +
# k (X[b - 1] + X[b + 1]))`` with ``k = c1 / c0``, and ``c0 ** 2`` goes into
# the weights: 16 float operations per bin and chunk (``_simd`` explains the vectors).
#
# Bands are written block by block into a staging array ``(n_blocks, n_bands,
# width)`` that fills front to back; :func:`_unblock_db` then writes the
# ``(n_bands, n_frames)`` output one row after the other.
# Writing the output directly, a block's columns across all its rows, measured
# 0.3 to 0.9 ms slower per 30 s clip whenever the output's lines were not in
# cache already (after another clip or job had run): 128 write streams that
# no prefetcher follows, each line missed twice.


def _flush_band(target, band, at, count, low, high, floor, scratch):
    """Write one band's ``|X|²`` sums, at least ``floor``, to ``target[band, at:at + count]``.

    ``low`` and ``high`` hold the sums of ``re²`` and ``im²`` interleaved, for ``LANES`` frames.
    """
    total = vfloor(vpairsum(low, high), floor)
    if count == LANES:
        vstore(target, band, at, total)
    else:
        vstore(scratch, 0, 0, total)
        for i in range(count):
            target[band, at + i] = scratch[0, i]


def _mel_runs(flat, count, k, first_bins, bands, low_weights, high_weights, floor, target, scratch):
    """The mel bands of the first ``count`` frames of a block (``flat``: its spectrum as floats) into ``target``."""
    n_bands = target.shape[0]
    n_runs = bands.shape[0]
    ratio = vsplat(k)
    least = vsplat(floor)
    zero = vsplat(np.float32(0.0))
    for column in range(0, 2 * count, 2 * LANES):
        at = column // 2
        n = min(LANES, count - at)
        previous0 = vload(flat, 0, column)
        previous1 = vload(flat, 0, column + LANES)
        current0 = vload(flat, 1, column)
        current1 = vload(flat, 1, column + LANES)
        low0 = zero
        low1 = zero
        high0 = zero
        high1 = zero
        band = 0
        for run in range(n_runs + 1):
            # The walk leaves every band below this run's (all of them after the last run): write each, open the next.
            until = bands[run] if run < n_runs else n_bands
            while band < until:
                _flush_band(target, band, at, n, low0, low1, least, scratch)
                low0 = high0
                low1 = high1
                high0 = zero
                high1 = zero
                band += 1
            if run == n_runs:
                break
            for b in range(first_bins[run], first_bins[run + 1]):
                next0 = vload(flat, b + 2, column)
                next1 = vload(flat, b + 2, column + LANES)
                windowed0 = vadd(current0, vmul(ratio, vadd(previous0, next0)))
                windowed1 = vadd(current1, vmul(ratio, vadd(previous1, next1)))
                squared0 = vmul(windowed0, windowed0)
                squared1 = vmul(windowed1, windowed1)
                weight = vsplat_at(low_weights, b)
                low0 = vadd(low0, vmul(weight, squared0))
                low1 = vadd(low1, vmul(weight, squared1))
                weight = vsplat_at(high_weights, b)
                high0 = vadd(high0, vmul(weight, squared0))
                high1 = vadd(high1, vmul(weight, squared1))
                previous0 = current0
                previous1 = current1
                current0 = next0
                current1 = next1


def _mel_vector_one(head, body, tail, starts, n_frames, k, first_bins, bands, low, high, floor, staging):
    """Mel power spectrogram (power 2, float32) of one signal, as three segments of frames, into ``staging``.

    ``staging`` is ``(n_blocks, n_bands, width)``: block ``j`` holds frames
    ``j * width ...`` (``width`` frames a block, a multiple of ``LANES``), each
    value at least ``floor``. Returns False if a frame held a non-finite sample.
    """
    n_blocks, _, width = staging.shape
    n_bins = body.shape[1] // 2 + 1
    # The lanes past the last frame of a partial block are computed and never written: they hold the
    # block before's spectrum, or zeros when there is none (no garbage such as denormals to slow the
    # arithmetic; zeroing the whole buffer every call cost 20 us per 30 s clip).
    spectrum = np.empty((n_bins + 2, width), dtype=np.complex64)
    if n_frames < width:
        spectrum[:] = 0.0
    flat = spectrum.view(np.float32)
    scratch = np.empty((1, LANES), dtype=np.float32)
    finite = True
    for j in range(n_blocks):
        first = j * width
        count = min(width, n_frames - first)
        if not _spectrum_block(head, body, tail, starts, first, count, spectrum):
            finite = False
        _mel_runs(flat, count, k, first_bins, bands, low, high, floor, staging[j], scratch)
    return finite


def _mel_vector_batch(head, body, tail, starts, n_frames, k, first_bins, bands, low, high, floor, finite, staging):
    for s in range(staging.shape[0]):
        finite[s] = _mel_vector_one(
            head[s], body[s], tail[s], starts, n_frames, k, first_bins, bands, low, high, floor, staging[s]
        )


def _mel_vector_batch_parallel(
    head, body, tail, starts, n_frames, k, first_bins, bands, low, high, floor, finite, staging
):
    for s in prange(staging.shape[0]):
        finite[s] = _mel_vector_one(
            head[s], body[s], tail[s], starts, n_frames, k, first_bins, bands, low, high, floor, staging[s]
        )


def _unblock_db(staging, out, scale, ref_db, floor):
    """``out[s, m, j * width + i] = max(scale * x - ref_db, floor)``, ``x = staging[s, j, m, i]``, row by row.

    NaN stays NaN; ``scale=1, ref_db=0, floor=-inf`` copies. Whole vectors where a row's
    frames allow, so that no loop pays for alias checks 2,700 times per clip.
    """
    n_blocks, n_bands, width = staging.shape[1:]
    n_frames = out.shape[2]
    times = vsplat(scale)
    minus = vsplat(-ref_db)
    least = vsplat(floor)
    for s in range(out.shape[0]):
        source = staging[s]
        target = out[s]
        for m in range(n_bands):
            for j in range(n_blocks):
                first = j * width
                whole = min(width, n_frames - first) // LANES * LANES
                for i in range(0, whole, LANES):
                    value = vadd(vmul(times, vload(source[j], m, i)), minus)
                    vstore(target, m, first + i, vfloor(value, least))
                for i in range(whole, min(width, n_frames - first)):
                    value = scale * source[j, m, i] - ref_db
                    target[m, first + i] = floor if value < floor else value


def _power_taps_batch(head, body, tail, starts, taps, block_frames, power, complex_like, finite, out):
    for s in range(out.shape[0]):
        finite[s] = _power_taps_one(head[s], body[s], tail[s], starts, taps, block_frames, power, complex_like, out[s])


def _power_taps_batch_parallel(head, body, tail, starts, taps, block_frames, power, complex_like, finite, out):
    for s in prange(out.shape[0]):
        finite[s] = _power_taps_one(head[s], body[s], tail[s], starts, taps, block_frames, power, complex_like, out[s])


def _mel_taps_batch(
    head, body, tail, starts, taps, block_frames, power, complex_like, bin_offsets, bin_bands, bin_weights, finite, out
):
    for s in range(out.shape[0]):
        finite[s] = _mel_taps_one(
            head[s],
            body[s],
            tail[s],
            starts,
            taps,
            block_frames,
            power,
            complex_like,
            bin_offsets,
            bin_bands,
            bin_weights,
            out[s],
        )


def _mel_taps_batch_parallel(
    head, body, tail, starts, taps, block_frames, power, complex_like, bin_offsets, bin_bands, bin_weights, finite, out
):
    for s in prange(out.shape[0]):
        finite[s] = _mel_taps_one(
            head[s],
            body[s],
            tail[s],
            starts,
            taps,
            block_frames,
            power,
            complex_like,
            bin_offsets,
            bin_bands,
            bin_weights,
            out[s],
        )


def _floor_at(S, amin):
    """``max(S, amin)`` in place over a flat array (NaN kept), as one vectorised pass."""
    for i in range(S.shape[0]):
        value = S[i]
        S[i] = amin if value < amin else value


def _db_finish(S, scale, ref_db, floor):
    """``max(scale * S - ref_db, floor)`` in place over a flat array (scalars given in ``S``'s dtype; NaN kept)."""
    for i in range(S.shape[0]):
        value = scale * S[i] - ref_db
        S[i] = floor if value < floor else value


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
_spectrum_block = jit(_spectrum_block)
_windowed_power = jit_inline(_windowed_power)
_fft_piece = jit(_fft_piece)
_power_taps_one = jit(_power_taps_one)
_mel_taps_one = jit(_mel_taps_one)
_flush_band = jit_inline(_flush_band)
_mel_runs = jit(_mel_runs)
_mel_vector_one = jit(_mel_vector_one)
mel_vector_batch = jit(_mel_vector_batch)
mel_vector_batch_parallel = jit_parallel(_mel_vector_batch_parallel)
unblock_db = jit(_unblock_db)
power_taps_batch = jit(_power_taps_batch)
power_taps_batch_parallel = jit_parallel(_power_taps_batch_parallel)
mel_taps_batch = jit(_mel_taps_batch)
mel_taps_batch_parallel = jit_parallel(_mel_taps_batch_parallel)
floor_at = jit(_floor_at)
db_finish = jit(_db_finish)
stft_batch = jit(_stft_batch)
stft_batch_parallel = jit_parallel(_stft_batch_parallel)
power_batch = jit(_power_batch)
power_batch_parallel = jit_parallel(_power_batch_parallel)
mel_batch = jit(_mel_batch)
mel_batch_parallel = jit_parallel(_mel_batch_parallel)
