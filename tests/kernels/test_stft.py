"""kernels/stft.py against librosa.stft, the brute-force STFT of tests/naive.py, and Parseval's theorem."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mgc import kernels
from tests import naive
from tests.conftest import make_tone_mix

from .conftest import assert_spectrum_close

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
def test_stft_equals_librosa(n_fft, hop_length, win_length, window, center, pad_mode, dtype, librosa):
    y = make_tone_mix(seconds=1.3, seed=n_fft + hop_length, dtype=dtype)
    kwargs = dict(
        n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window, center=center, pad_mode=pad_mode
    )
    assert_spectrum_close(kernels.stft(y, **kwargs), librosa.stft(y, **kwargs))


def test_stft_defaults_follow_librosa(librosa):
    y = make_tone_mix(seconds=1.0)
    ours = kernels.stft(y)
    reference = librosa.stft(
        y, n_fft=2048, hop_length=512, win_length=2048, window="hann", center=True, pad_mode="constant"
    )
    assert_spectrum_close(ours, reference)


def test_stft_window_array_and_callable(librosa):
    y = make_tone_mix(seconds=0.5)
    window = np.kaiser(400, 8.0)
    kwargs = dict(n_fft=512, hop_length=128, win_length=400)
    assert_spectrum_close(kernels.stft(y, window=window, **kwargs), librosa.stft(y, window=window, **kwargs))
    assert_spectrum_close(kernels.stft(y, window=np.hanning, **kwargs), librosa.stft(y, window=np.hanning, **kwargs))


def test_stft_stacked_input_equals_each_signal(rng):
    stacked = rng.standard_normal((2, 3, 5000)).astype(np.float32)
    kwargs = dict(n_fft=512, hop_length=160)
    ours = kernels.stft(stacked, **kwargs)
    assert ours.shape == (2, 3, 257, 1 + 5000 // 160)
    np.testing.assert_array_equal(ours[1, 2], kernels.stft(stacked[1, 2], **kwargs))
    np.testing.assert_array_equal(kernels.stft(stacked, parallel=True, **kwargs), ours)


def test_stft_stacked_input_equals_librosa(rng, librosa):
    stacked = rng.standard_normal((2, 3, 5000)).astype(np.float32)
    kwargs = dict(n_fft=512, hop_length=160)
    assert_spectrum_close(kernels.stft(stacked, **kwargs), librosa.stft(stacked, **kwargs))


def test_block_size_does_not_change_results(rng):
    y = rng.standard_normal(30000).astype(np.float32)
    reference = kernels.stft(y, n_fft=1024, hop_length=256)
    for block_frames in (1, 7, 64, 1000):
        np.testing.assert_array_equal(kernels.stft(y, n_fft=1024, hop_length=256, block_frames=block_frames), reference)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("n_fft, hop_length", [(2048, 512), (512, 100), (255, 64)])
def test_frame_counts_match_librosa_for_every_length(n_fft, hop_length, center, librosa):
    lengths = sorted(
        {
            0,
            1,
            2,
            hop_length - 1,
            hop_length,
            hop_length + 1,
            n_fft // 2,
            n_fft - 1,
            n_fft,
            n_fft + 1,
            n_fft + hop_length - 1,
            n_fft + hop_length,
            3 * n_fft + 17,
        }
    )
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
        assert ours.shape == (513, 1 + y.shape[0] // 256)


def test_empty_and_silent_input_shapes_follow_librosa(librosa):
    for y in (np.zeros(0, dtype=np.float32), np.zeros(10000, dtype=np.float32)):
        ours = kernels.stft(y, n_fft=1024, hop_length=256)
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


# --- Without librosa: the brute-force STFT of tests/naive.py, Parseval's theorem, frame counts. ---

#: Worst error relative to the spectrum's peak: one float32 FFT's rounding, or float64's.
NAIVE_RTOL = {np.float32: 2e-6, np.float64: 1e-12}


@pytest.mark.parametrize("pad_mode", ["constant", "reflect", "edge", "symmetric"])
@pytest.mark.parametrize(
    "n_fft, hop_length, win_length, center",
    [(512, 128, None, True), (256, 100, 200, False), (255, 64, None, True), (1000, 333, 700, True), (64, 16, 33, True)],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stft_equals_naive(n_fft, hop_length, win_length, center, pad_mode, dtype):
    y = make_tone_mix(sr=8000, seconds=0.4, seed=n_fft, dtype=dtype)
    kwargs = dict(n_fft=n_fft, hop_length=hop_length, win_length=win_length, center=center, pad_mode=pad_mode)
    ours = kernels.stft(y, window="hann", **kwargs)
    assert ours.dtype == (np.complex64 if dtype == np.float32 else np.complex128)
    assert_spectrum_close(ours, naive.stft(y, **kwargs), rtol=NAIVE_RTOL[dtype])


def test_stft_short_signal_reflect_padding_equals_naive(rng):
    # Shorter than the padding: numpy's reflection (and librosa's) wraps around more than once.
    y = rng.standard_normal(7)
    for pad_mode in ("reflect", "symmetric", "edge"):
        ours = kernels.stft(y, n_fft=64, hop_length=4, pad_mode=pad_mode)
        assert_spectrum_close(ours, naive.stft(y, n_fft=64, hop_length=4, pad_mode=pad_mode), rtol=1e-12)


def test_stft_window_array_and_stacked_input_equal_naive(rng):
    y = rng.standard_normal((2, 3000))
    window = np.kaiser(300, 8.0)
    padded_window = np.pad(window, (106, 106))  # centred in n_fft = 512, as get_window does
    ours = kernels.stft(y, n_fft=512, hop_length=128, win_length=300, window=window)
    assert ours.shape == (2, 257, 1 + 3000 // 128)
    assert_spectrum_close(ours, naive.stft(y, n_fft=512, hop_length=128, window=padded_window), rtol=1e-12)


@pytest.mark.parametrize("win_length, n_fft", [(8, 8), (255, 255), (2048, 2048), (400, 512), (301, 512)])
def test_hann_window_is_periodic_and_centred(win_length, n_fft):
    ours = kernels.get_window("hann", win_length, n_fft=n_fft)
    np.testing.assert_allclose(ours, naive.hann(win_length, n_fft), rtol=0, atol=1e-15)
    # Periodic, not symmetric: w[0] = 0 and w[k] = w[N - k], the period's peak at N / 2.
    left = (n_fft - win_length) // 2
    inner = ours[left : left + win_length]
    assert not ours[:left].any() and not ours[left + win_length :].any()
    assert inner[0] == 0.0 and np.argmax(inner) == win_length // 2
    np.testing.assert_allclose(inner[1:], inner[1:][::-1], atol=1e-15)


@pytest.mark.parametrize("n_fft", [256, 255, 1024])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parseval_energy_of_each_frame(n_fft, dtype, rng):
    """sum |x_w|^2 == (|X_0|^2 + 2 sum_{0<k<N/2} |X_k|^2 + |X_{N/2}|^2) / N, the last term only for even N."""
    hop_length = n_fft // 3
    y = rng.standard_normal(4 * n_fft).astype(dtype)
    spectrum = kernels.stft(y, n_fft=n_fft, hop_length=hop_length, center=False)
    power = kernels.spectrogram(y, n_fft=n_fft, hop_length=hop_length, center=False, power=2.0)
    window = kernels.get_window("hann", n_fft)
    n_frames = spectrum.shape[-1]
    frames = np.stack([y[t * hop_length : t * hop_length + n_fft].astype(np.float64) for t in range(n_frames)], axis=-1)
    time_energy = np.sum((frames * window[:, None]) ** 2, axis=0)
    # Each bin other than DC (and Nyquist for even N) stands for itself and its mirror image.
    weights = np.full(spectrum.shape[0], 2.0)
    weights[0] = 1.0
    if n_fft % 2 == 0:
        weights[-1] = 1.0
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    bin_energy = np.abs(spectrum.astype(np.complex128)) ** 2
    np.testing.assert_allclose(weights @ bin_energy / n_fft, time_energy, rtol=rtol)
    np.testing.assert_allclose(weights @ power.astype(np.float64) / n_fft, time_energy, rtol=rtol)


def _frames_expected(n: int, n_fft: int, hop_length: int, center: bool) -> int:
    if center:
        return 1 + (n + 2 * (n_fft // 2) - n_fft) // hop_length
    return 1 + (n - n_fft) // hop_length


@pytest.mark.parametrize("n_fft, hop_length", [(64, 16), (64, 64), (63, 10), (100, 33), (512, 128)])
@pytest.mark.parametrize("center", [True, False])
def test_frame_count_formula_and_stft_agree_for_every_length(n_fft, hop_length, center):
    for n in range(0, 3 * n_fft + 2 * hop_length + 3, 1 if n_fft <= 100 else 7):
        padded = n + 2 * (n_fft // 2) if center else n
        y = np.zeros(n, np.float32)
        if padded < n_fft:
            # No whole frame: without centring below n_fft, and for an odd n_fft on an empty signal.
            with pytest.raises(kernels.ParameterError, match="shorter than n_fft"):
                kernels.frame_count(n, n_fft=n_fft, hop_length=hop_length, center=center)
            with pytest.raises(kernels.ParameterError, match="shorter than n_fft"):
                kernels.stft(y, n_fft=n_fft, hop_length=hop_length, center=center)
            continue
        expected = _frames_expected(n, n_fft, hop_length, center)
        assert kernels.frame_count(n, n_fft=n_fft, hop_length=hop_length, center=center) == expected, n
        assert kernels.stft(y, n_fft=n_fft, hop_length=hop_length, center=center).shape == (1 + n_fft // 2, expected)
        assert kernels.spectrogram(y, n_fft=n_fft, hop_length=hop_length, center=center).shape[-1] == expected


@pytest.mark.parametrize("n_fft, hop_length", [(2048, 512), (512, 160), (1024, 1024), (400, 100)])
def test_feature_spec_n_frames_agrees_with_frame_count(n_fft, hop_length):
    from mgc.engine import FeatureSpec

    spec = FeatureSpec(n_fft=n_fft, hop_length=hop_length, n_mels=40)
    lengths = sorted(
        {0, 1, hop_length - 1, hop_length, n_fft - 1, n_fft, n_fft + 1, 22050, 22050 * 30 + 7}
        | set(range(5 * hop_length, 5 * hop_length + 2 * hop_length + 1, 17))
    )
    for n in lengths:
        expected = _frames_expected(n, n_fft, hop_length, True)
        assert (
            spec.n_frames(n) == expected == kernels.frame_count(n, n_fft=n_fft, hop_length=hop_length, center=True)
        ), n
    for n in (0, n_fft - 1, 3 * n_fft + 5):  # and what the engine stores is what stft returns
        assert kernels.stft(np.zeros(n, np.float32), n_fft=n_fft, hop_length=hop_length).shape[-1] == spec.n_frames(n)
