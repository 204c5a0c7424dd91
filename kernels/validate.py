"""Argument checks: the one home of "is this a positive integer / finite number / known choice".

Used by the kernels' public wrappers and by every layer above them (the
engine's FeatureSpec and extract, the synthetic generator). Each check takes
the exception class to raise (``error``), so a message always reaches the user
as the error type of the layer they called.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._errors import ParameterError

PAD_MODES = ("constant", "reflect", "edge", "symmetric")


__all__ = [
    "PAD_MODES",
    "all_finite",
    "audio",
    "frame_sizes",
    "integer",
    "one_of",
    "pad_mode",
    "positive_int",
    "power",
    "real_number",
]


def positive_int(name: str, value, *, error: type[Exception] = ParameterError) -> int:
    """Return ``value`` as an int, or raise ``error`` if it is not a positive integer."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value <= 0:
        raise error(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def integer(
    name: str, value, low: int | None = None, high: int | None = None, *, error: type[Exception] = ParameterError
) -> int:
    """Return ``value`` as an int in ``[low, high]`` (either bound optional), or raise ``error``."""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, numbers.Integral)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        if low is not None and high is not None:
            bound = f"an integer in [{low}, {high}]"
        elif low is not None:
            bound = f"an integer >= {low}"
        elif high is not None:
            bound = f"an integer <= {high}"
        else:
            bound = "an integer"
        raise error(f"{name} must be {bound}, got {value!r}")
    return int(value)


def one_of(name: str, value, choices, *, error: type[Exception] = ParameterError):
    """Return ``value`` if it is one of ``choices``, or raise ``error`` listing them."""
    if value not in choices:
        listed = ", ".join(repr(c) if not isinstance(c, str) else c for c in choices)
        raise error(f"{name} must be one of {listed}, got {value!r}")
    return value


def audio(y, name: str = "y", *, finite: bool = True) -> np.ndarray:
    """Check a signal ``(..., n_samples)``: floating point, at least 1-D, and finite unless ``finite=False``.

    ``finite=False`` is for callers that check finiteness themselves on the
    way (the kernels' frequency-domain path reads it off the spectrum).
    """
    if not isinstance(y, np.ndarray):
        raise ParameterError(f"{name} must be a numpy.ndarray, got {type(y).__name__}")
    if not np.issubdtype(y.dtype, np.floating):
        raise ParameterError(f"{name} must be floating point (float32 or float64), got dtype {y.dtype}")
    if y.ndim == 0:
        raise ParameterError(f"{name} must have at least one dimension (..., n_samples), got shape {y.shape}")
    if y.dtype not in (np.float32, np.float64):
        y = y.astype(np.float64 if y.dtype.itemsize > 4 else np.float32)
    if finite and not all_finite(y):
        raise ParameterError(f"{name} contains non-finite samples (NaN or infinity)")
    return y


def all_finite(y: np.ndarray) -> bool:
    """Whether every sample of ``y`` is finite (min and max propagate NaN and expose infinities, no temporary)."""
    return not y.size or bool(np.isfinite(y.min()) and np.isfinite(y.max()))


def pad_mode(value: str) -> str:
    """Check a padding mode for ``center=True``."""
    if value not in PAD_MODES:
        raise ParameterError(f"pad_mode must be one of {PAD_MODES}, got {value!r}")
    return value


def frame_sizes(n_fft, hop_length, win_length) -> tuple[int, int, int]:
    """Resolve librosa's defaults (win_length=n_fft, hop_length=win_length//4) and check them."""
    n_fft = positive_int("n_fft", n_fft)
    win_length = n_fft if win_length is None else positive_int("win_length", win_length)
    if win_length > n_fft:
        raise ParameterError(f"win_length={win_length} must not exceed n_fft={n_fft}")
    if hop_length is None:
        hop_length = max(1, win_length // 4)
    hop_length = positive_int("hop_length", hop_length)
    return n_fft, hop_length, win_length


def power(value) -> float:
    """Check the magnitude exponent of a spectrogram (1 for magnitude, 2 for power)."""
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, numbers.Real)
        or not np.isfinite(value)
        or value <= 0
    ):
        raise ParameterError(f"power must be a positive number, got {value!r}")
    return float(value)


def real_number(
    name: str, value, *, minimum=None, strictly=False, maximum=None, error: type[Exception] = ParameterError
) -> float:
    """Return ``value`` as a float, checking it is finite, above ``minimum`` and at most ``maximum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise error(f"{name} must be a finite real number, got {value!r}")
    if minimum is not None and (value < minimum or (strictly and value == minimum)):
        relation = ">" if strictly else ">="
        raise error(f"{name} must be {relation} {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise error(f"{name} must be <= {maximum}, got {value!r}")
    return float(value)
