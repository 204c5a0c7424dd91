"""Numba kernels for audio features with librosa's names, defaults and numbers.

Public functions validate their arguments and allocate outputs; the private
``_core`` module holds the Numba loops. Numba options live in ``_jit``.

The numeric modules (and Numba with them) load on first use of a kernel: a
process that only needs :class:`MgcError` or :mod:`kernels.validate` (every
engine worker while it starts, the CLI) does not pay for Numba, and a fresh
worker can set its thread cap before Numba reads it.
"""

import sys
import types
from importlib import import_module

from ._errors import MgcError, ParameterError

__all__ = [
    "MgcError",
    "ParameterError",
    "fft_frequencies",
    "frame_count",
    "get_window",
    "hz_to_mel",
    "log_melspectrogram",
    "mel_filterbank",
    "mel_frequencies",
    "mel_to_hz",
    "melspectrogram",
    "mfcc",
    "power_to_db",
    "spectrogram",
    "stft",
]

#: Public name -> the module that defines it.
_HOMES = {
    "fft_frequencies": "filters",
    "hz_to_mel": "filters",
    "mel_filterbank": "filters",
    "mel_frequencies": "filters",
    "mel_to_hz": "filters",
    "mfcc": "mfcc",
    "log_melspectrogram": "spectral",
    "melspectrogram": "spectral",
    "power_to_db": "spectral",
    "frame_count": "stft",
    "spectrogram": "stft",
    "stft": "stft",
    "get_window": "windows",
}


def __getattr__(name):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kernels' has no attribute {name!r}")
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


class _Kernels(types.ModuleType):
    """The package module: a submodule named like a public function never hides the function.

    Importing ``kernels.stft`` (or ``kernels.mfcc``) binds the submodule as an
    attribute of the package; ``kernels.stft`` must stay the function.
    """

    def __setattr__(self, name, value):
        if name in _HOMES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Kernels


def __dir__():
    return sorted(set(globals()) | set(__all__))
