"""kernels/mfcc.py against librosa.feature.mfcc."""

from __future__ import annotations

import numpy as np
import pytest

import kernels
from tests.conftest import make_tone_mix

from .conftest import MFCC_ATOL, librosa


@pytest.mark.parametrize("lifter", [0, 22])
@pytest.mark.parametrize("n_mfcc, dct_type, norm", [(20, 2, "ortho"), (13, 2, None), (40, 3, "ortho"), (12, 1, None)])
def test_mfcc_from_audio_equals_librosa(n_mfcc, dct_type, norm, lifter):
    y = make_tone_mix(seconds=1.5, seed=n_mfcc)
    kwargs = dict(sr=22050, n_mfcc=n_mfcc, dct_type=dct_type, norm=norm, lifter=lifter, n_fft=2048, hop_length=512, n_mels=128)
    ours = kernels.mfcc(y=y, **kwargs)
    reference = librosa.feature.mfcc(y=y, **kwargs)
    assert ours.shape == reference.shape and ours.dtype == reference.dtype
    # The unnormalised DCT (norm=None) multiplies every input difference by
    # sqrt(2 * n_mels) ~ 16 relative to "ortho", so the bound is scaled alike:
    # the same 1e-3 in orthonormal units.
    gain = np.sqrt(2 * 128) if norm is None else 1.0
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=MFCC_ATOL * gain)


def test_mfcc_with_mel_arguments_and_stacked_input():
    y = np.stack([make_tone_mix(sr=16000, seconds=1.0, seed=s) for s in range(3)])
    kwargs = dict(sr=16000, n_mfcc=13, n_fft=512, hop_length=160, win_length=400, n_mels=40, fmin=20.0, fmax=7600.0, htk=True)
    ours = kernels.mfcc(y=y, **kwargs)
    np.testing.assert_allclose(ours, librosa.feature.mfcc(y=y, **kwargs), rtol=0, atol=MFCC_ATOL)
    assert ours.shape == (3, 13, 1 + 16000 // 160)


def test_mfcc_from_db_spectrogram_equals_librosa(rng):
    S = kernels.log_melspectrogram(make_tone_mix(seconds=1.0), sr=22050).astype(np.float64)
    np.testing.assert_allclose(
        kernels.mfcc(S=S, n_mfcc=20), librosa.feature.mfcc(S=S, n_mfcc=20, dct_type=2, norm="ortho", lifter=0), atol=1e-9
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_mfcc=0), "n_mfcc"),
        (dict(dct_type=4), "dct_type"),
        (dict(norm="forward"), "norm"),
        (dict(lifter=-1), "lifter"),
    ],
)
def test_mfcc_bad_arguments(kwargs, match):
    with pytest.raises(kernels.ParameterError, match=match):
        kernels.mfcc(y=make_tone_mix(seconds=0.3), sr=22050, **kwargs)


def test_mfcc_needs_audio_or_spectrogram():
    with pytest.raises(kernels.ParameterError, match="either y"):
        kernels.mfcc(sr=22050)
