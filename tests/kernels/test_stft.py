"""kernels/stft.py against librosa.stft."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import kernels
from tests.conftest import make_tone_mix

from .conftest import assert_spectrum_close, librosa

# (n_fft, hop_length, win_length, window, center, pad_mode): hops below and
# above n_fft / 4, short windows, every window kind, both centring modes.
GRID = [
    (2048, 512, None, "hann", True, "constant"),
    (2048, 700, None, "hann", True, "reflect"),
    (256, 32, None, "hamming", True, "constant"),
    (256, 100, 200, "blackman", False, "constant"),
    (512, 128, 300, "rectangular", True, "reflect"),
    (1024, 256, None, "boxcar", False, "constant"),
    (4096, 1024, 2048, "hann", True, "constant"),
    (4096, 300, None, "hamming", True, "edge"),
    (1000, 250, None, "hann", True, "constant"),  # odd-sized halves are fine: n_fft need not be a power of two
    (2047, 500, None, "hann", True, "reflect"),
]


@pytest.mark.parametrize("n_fft, hop_length, win_length, window, center, pad_mode", GRID)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stft_equals_librosa(n_fft, hop_length, win_length, window, center, pad_mode, dtype):
    y = make_tone_mix(seconds=1.3, seed=n_fft + hop_length, dtype=dtype)
    kwargs = dict(n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window, center=center, pad_mode=pad_mode)
    assert_spectrum_close(kernels.stft(y, **kwargs), librosa.stft(y, **kwargs))


def test_stft_defaults_follow_librosa():
    y = make_tone_mix(seconds=1.0)
    ours = kernels.stft(y)
    reference = librosa.stft(y, n_fft=2048, hop_length=512, win_length=2048, window="hann", center=True, pad_mode="constant")
    assert_spectrum_close(ours, reference)


def test_stft_window_array_and_callable():
    y = make_tone_mix(seconds=0.5)
    window = np.kaiser(400, 8.0)
    kwargs = dict(n_fft=512, hop_length=128, win_length=400)
    assert_spectrum_close(kernels.stft(y, window=window, **kwargs), librosa.stft(y, window=window, **kwargs))
    assert_spectrum_close(
        kernels.stft(y, window=np.hanning, **kwargs), librosa.stft(y, window=np.hanning, **kwargs)
    )


def test_stft_stacked_input_equals_each_signal(rng):
    stacked = rng.standard_normal((2, 3, 5000)).astype(np.float32)
    kwargs = dict(n_fft=512, hop_length=160)
    ours = kernels.stft(stacked, **kwargs)
    assert ours.shape == (2, 3, 257, 1 + 5000 // 160)
    assert_spectrum_close(ours, librosa.stft(stacked, **kwargs))
    np.testing.assert_array_equal(ours[1, 2], kernels.stft(stacked[1, 2], **kwargs))
    np.testing.assert_array_equal(kernels.stft(stacked, parallel=True, **kwargs), ours)


def test_block_size_does_not_change_results(rng):
    y = rng.standard_normal(30000).astype(np.float32)
    reference = kernels.stft(y, n_fft=1024, hop_length=256)
    for block_frames in (1, 7, 64, 1000):
        np.testing.assert_array_equal(kernels.stft(y, n_fft=1024, hop_length=256, block_frames=block_frames), reference)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("n_fft, hop_length", [(2048, 512), (512, 100), (255, 64)])
def test_frame_counts_match_librosa_for_every_length(n_fft, hop_length, center):
    lengths = sorted({0, 1, 2, hop_length - 1, hop_length, hop_length + 1, n_fft // 2, n_fft - 1, n_fft, n_fft + 1,
                      n_fft + hop_length - 1, n_fft + hop_length, 3 * n_fft + 17})
    for length in lengths:
        y = np.linspace(-0.5, 0.5, length, dtype=np.float32)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                reference = librosa.stft(y, n_fft=n_fft, hop_length=hop_length, center=center)
        except librosa.ParameterError:
            # Too short for one frame (always without centring, and with an odd n_fft even with it).
            with pytest.raises(kernels.ParameterError, match="shorter than n_fft"):
                kernels.stft(y, n_fft=n_fft, hop_length=hop_length, center=center)
            continue
        ours = kernels.stft(y, n_fft=n_fft, hop_length=hop_length, center=center)
        assert ours.shape == reference.shape, f"length {length}"
        assert ours.shape[-1] == kernels.frame_count(length, n_fft=n_fft, hop_length=hop_length, center=center)
        assert_spectrum_close(ours, reference)


def test_empty_and_silent_input_give_zeros_not_nan():
    for y in (np.zeros(0, dtype=np.float32), np.zeros(10000, dtype=np.float32)):
        ours = kernels.stft(y, n_fft=1024, hop_length=256)
        assert np.isfinite(ours).all() and not ours.any()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            assert ours.shape == librosa.stft(y, n_fft=1024, hop_length=256).shape


@pytest.mark.parametrize(
    "y, kwargs, match",
    [
        (np.zeros(4096, np.float32), dict(n_fft=0), "n_fft"),
        (np.zeros(4096, np.float32), dict(n_fft=-2048), "n_fft"),
        (np.zeros(4096, np.float32), dict(n_fft=2048.0), "n_fft"),
        (np.zeros(4096, np.float32), dict(hop_length=0), "hop_length"),
        (np.zeros(4096, np.float32), dict(hop_length=1.5), "hop_length"),
        (np.zeros(4096, np.float32), dict(n_fft=512, win_length=1024), "win_length"),
        (np.zeros(4096, np.float32), dict(window="no-such-window"), "window"),
        (np.zeros(4096, np.float32), dict(n_fft=512, window=np.ones(100)), "window"),
        (np.zeros(4096, np.float32), dict(pad_mode="wrap"), "pad_mode"),
        (np.zeros(4096, np.int16), {}, "floating point"),
        (np.array([0.0, np.nan, 0.0] * 1000), {}, "non-finite"),
        (np.array([0.0, np.inf] * 2000, dtype=np.float32), {}, "non-finite"),
        (np.zeros(100, np.float32), dict(n_fft=2048, center=False), "shorter than n_fft"),
        (np.float32(1.0), {}, "numpy.ndarray"),
        (np.zeros((), np.float32), {}, "at least one dimension"),
        ([0.0] * 4096, {}, "numpy.ndarray"),
    ],
)
def test_stft_rejects_bad_input_with_named_argument(y, kwargs, match):
    with pytest.raises(kernels.ParameterError, match=match):
        kernels.stft(y, **kwargs)


def test_parameter_error_is_a_value_error():
    assert issubclass(kernels.ParameterError, ValueError)


@pytest.mark.parametrize("name", ["hann", "hamming", "blackman", "boxcar", "rectangular"])
def test_builtin_windows_are_bit_identical_to_scipy(name):
    scipy_signal = pytest.importorskip("scipy.signal")
    for n in (1, 2, 5, 400, 2047, 2048):
        reference = scipy_signal.get_window({"rectangular": "boxcar"}.get(name, name), n, fftbins=True)
        np.testing.assert_array_equal(kernels.get_window(name, n), reference)
