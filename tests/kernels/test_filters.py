"""kernels/filters.py against librosa.filters and the brute-force filterbank of tests/naive.py."""

from __future__ import annotations

import numpy as np
import pytest

from mgc import kernels
from mgc.kernels.filters import filterbank_by_bin, filterbank_by_segment
from tests import naive

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
def test_mel_filterbank_equals_librosa(kwargs, librosa):
    ours = kernels.mel_filterbank(**kwargs)
    reference = librosa.filters.mel(**kwargs)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-9)


HZ = np.array([0.0, 20.0, 440.0, 999.0, 1000.0, 1001.0, 8000.0, 22050.0])


@pytest.mark.parametrize("htk", [False, True])
def test_mel_scale_round_trip_and_naive(htk):
    hz = HZ
    np.testing.assert_allclose(kernels.mel_to_hz(kernels.hz_to_mel(hz, htk=htk), htk=htk), hz, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(kernels.hz_to_mel(hz, htk=htk), [naive.hz_to_mel(f, htk=htk) for f in hz], rtol=1e-12)
    mels = np.linspace(0.0, 3500.0 if htk else 80.0, 37)
    np.testing.assert_allclose(
        kernels.mel_to_hz(mels, htk=htk), [naive.mel_to_hz(m, htk=htk) for m in mels], rtol=1e-12
    )


def test_slaney_mel_scale_landmarks():
    # Linear at 200/3 Hz per mel up to 1 kHz (15 mels), then 27 mels per factor 6.4.
    np.testing.assert_allclose(
        kernels.hz_to_mel(np.array([0.0, 200.0 / 3, 1000.0, 6400.0])), [0.0, 1.0, 15.0, 42.0], rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(
        kernels.hz_to_mel(np.array([0.0, 700.0]), htk=True), [0.0, 2595.0 * np.log10(2.0)], rtol=1e-12
    )


@pytest.mark.parametrize("htk", [False, True])
def test_mel_scale_equals_librosa(htk, librosa):
    hz = HZ
    np.testing.assert_allclose(kernels.hz_to_mel(hz, htk=htk), librosa.hz_to_mel(hz, htk=htk), rtol=1e-12)
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


# Many bands on a short FFT leave some bands without a bin (librosa warns of empty filters): the
# vector kernel's runs then skip a band, which must come out as zeros.
SEGMENT_GRID = [*GRID, dict(sr=22050, n_fft=256, n_mels=128), dict(sr=16000, n_fft=512, n_mels=40, fmin=3000.0)]


@pytest.mark.parametrize("kwargs", SEGMENT_GRID, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_filterbank_by_segment_reproduces_dense_weights(kwargs):
    weights = kernels.mel_filterbank(**kwargs)
    segments = filterbank_by_segment(weights)
    assert segments is not None
    first, bands, low, high = segments
    assert np.all(np.diff(bands) > 0) and np.all(np.diff(first) > 0) and first[0] == 0
    rebuilt = np.zeros_like(weights)
    for run in range(bands.size):
        for b in range(first[run], first[run + 1]):
            rebuilt[bands[run], b] += low[b]
            if bands[run] + 1 < weights.shape[0]:
                rebuilt[bands[run] + 1, b] += high[b]
            else:
                assert high[b] == 0
    np.testing.assert_array_equal(rebuilt, weights)


def test_filterbank_by_segment_refuses_other_shapes():
    weights = np.zeros((4, 10))
    weights[0, 2] = weights[2, 2] = 1.0  # one bin into two bands that are not neighbours
    assert filterbank_by_segment(weights) is None
    weights = np.zeros((4, 10))
    weights[:3, 5] = 1.0  # one bin into three bands
    assert filterbank_by_segment(weights) is None
    weights = np.zeros((4, 10))
    weights[2, 1] = weights[0, 4] = 1.0  # bands that go down as the bins go up
    assert filterbank_by_segment(weights) is None
    assert filterbank_by_segment(np.zeros((4, 10))) is None


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


@pytest.mark.parametrize("kwargs", GRID, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_mel_filterbank_equals_naive(kwargs):
    reference = naive.mel_filterbank(**kwargs)
    ours = kernels.mel_filterbank(**kwargs)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    # float32: two roundings (the triangle, then the norm) of a float64 computation.
    np.testing.assert_allclose(ours, reference, rtol=3e-7, atol=1e-12)
    np.testing.assert_allclose(kernels.mel_filterbank(**kwargs, dtype=np.float64), reference, rtol=1e-12, atol=1e-13)


def test_mel_filterbank_triangles_and_slaney_area():
    """Each filter rises then falls (one run of bins), and Slaney's norm gives every triangle unit area in Hz."""
    sr, n_fft, n_mels = 22050, 8192, 40
    weights = kernels.mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=100.0, dtype=np.float64)
    bin_hz = sr / n_fft
    for row in weights:
        support = np.flatnonzero(row)
        assert support.size >= 3 and np.all(np.diff(support) == 1)
        peak = np.argmax(row[support])
        assert np.all(np.diff(row[support][: peak + 1]) > 0) and np.all(np.diff(row[support][peak:]) < 0)
    # Area of a triangle of height 2 / width over its width is 1; the bin grid samples it to ~1 %.
    np.testing.assert_allclose(weights.sum(axis=1) * bin_hz, 1.0, rtol=0.02)
