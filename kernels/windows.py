"""Analysis windows, as ``librosa.filters.get_window`` builds them."""

from __future__ import annotations

import numpy as np

from ._errors import ParameterError

__all__ = ["get_window", "spectral_taps"]

_ALIASES = {"rectangular": "boxcar", "rect": "boxcar", "hanning": "hann"}

#: Cosine-sum coefficients of the common windows, as scipy.signal.windows defines them.
_COSINE_SUMS = {"hann": (0.5, 0.5), "hamming": (0.54, 1.0 - 0.54), "blackman": (0.42, 0.50, 0.08), "boxcar": (1.0,)}


def _periodic_cosine_sum(coefficients, n: int) -> np.ndarray:
    """Scipy's ``general_cosine(n, a, sym=False)``, operation for operation (so bit-identical).

    Built here because importing scipy.signal costs about half a second in
    every fresh worker process.
    """
    if n <= 1:
        return np.ones(n)
    phase = np.linspace(-np.pi, np.pi, n + 1)
    values = np.zeros(n + 1)
    for k, coefficient in enumerate(coefficients):
        values += coefficient * np.cos(k * phase)
    return values[:-1]


def get_window(window="hann", win_length: int = 2048, *, n_fft: int | None = None) -> np.ndarray:
    """Build an analysis window and centre it in a frame of ``n_fft`` samples.

    Parameters
    ----------
    window : str, tuple, callable or np.ndarray [shape=(win_length,)]
        A window name understood by ``scipy.signal.get_window`` ("hann",
        "hamming", "blackman", "rectangular"/"boxcar", ...), a (name, param)
        tuple, a callable ``f(win_length)``, or the window samples themselves.
        Named windows are periodic (``fftbins=True``), as in librosa.
    win_length : int > 0
        Length of the window.
    n_fft : int >= win_length, optional
        Frame length; the window is zero-padded symmetrically to it.

    Returns
    -------
    window : np.ndarray [shape=(n_fft,), dtype=float64]
    """
    n_fft = win_length if n_fft is None else n_fft
    if callable(window):
        values = np.asarray(window(win_length), dtype=np.float64)
    elif isinstance(window, str) and _ALIASES.get(window, window) in _COSINE_SUMS:
        values = _periodic_cosine_sum(_COSINE_SUMS[_ALIASES.get(window, window)], win_length)
    elif isinstance(window, (str, tuple)):
        import scipy.signal  # only for the rarer windows (see _periodic_cosine_sum)

        name = _ALIASES.get(window, window) if isinstance(window, str) else window
        try:
            values = scipy.signal.get_window(name, win_length, fftbins=True)
        except (ValueError, TypeError) as error:
            raise ParameterError(f"unknown window={window!r}: {error}") from None
    elif isinstance(window, (np.ndarray, list)):
        values = np.asarray(window, dtype=np.float64)
        if values.ndim != 1 or values.shape[0] != win_length:
            raise ParameterError(f"window array must have shape ({win_length},) (win_length), got {values.shape}")
    else:
        raise ParameterError(f"window must be a name, tuple, callable or array, got {type(window).__name__}")
    if values.shape != (win_length,) or not np.isfinite(values).all():
        raise ParameterError(f"window={window!r} did not give {win_length} finite samples")
    left = (n_fft - win_length) // 2
    return np.pad(values, (left, n_fft - win_length - left))


def spectral_taps(window, win_length: int, n_fft: int) -> tuple[float, float] | None:
    """The window as three taps across FFT bins, ``(c0, c1)``, or None when it is not one.

    A periodic cosine sum of at most two terms that fills the frame,
    ``w[n] = a0 - a1 cos(2 pi n / n_fft)`` (Hann, Hamming, boxcar), turns the
    spectrum of a frame into ``c0 X[m] + c1 (X[m - 1] + X[m + 1])`` with
    ``c0 = a0`` and ``c1 = -a1 / 2``: the kernels then FFT the frames unwindowed
    and apply the window in the power loop. Other windows, shorter windows and
    frames under 4 samples return None (the kernels window in time instead).
    """
    if not isinstance(window, str) or win_length != n_fft or n_fft < 4:
        return None
    coefficients = _COSINE_SUMS.get(_ALIASES.get(window, window))
    if coefficients is None or len(coefficients) > 2:
        return None
    a0, a1 = (coefficients + (0.0,))[:2]
    return a0, -a1 / 2.0
