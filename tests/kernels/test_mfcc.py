"""kernels/mfcc.py against librosa.feature.mfcc, the DCT-II written out in tests/naive.py, and its invariants."""

from __future__ import annotations

import numpy as np
import pytest

from mgc import kernels
from tests import naive
from tests.conftest import make_tone_mix

from .conftest import MFCC_ATOL


@pytest.mark.parametrize("lifter", [0, 22])
@pytest.mark.parametrize("n_mfcc, dct_type, norm", [(20, 2, "ortho"), (13, 2, None), (40, 3, "ortho"), (12, 1, None)])
def test_mfcc_from_audio_equals_librosa(n_mfcc, dct_type, norm, lifter, librosa):
    y = make_tone_mix(seconds=1.5, seed=n_mfcc)
    kwargs = dict(
        sr=22050, n_mfcc=n_mfcc, dct_type=dct_type, norm=norm, lifter=lifter, n_fft=2048, hop_length=512, n_mels=128
    )
    ours = kernels.mfcc(y=y, **kwargs)
    reference = librosa.feature.mfcc(y=y, **kwargs)
    assert ours.shape == reference.shape and ours.dtype == reference.dtype
    # The unnormalised DCT (norm=None) multiplies every input difference by
    # sqrt(2 * n_mels) ~ 16 relative to "ortho", so the bound is scaled alike:
    # the same 1e-3 in orthonormal units.
    gain = np.sqrt(2 * 128) if norm is None else 1.0
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=MFCC_ATOL * gain)


MEL_KWARGS = dict(
    sr=16000, n_mfcc=13, n_fft=512, hop_length=160, win_length=400, n_mels=40, fmin=20.0, fmax=7600.0, htk=True
)


def test_mfcc_with_mel_arguments_and_stacked_input(librosa):
    y = np.stack([make_tone_mix(sr=16000, seconds=1.0, seed=s) for s in range(3)])
    ours = kernels.mfcc(y=y, **MEL_KWARGS)
    np.testing.assert_allclose(ours, librosa.feature.mfcc(y=y, **MEL_KWARGS), rtol=0, atol=MFCC_ATOL)


def test_mfcc_stacked_input_shape_and_each_signal():
    y = np.stack([make_tone_mix(sr=16000, seconds=1.0, seed=s) for s in range(3)])
    ours = kernels.mfcc(y=y, **MEL_KWARGS)
    assert ours.shape == (3, 13, 1 + 16000 // 160) and ours.dtype == np.float32
    # top_db floors at the peak of the whole stack, so compare a signal with its own S.
    S = kernels.log_melspectrogram(y, **{k: v for k, v in MEL_KWARGS.items() if k != "n_mfcc"})
    np.testing.assert_array_equal(kernels.mfcc(S=S[1], n_mfcc=13), ours[1])


def test_mfcc_from_db_spectrogram_equals_librosa(rng, librosa):
    S = kernels.log_melspectrogram(make_tone_mix(seconds=1.0), sr=22050).astype(np.float64)
    np.testing.assert_allclose(
        kernels.mfcc(S=S, n_mfcc=20),
        librosa.feature.mfcc(S=S, n_mfcc=20, dct_type=2, norm="ortho", lifter=0),
        atol=1e-9,
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


# --- Without librosa: the DCT-II written out as a matrix, and its invariants. ---


@pytest.mark.parametrize(
    "n_mfcc, n_mels, norm, lifter",
    [(20, 128, "ortho", 0), (13, 40, None, 0), (26, 26, "ortho", 22), (1, 7, "ortho", 0)],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mfcc_from_db_spectrogram_equals_naive(n_mfcc, n_mels, norm, lifter, dtype, rng):
    S = (rng.uniform(-80.0, 20.0, (2, n_mels, 30))).astype(dtype)
    ours = kernels.mfcc(S=S, n_mfcc=n_mfcc, dct_type=2, norm=norm, lifter=lifter)
    reference = naive.mfcc(S, n_mfcc=n_mfcc, norm=norm, lifter=lifter)
    assert ours.shape == reference.shape == (2, n_mfcc, 30) and ours.dtype == dtype
    # One float32 rounding of a float64 product (the kernel multiplies in float64).
    scale = np.max(np.abs(reference))
    np.testing.assert_allclose(ours, reference, rtol=0, atol=(1e-6 if dtype == np.float32 else 1e-12) * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mfcc_from_audio_equals_naive(dtype):
    kwargs = dict(sr=16000, n_fft=512, hop_length=160, n_mels=40, fmax=7600.0)
    y = make_tone_mix(sr=16000, seconds=0.5, seed=3, dtype=dtype)
    ours = kernels.mfcc(y=y, n_mfcc=20, **kwargs)
    reference = naive.mfcc(naive.power_to_db(naive.melspectrogram(y, **kwargs)), n_mfcc=20)
    assert ours.dtype == dtype
    # The dB error (float32 filter weights, float32 log) summed by an orthonormal DCT over 40 bands.
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-3 if dtype == np.float32 else 2e-5)


def test_dct_matrix_is_orthonormal():
    C = naive.dct2_matrix(40, 40)
    np.testing.assert_allclose(C @ C.T, np.eye(40), atol=1e-12)
    np.testing.assert_allclose(kernels.mfcc(S=np.eye(40), n_mfcc=40), C, atol=1e-12)


def test_first_coefficient_is_scaled_sum_of_log_mel_bands(tone_mix):
    """Row 0 of the orthonormal DCT-II is constant: c_0 = sqrt(1 / n_mels) * sum over bands of S_db."""
    S = kernels.log_melspectrogram(tone_mix.astype(np.float64), sr=22050, n_mels=96)
    coefficients = kernels.mfcc(S=S, n_mfcc=20, dct_type=2, norm="ortho")
    np.testing.assert_allclose(coefficients[0], np.sqrt(1.0 / 96) * S.sum(axis=0), rtol=1e-12)
    # float32 audio, the engine's path: the same up to float32 rounding.
    S32 = kernels.log_melspectrogram(tone_mix, sr=22050, n_mels=96)
    c32 = kernels.mfcc(y=tone_mix, sr=22050, n_mels=96, n_mfcc=20)
    np.testing.assert_allclose(c32[0], np.sqrt(1.0 / 96) * S32.astype(np.float64).sum(axis=0), rtol=1e-6)


def test_all_coefficients_keep_the_energy_of_each_frame(rng):
    """With n_mfcc = n_mels the orthonormal DCT is a rotation: each frame's squared norm is unchanged."""
    S = rng.uniform(-80.0, 0.0, (64, 25))
    coefficients = kernels.mfcc(S=S, n_mfcc=64)
    np.testing.assert_allclose(np.sum(coefficients**2, axis=0), np.sum(S**2, axis=0), rtol=1e-12)
