"""Mel-frequency cepstral coefficients, equal to ``librosa.feature.mfcc``."""

from __future__ import annotations

import functools

import numpy as np

from ._errors import ParameterError
from .spectral import log_melspectrogram
from .validate import one_of, positive_int, real_number

__all__ = ["mfcc", "dct_basis"]


@functools.lru_cache(maxsize=32)
def dct_basis(n_mfcc: int, n_mels: int, dct_type: int = 2, norm: str | None = "ortho") -> np.ndarray:
    """The first ``n_mfcc`` rows of the DCT matrix, so that ``basis @ S == dct(S, axis=-2)[:n_mfcc]``.

    Built by transforming the identity with ``scipy.fftpack.dct`` (what
    librosa calls), so every DCT type and norm has librosa's definition.

    Returns
    -------
    basis : np.ndarray [shape=(min(n_mfcc, n_mels), n_mels), dtype=float64], read-only
    """
    import scipy.fftpack  # imported on first use: it costs a fresh worker a quarter second

    basis = scipy.fftpack.dct(np.eye(n_mels), type=dct_type, norm=norm, axis=0)[:n_mfcc]
    basis.setflags(write=False)
    return basis


def mfcc(
    y: np.ndarray | None = None,
    *,
    sr: float = 22050,
    S: np.ndarray | None = None,
    n_mfcc: int = 20,
    dct_type: int = 2,
    norm: str | None = "ortho",
    lifter: float = 0,
    **melspectrogram_kwargs,
) -> np.ndarray:
    """Mel-frequency cepstral coefficients.

    Parameters
    ----------
    y : np.ndarray [shape=(..., n)], optional
        Audio. Ignored when ``S`` is given.
    sr : float > 0
        Sampling rate of ``y``.
    S : np.ndarray [shape=(..., n_mels, n_frames)], optional
        A log-power (dB) mel spectrogram, as librosa expects.
    n_mfcc : int > 0
        Number of coefficients.
    dct_type : {1, 2, 3}
        Discrete cosine transform type.
    norm : {"ortho", None}
        DCT normalisation.
    lifter : float >= 0
        Cepstral liftering ``1 + (lifter / 2) * sin(pi * k / lifter)``; 0 disables it.
    **melspectrogram_kwargs
        Passed to :func:`kernels.log_melspectrogram` when ``S`` is computed
        from ``y`` (its dB arguments keep librosa's defaults: ref=1, amin=1e-10, top_db=80).

    Returns
    -------
    M : np.ndarray [shape=(..., n_mfcc, n_frames)]
        float32 for float32 input, float64 otherwise.
    """
    positive_int("n_mfcc", n_mfcc)
    one_of("dct_type", dct_type, (1, 2, 3))
    one_of("norm", norm, ("ortho", None))
    real_number("lifter", lifter, minimum=0)
    if S is None:
        if y is None:
            raise ParameterError("pass either y (audio) or S (a dB mel spectrogram)")
        S = log_melspectrogram(y, sr=sr, **melspectrogram_kwargs)
    else:
        S = np.asarray(S)
        if S.ndim < 2 or not np.issubdtype(S.dtype, np.floating):
            raise ParameterError(f"S must be a real array of shape (..., n_mels, n_frames), got {S.dtype} {S.shape}")
    if dct_type == 1 and S.shape[-2] < 2:
        raise ParameterError("dct_type=1 needs at least 2 mel bands")
    basis = dct_basis(int(n_mfcc), S.shape[-2], dct_type, norm)
    if lifter > 0:
        k = np.arange(1, 1 + basis.shape[0], dtype=np.float64)
        basis = basis * (1 + (lifter / 2) * np.sin(np.pi * k / lifter))[:, np.newaxis]
    # Each product runs in float64 (a few hundred kFLOP per second of audio) so
    # float32 output carries one rounding only; one 2-D BLAS call per signal,
    # since a stacked mixed-precision matmul falls off BLAS.
    stacked = S.reshape((-1,) + S.shape[-2:])
    out = np.empty((stacked.shape[0], basis.shape[0], S.shape[-1]), dtype=S.dtype)
    for i in range(stacked.shape[0]):
        out[i] = basis @ stacked[i].astype(np.float64)
    return out.reshape(S.shape[:-2] + out.shape[-2:])
