"""Short-time Fourier transform with librosa's framing, padding and windows."""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from . import _core
from ._errors import ParameterError
from .validate import all_finite, audio, frame_sizes
from .validate import pad_mode as check_pad_mode
from .validate import power as check_power
from .windows import get_window, spectral_taps

__all__ = ["stft", "spectrogram", "frame_count"]


def frame_count(n_samples: int, *, n_fft: int, hop_length: int, center: bool) -> int:
    """Number of STFT frames librosa produces for a signal of ``n_samples``.

    ``1 + (n_samples + 2 * (n_fft // 2) - n_fft) // hop_length`` with centring,
    ``1 + (n_samples - n_fft) // hop_length`` without (which needs
    ``n_samples >= n_fft``).
    """
    padded = n_samples + 2 * (n_fft // 2) if center else n_samples
    if padded < n_fft:
        how = "even after centre padding" if center else "with center=False"
        raise ParameterError(
            f"signal of {n_samples} samples is shorter than n_fft={n_fft} {how}; "
            "pass a longer signal, center=True or a smaller n_fft"
        )
    return 1 + (padded - n_fft) // hop_length


def frames_setup(y, *, n_fft, hop_length, win_length, window, center, pad_mode):
    """Validate arguments and prepare the padded signals shared by every STFT-based kernel.

    Returns
    -------
    padded : np.ndarray [shape=(n_signals, n_padded)]
        The signals flattened over leading axes, centre-padded if asked, contiguous.
    window : np.ndarray [shape=(n_fft,)]
        The window centred in the frame, in the signal's dtype.
    hop_length : int
    n_frames : int
    leading : tuple
        The leading shape of ``y`` (its shape without the last axis).
    """
    y = audio(y)
    n_fft, hop_length, win_length = frame_sizes(n_fft, hop_length, win_length)
    check_pad_mode(pad_mode)
    n_frames = frame_count(y.shape[-1], n_fft=n_fft, hop_length=hop_length, center=bool(center))
    leading = y.shape[:-1]
    flat = y.reshape((int(np.prod(leading, dtype=np.int64)), y.shape[-1]))
    if not center:
        padded = np.ascontiguousarray(flat)
    elif pad_mode == "constant":
        # One copy into a zeroed frame is cheaper than np.pad's general path.
        half = n_fft // 2
        padded = np.empty((flat.shape[0], flat.shape[1] + 2 * half), dtype=flat.dtype)
        padded[:, :half] = 0
        padded[:, half + flat.shape[1] :] = 0
        padded[:, half : half + flat.shape[1]] = flat
    else:
        if y.shape[-1] == 0:
            raise ParameterError(f"cannot pad an empty signal with pad_mode={pad_mode!r}; use 'constant'")
        padded = np.pad(flat, ((0, 0), (n_fft // 2, n_fft // 2)), mode=pad_mode)
    return padded, _window(window, win_length, n_fft, y.dtype), hop_length, n_frames, leading


class TappedFrames(NamedTuple):
    """The frames of every signal for the frequency-domain-window path (see ``_core``).

    Frames are read in place: ``body`` is a strided view of the signal itself
    for the frames that lie wholly inside it; ``head`` and ``tail`` view small
    zero-padded copies of the two ends for the frames that reach into the
    centre padding. Each is ``(n_signals, count, n_fft)``; ``starts`` holds
    the first output frame of each, so together they give frames
    ``0..n_frames-1`` in order.
    """

    head: np.ndarray
    body: np.ndarray
    tail: np.ndarray
    starts: np.ndarray
    taps: np.ndarray
    n_frames: int
    leading: tuple
    signals: np.ndarray


#: Signals of at least this many frame lengths are read in place; shorter ones are padded whole,
#: which costs less than the extra FFT calls of the two edge segments.
IN_PLACE_MIN_FFTS = 16


def _frames_of(array: np.ndarray, offset: int, count: int, n_fft: int, hop_length: int) -> np.ndarray:
    """``count`` frames of every row of 2-D C-contiguous ``array`` from sample ``offset``: a strided view."""
    if count <= 0:
        return np.empty((array.shape[0], 0, n_fft), dtype=array.dtype)
    item = array.itemsize
    return np.ndarray(
        (array.shape[0], count, n_fft),
        dtype=array.dtype,
        buffer=array,
        offset=offset * item,
        strides=(array.strides[0], hop_length * item, item),
    )


def tapped_setup(y, *, n_fft, hop_length, win_length, window, center, pad_mode) -> TappedFrames | None:
    """Validate and prepare the frequency-domain-window path, or return None when the window does not allow it.

    Finiteness of ``y`` is not checked here except for samples no frame
    covers: the kernel reads it off each frame's DC bin (see :func:`check_finite`).
    """
    n_fft, hop_length, win_length = frame_sizes(n_fft, hop_length, win_length)
    taps = spectral_taps(window, win_length, n_fft)
    if taps is None:
        return None
    y = audio(y, finite=False)
    check_pad_mode(pad_mode)
    n_frames = frame_count(y.shape[-1], n_fft=n_fft, hop_length=hop_length, center=bool(center))
    leading = y.shape[:-1]
    flat = np.ascontiguousarray(y.reshape((int(np.prod(leading, dtype=np.int64)), y.shape[-1])))
    n = flat.shape[1]
    half = n_fft // 2 if center else 0
    # Samples past the last frame (or between frames when hop > n_fft) are read by no FFT.
    covered = (n_frames - 1) * hop_length + n_fft - half
    if hop_length > n_fft or covered < n:
        if not all_finite(flat if hop_length > n_fft else flat[:, max(covered, 0) :]):
            raise ParameterError("y contains non-finite samples (NaN or infinity)")
    first_inside = -(-half // hop_length)  # the first frame that starts inside the signal
    last_inside = (n + half - n_fft) // hop_length  # the last frame that ends inside it
    if center and pad_mode == "constant" and n >= IN_PLACE_MIN_FFTS * n_fft and first_inside <= last_inside:
        head = np.zeros((flat.shape[0], (first_inside - 1) * hop_length + n_fft), dtype=flat.dtype)
        head[:, half:] = flat[:, : head.shape[1] - half]
        tail_first = last_inside + 1
        n_tail = n_frames - tail_first
        tail = np.zeros((flat.shape[0], (n_tail - 1) * hop_length + n_fft if n_tail > 0 else 0), dtype=flat.dtype)
        source = tail_first * hop_length - half
        kept = min(tail.shape[1], n - source)
        tail[:, :kept] = flat[:, source : source + kept]
        segments = (
            _frames_of(head, 0, first_inside, n_fft, hop_length),
            _frames_of(flat, first_inside * hop_length - half, tail_first - first_inside, n_fft, hop_length),
            _frames_of(tail, 0, n_tail, n_fft, hop_length),
        )
        starts = (0, first_inside, tail_first)
    else:
        if not center:
            padded = flat
        elif pad_mode == "constant":
            padded = np.zeros((flat.shape[0], n + 2 * half), dtype=flat.dtype)
            padded[:, half : half + n] = flat
        else:
            if n == 0:
                raise ParameterError(f"cannot pad an empty signal with pad_mode={pad_mode!r}; use 'constant'")
            padded = np.pad(flat, ((0, 0), (half, half)), mode=pad_mode)
        empty = _frames_of(flat, 0, 0, n_fft, hop_length)
        segments = (empty, _frames_of(padded, 0, n_frames, n_fft, hop_length), empty)
        starts = (0, 0, n_frames)
    return TappedFrames(
        *segments,
        starts=np.array(starts, dtype=np.int64),
        taps=np.array(taps, dtype=flat.dtype),
        n_frames=n_frames,
        leading=leading,
        signals=flat,
    )


def run_tapped(tapped: TappedFrames, driver, n_rows: int, *args) -> np.ndarray:
    """Run a frequency-window ``driver`` of ``_core`` over ``tapped`` into a new ``(..., n_rows, n_frames)`` array.

    ``args`` are the driver's arguments between the segments' ``starts`` and
    ``finite`` (see :func:`tapped_args` for the usual ones). Raises if a frame
    held a non-finite sample (see :func:`check_finite`).
    """
    signals = tapped.signals
    out = np.empty((signals.shape[0], n_rows, tapped.n_frames), dtype=signals.dtype)
    finite = np.empty(signals.shape[0], dtype=np.bool_)
    driver(tapped.head, tapped.body, tapped.tail, tapped.starts, *args, finite, out)
    check_finite(finite, signals)
    return out.reshape(tapped.leading + out.shape[1:])


def tapped_args(tapped: TappedFrames, power: float) -> tuple:
    """The arguments the scalar frequency-window drivers take first: taps, block size, power, complex dtype."""
    return tapped.taps, _core.BLOCK_FRAMES, power, complex_like(tapped.signals.dtype)


def check_finite(finite: np.ndarray, signals: np.ndarray) -> None:
    """Raise if the kernel saw a non-finite frame sum (``finite`` holds one flag per signal) from a non-finite sample.

    Finite samples far beyond +-1 (1e38) can overflow a frame's sum without
    any NaN or infinity in ``y``: then nothing is raised and the output holds
    the infinities the arithmetic gives, as librosa's and the time-window path's do.
    """
    if not finite.all() and not all_finite(signals):
        raise ParameterError("y contains non-finite samples (NaN or infinity)")


@functools.lru_cache(maxsize=64)
def _cached_window(window, win_length, n_fft, dtype):
    values = get_window(window, win_length, n_fft=n_fft).astype(dtype)
    values.setflags(write=False)
    return values


def _window(window, win_length, n_fft, dtype) -> np.ndarray:
    """The centred window in ``dtype``; named windows are built once and cached."""
    if isinstance(window, (str, tuple)):
        try:
            return _cached_window(window, win_length, n_fft, np.dtype(dtype))
        except TypeError:  # an unhashable tuple parameter
            pass
    return get_window(window, win_length, n_fft=n_fft).astype(dtype)


def complex_like(dtype) -> np.ndarray:
    """An empty complex array of the precision matching real ``dtype`` (a dtype carrier for the cores)."""
    return np.empty(0, dtype=np.complex64 if dtype == np.float32 else np.complex128)


def stft(
    y: np.ndarray,
    *,
    n_fft: int = 2048,
    hop_length: int | None = None,
    win_length: int | None = None,
    window="hann",
    center: bool = True,
    pad_mode: str = "constant",
    block_frames: int = _core.BLOCK_FRAMES,
    parallel: bool = False,
) -> np.ndarray:
    """Complex short-time Fourier transform, equal to ``librosa.stft``.

    Parameters
    ----------
    y : np.ndarray [shape=(..., n), dtype=float32 or float64]
        One signal, or several stacked along leading axes (channels, clips).
    n_fft : int > 0
        Frame length and FFT size.
    hop_length : int > 0, optional
        Samples between frames; ``win_length // 4`` when omitted.
    win_length : int <= n_fft, optional
        Window length (zero-padded to ``n_fft``); ``n_fft`` when omitted.
    window : str, tuple, callable or np.ndarray [shape=(win_length,)]
        See :func:`kernels.windows.get_window`.
    center : bool
        Pad ``n_fft // 2`` samples on both sides so frame ``t`` is centred at ``t * hop_length``.
    pad_mode : {"constant", "reflect", "edge", "symmetric"}
        How to pad when ``center`` is true.
    block_frames : int > 0
        Frames per batched FFT (a tuning knob; results do not depend on it).
    parallel : bool
        Spread stacked signals over Numba threads.

    Returns
    -------
    D : np.ndarray [shape=(..., 1 + n_fft // 2, n_frames), dtype=complex64 or complex128]
        complex64 for float32 input, complex128 for float64.
    """
    padded, window_values, hop_length, n_frames, leading = frames_setup(
        y, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window, center=center, pad_mode=pad_mode
    )
    block_frames = int(block_frames)
    complex_dtype = np.complex64 if padded.dtype == np.float32 else np.complex128
    out = np.empty((padded.shape[0], 1 + window_values.shape[0] // 2, n_frames), dtype=complex_dtype)
    driver = _core.stft_batch_parallel if parallel else _core.stft_batch
    driver(padded, window_values, hop_length, block_frames, out)
    return out.reshape(leading + out.shape[1:])


def spectrogram(
    y: np.ndarray,
    *,
    n_fft: int = 2048,
    hop_length: int | None = None,
    win_length: int | None = None,
    window="hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
    parallel: bool = False,
) -> np.ndarray:
    """Magnitude spectrogram ``|stft(y)| ** power``, computed without the complex array.

    Parameters are those of :func:`stft`, plus ``power > 0`` (1 for magnitude,
    2 for power).

    Returns
    -------
    S : np.ndarray [shape=(..., 1 + n_fft // 2, n_frames), dtype of y]
    """
    power = check_power(power)
    tapped = tapped_setup(
        y, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window, center=center, pad_mode=pad_mode
    )
    if tapped is not None:
        driver = _core.power_taps_batch_parallel if parallel else _core.power_taps_batch
        return run_tapped(tapped, driver, 1 + tapped.body.shape[2] // 2, *tapped_args(tapped, power))
    padded, window_values, hop_length, n_frames, leading = frames_setup(
        y, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window, center=center, pad_mode=pad_mode
    )
    out = np.empty((padded.shape[0], 1 + window_values.shape[0] // 2, n_frames), dtype=padded.dtype)
    driver = _core.power_batch_parallel if parallel else _core.power_batch
    driver(padded, window_values, hop_length, _core.BLOCK_FRAMES, power, complex_like(padded.dtype), out)
    return out.reshape(leading + out.shape[1:])
