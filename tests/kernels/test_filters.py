"""kernels/filters.py against librosa.filters."""

from __future__ import annotations

import numpy as np
import pytest

import kernels
from kernels.filters import filterbank_by_bin

from .conftest import librosa

GRID = [
    dict(sr=22050, n_fft=2048),
    dict(sr=22050, n_fft=2048, n_mels=128, htk=True),
    dict(sr=22050, n_fft=256, n_mels=40, norm=None),
    dict(sr=16000, n_fft=512, n_mels=64, fmin=100.0, fmax=7000.0),
    dict(sr=44100, n_fft=4096, n_mels=96, fmin=30.0, fmax=16000.0, htk=True, norm=None),
    dict(sr=48000, n_fft=1024, n_mels=80, norm=2.0),
    dict(sr=8000, n_fft=400, n_mels=26, fmin=0.0, fmax=4000.0),
]


@pytest.mark.parametrize("kwargs", GRID, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_mel_filterbank_equals_librosa(kwargs):
    ours = kernels.mel_filterbank(**kwargs)
    reference = librosa.filters.mel(**kwargs)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("htk", [False, True])
def test_mel_scale_round_trip_and_librosa(htk):
    hz = np.array([0.0, 20.0, 440.0, 999.0, 1000.0, 1001.0, 8000.0, 22050.0])
    np.testing.assert_allclose(kernels.hz_to_mel(hz, htk=htk), librosa.hz_to_mel(hz, htk=htk), rtol=1e-12)
    np.testing.assert_allclose(kernels.mel_to_hz(kernels.hz_to_mel(hz, htk=htk), htk=htk), hz, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(
        kernels.mel_frequencies(40, fmin=50.0, fmax=9000.0, htk=htk),
        librosa.mel_frequencies(n_mels=40, fmin=50.0, fmax=9000.0, htk=htk),
        rtol=1e-12,
    )
    np.testing.assert_allclose(float(kernels.hz_to_mel(1500.0, htk=htk)), librosa.hz_to_mel(1500.0, htk=htk))


@pytest.mark.parametrize("kwargs", GRID[:4], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_filterbank_by_bin_reproduces_dense_weights(kwargs):
    weights = kernels.mel_filterbank(**kwargs)
    bin_offsets, bin_bands, bin_weights = filterbank_by_bin(weights)
    rebuilt = np.zeros_like(weights)
    for b in range(bin_offsets.size - 1):
        for e in range(bin_offsets[b], bin_offsets[b + 1]):
            rebuilt[bin_bands[e], b] = bin_weights[e]
    np.testing.assert_array_equal(rebuilt, weights)
    # The sparsity the fused kernel relies on: each FFT bin feeds at most two bands.
    assert np.diff(bin_offsets).max() <= 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sr=22050, n_fft=2048, fmax=12000.0), "fmax"),
        (dict(sr=22050, n_fft=2048, fmin=5000.0, fmax=4000.0), "fmin"),
        (dict(sr=22050, n_fft=2048, fmin=-1.0), "fmin"),
        (dict(sr=22050, n_fft=0), "n_fft"),
        (dict(sr=22050, n_fft=2048.5), "n_fft"),
        (dict(sr=22050, n_fft=2048, n_mels=0), "n_mels"),
        (dict(sr=0, n_fft=2048), "sr"),
        (dict(sr=22050, n_fft=2048, norm="l2"), "norm"),
    ],
)
def test_mel_filterbank_rejects_bad_arguments(kwargs, match):
    with pytest.raises(kernels.ParameterError, match=match):
        kernels.mel_filterbank(**kwargs)
