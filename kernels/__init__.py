"""Numba kernels for audio features with librosa's names, defaults and numbers.

Public functions validate their arguments and allocate outputs; the private
``_core`` module holds the Numba loops. Numba options live in ``_jit``.
"""

from ._errors import MgcError, ParameterError
from .filters import fft_frequencies, hz_to_mel, mel_filterbank, mel_frequencies, mel_to_hz
from .mfcc import mfcc
from .spectral import log_melspectrogram, melspectrogram, power_to_db
from .stft import frame_count, spectrogram, stft
from .windows import get_window

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
