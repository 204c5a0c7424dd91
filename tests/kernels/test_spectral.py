"""kernels/spectral.py (melspectrogram, power_to_db, log_melspectrogram) against librosa and tests/naive.py."""

from __future__ import annotations

import numpy as np
import pytest

from mgc import kernels
from tests import naive
from tests.conftest import make_tone_mix

from .conftest import assert_db_close, assert_spectrum_close

# Each row varies several arguments at once over the grid.
GRID = [
    dict(sr=22050, n_fft=2048, hop_length=512, n_mels=128),
    dict(sr=22050, n_fft=2048, hop_length=700, n_mels=128, htk=True, power=1.0),
    dict(sr=22050, n_fft=256, hop_length=32, n_mels=40, norm=None, window="hamming"),
    dict(sr=16000, n_fft=512, hop_length=160, win_length=400, n_mels=64, fmin=100.0, fmax=7000.0, center=False),
    dict(sr=22050, n_fft=1024, hop_length=256, n_mels=96, fmin=50.0, fmax=10000.0, pad_mode="reflect", htk=True),
    dict(sr=44100, n_fft=4096, hop_length=1024, win_length=3000, n_mels=128, norm=None, power=1.0, window="blackman"),
    dict(sr=22050, n_fft=4096, hop_length=2000, n_mels=64, pad_mode="reflect", center=True, fmin=300.0),
    dict(sr=8000, n_fft=400, hop_length=80, n_mels=26, fmax=3800.0, window="rectangular", center=False),
]


def _ids(kwargs):
    return ",".join(f"{k}={v}" for k, v in kwargs.items())


@pytest.mark.parametrize("kwargs", GRID, ids=_ids)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_melspectrogram_equals_librosa(kwargs, dtype, librosa):
    y = make_tone_mix(sr=kwargs["sr"], seconds=1.5, seed=kwargs["n_fft"], dtype=dtype)
    assert_spectrum_close(kernels.melspectrogram(y, **kwargs), librosa.feature.melspectrogram(y=y, **kwargs))


@pytest.mark.parametrize("kwargs", GRID, ids=_ids)
def test_log_melspectrogram_equals_librosa_power_to_db(kwargs, librosa):
    y = make_tone_mix(sr=kwargs["sr"], seconds=1.5, seed=kwargs["hop_length"])
    reference = librosa.power_to_db(librosa.feature.melspectrogram(y=y, **kwargs), ref=1.0, amin=1e-10, top_db=80.0)
    assert_db_close(kernels.log_melspectrogram(y, ref=1.0, amin=1e-10, top_db=80.0, **kwargs), reference)


@pytest.mark.parametrize(
    "ref, amin, top_db",
    [(1.0, 1e-10, 80.0), (np.max, 1e-10, 80.0), (np.max, 1e-5, 60.0), (2.5, 1e-8, None), (np.median, 1e-10, 120.0)],
)
def test_power_to_db_equals_librosa(ref, amin, top_db, rng, librosa):
    S = np.abs(rng.standard_normal((3, 64, 50)).astype(np.float32)) ** 2 * 1e3
    S[0, :5] = 0.0  # exercises amin
    reference = librosa.power_to_db(S, ref=ref, amin=amin, top_db=top_db)
    ours = kernels.power_to_db(S, ref=ref, amin=amin, top_db=top_db)
    assert_db_close(ours, reference)
    assert ours is not S and S[0, 0, 0] == 0.0  # the input is not modified


def test_top_db_is_relative_to_the_peak_of_the_whole_stack(rng):
    loud = make_tone_mix(seconds=1.0, seed=1)
    stacked = np.stack([loud, loud * 1e-3])
    ours = kernels.log_melspectrogram(stacked, sr=22050, top_db=40.0)
    # The quiet clip (60 dB down) sits entirely on the floor set by the loud one.
    np.testing.assert_allclose(ours[1], ours.max() - 40.0)


def test_top_db_of_the_whole_stack_equals_librosa(rng, librosa):
    loud = make_tone_mix(seconds=1.0, seed=1)
    stacked = np.stack([loud, loud * 1e-3])
    ours = kernels.log_melspectrogram(stacked, sr=22050, top_db=40.0)
    reference = librosa.power_to_db(librosa.feature.melspectrogram(y=stacked, sr=22050), top_db=40.0)
    assert_db_close(ours, reference)


def test_stacked_batch_equals_each_clip_and_parallel_equals_serial(rng):
    batch = np.stack([make_tone_mix(seconds=1.0, seed=s) for s in range(4)])
    ours = kernels.melspectrogram(batch, sr=22050)
    for i in range(4):
        np.testing.assert_array_equal(ours[i], kernels.melspectrogram(batch[i], sr=22050))
    np.testing.assert_array_equal(kernels.melspectrogram(batch, sr=22050, parallel=True), ours)


def test_stacked_batch_equals_librosa(rng, librosa):
    batch = np.stack([make_tone_mix(seconds=1.0, seed=s) for s in range(4)])
    assert_spectrum_close(kernels.melspectrogram(batch, sr=22050), librosa.feature.melspectrogram(y=batch, sr=22050))


def test_spectrogram_is_magnitude_of_stft(librosa):
    y = make_tone_mix(seconds=1.0)
    for power in (1.0, 2.0, 1.5):
        reference = np.abs(librosa.stft(y, n_fft=1024, hop_length=256)) ** power
        assert_spectrum_close(kernels.spectrogram(y, n_fft=1024, hop_length=256, power=power), reference)


def test_silence_and_empty_input_sit_at_amin():
    for y in (np.zeros(22050, np.float32), np.zeros(0, np.float32)):
        ours = kernels.log_melspectrogram(y, sr=22050)
        assert ours.shape == (128, 1 + y.shape[0] // 512)
        assert np.isfinite(ours).all()
        np.testing.assert_allclose(ours, -100.0, atol=1e-4)  # 10 log10(amin)


def test_silence_and_empty_input_follow_librosa(librosa):
    for y in (np.zeros(22050, np.float32), np.zeros(0, np.float32)):
        ours = kernels.log_melspectrogram(y, sr=22050)
        reference = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=22050), top_db=80.0)
        assert np.isfinite(ours).all()
        assert_db_close(ours, reference)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda y: kernels.melspectrogram(y, sr=22050, fmax=20000.0), "fmax"),
        (lambda y: kernels.melspectrogram(y, sr=22050, fmin=8000.0, fmax=4000.0), "fmin"),
        (lambda y: kernels.melspectrogram(y, sr=22050, n_mels=0), "n_mels"),
        (lambda y: kernels.melspectrogram(y, sr=22050, power=0.0), "power"),
        (lambda y: kernels.spectrogram(y, power=-1.0), "power"),
        (lambda y: kernels.melspectrogram(y, sr=22050, norm=[2]), "norm"),
        (lambda y: kernels.melspectrogram(y, sr=22050, norm="l2"), "norm"),
        (lambda y: kernels.melspectrogram(y, sr=22050, window="triangle-ish"), "window"),
        (lambda y: kernels.log_melspectrogram(y, sr=22050, amin=0.0), "amin"),
        (lambda y: kernels.log_melspectrogram(y, sr=22050, top_db=-1.0), "top_db"),
        (lambda y: kernels.power_to_db(np.ones((2, 2)) * 1j), "real"),
        (lambda y: kernels.melspectrogram(y.astype(np.int32), sr=22050), "floating point"),
    ],
)
def test_bad_arguments_raise_parameter_error(call, match):
    with pytest.raises(kernels.ParameterError, match=match):
        call(make_tone_mix(seconds=0.5))


# Long signals are read in place (kernels/stft.py: head, body and tail segments; a block of
# frames may span two): every split of frames must give librosa's numbers.
@pytest.mark.parametrize("n_fft, hop_length", [(2048, 512), (1023, 300), (512, 700), (256, 64)])
@pytest.mark.parametrize("extra", [0, 1, 777])
def test_signals_read_in_place_equal_librosa_at_every_split(n_fft, hop_length, extra, librosa):
    from mgc.kernels.stft import IN_PLACE_MIN_FFTS

    n = IN_PLACE_MIN_FFTS * n_fft + 40 * hop_length + extra
    y = np.stack([make_tone_mix(seconds=n / 22050 + 0.01, seed=seed)[:n] for seed in range(2)])
    kwargs = dict(n_fft=n_fft, hop_length=hop_length, window="hann", center=True, pad_mode="constant")
    for parallel in (False, True):
        ours = kernels.melspectrogram(y, sr=22050, n_mels=40, parallel=parallel, **kwargs)
        assert_spectrum_close(ours, librosa.feature.melspectrogram(y=y, sr=22050, n_mels=40, **kwargs))
        power = kernels.spectrogram(y, parallel=parallel, **kwargs)
        assert_spectrum_close(power, np.abs(librosa.stft(y, **kwargs)) ** 2)


# The Hann/Hamming/boxcar path reads finiteness off each frame's DC bin (kernels/_core.py)
# instead of scanning y: a bad sample anywhere must still be refused, whichever frame holds it.
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(
    "where, kwargs",
    [
        (0, {}),  # in the head frames (centre padding)
        (11025, {}),  # in the frames read in place
        (-1, {}),  # the last sample, in the tail frames
        (-1, dict(center=False)),  # past the last frame: read by no FFT
        (700, dict(center=False, n_fft=256, hop_length=1000)),  # between frames (hop > n_fft)
        (5000, dict(pad_mode="reflect")),
        (5000, dict(window="hamming", n_fft=512, hop_length=128)),
    ],
)
@pytest.mark.parametrize("function", ["melspectrogram", "spectrogram", "log_melspectrogram", "mfcc"])
def test_a_non_finite_sample_anywhere_is_refused(function, where, kwargs, bad):
    y = make_tone_mix(seconds=1.0, dtype=np.float32)
    y[where] = bad
    with pytest.raises(kernels.ParameterError, match="non-finite"):
        if function == "spectrogram":
            kernels.spectrogram(y, **kwargs)
        elif function == "mfcc":
            kernels.mfcc(y=y, sr=22050, **kwargs)
        else:
            getattr(kernels, function)(y, sr=22050, **kwargs)


def test_a_non_finite_sample_in_one_stacked_signal_is_refused():
    y = np.stack([make_tone_mix(seconds=1.0, seed=seed) for seed in range(3)])
    y[2, 4000] = np.nan
    for parallel in (False, True):
        with pytest.raises(kernels.ParameterError, match="non-finite"):
            kernels.melspectrogram(y, sr=22050, parallel=parallel)


# The float32, power-2 mel spectrogram runs in explicit vectors (kernels/_core.py, kernels/_simd.py): a
# chunk of frames walks up the bins, writes bands into blocks, and the blocks are unstaged row by row.
# Every frame count around the chunk (LANES) and block sizes, short and long signals, stacks and both
# drivers must give the scalar kernel's numbers; so must empty bands and the other tapped windows.
@pytest.mark.parametrize(
    "n_fft, hop_length, n_mels, window",
    [(512, 128, 40, "hann"), (256, 64, 128, "hamming"), (1024, 256, 64, "boxcar")],
)
@pytest.mark.parametrize("n_frames", [1, 2, 7, 31, 32, 33, 63, 64, 65, 129, 300])
def test_vector_kernel_equals_the_scalar_kernel(n_fft, hop_length, n_mels, window, n_frames):
    import importlib

    from mgc.kernels import _core

    stft_module = importlib.import_module("mgc.kernels.stft")
    spectral = importlib.import_module("mgc.kernels.spectral")
    n = (n_frames - 1) * hop_length + 1
    y = np.stack([make_tone_mix(seconds=n / 22050 + 0.01, seed=seed)[:n] for seed in range(3)])
    kwargs = dict(n_fft=n_fft, hop_length=hop_length, window=window, center=True, pad_mode="constant")
    tapped = stft_module.tapped_setup(y, win_length=None, **kwargs)
    _, offsets, bands, weights = spectral._bands(22050, n_fft, n_mels, 0.0, None, False, "slaney", "float32")
    args = stft_module.tapped_args(tapped, 2.0)
    scalar = stft_module.run_tapped(tapped, _core.mel_taps_batch, n_mels, *args, offsets, bands, weights)
    for parallel in (False, True):
        ours = kernels.melspectrogram(y, sr=22050, n_mels=n_mels, parallel=parallel, **kwargs)
        assert ours.shape == scalar.shape == (3, n_mels, n_frames)
        assert_spectrum_close(ours, scalar, rtol=2e-6)
        if n_mels == 128:  # bands no bin feeds are zeros in both
            assert np.array_equal(ours.max(axis=(0, 2)) == 0, scalar.max(axis=(0, 2)) == 0)
            assert (ours.max(axis=(0, 2)) == 0).any()
        # It is the vector kernel's output: its staging blocks, put side by side, bit for bit.
        staged = spectral._mel_staged(tapped, 2.0, (22050, n_mels, 0.0, None, False, "slaney"), -np.inf, parallel)
        assert staged is not None
        side_by_side = staged.transpose(0, 2, 1, 3).reshape(3, n_mels, -1)[:, :, :n_frames]
        np.testing.assert_array_equal(ours, side_by_side)


@pytest.mark.parametrize(
    "db", [dict(), dict(top_db=None), dict(ref=3.0, amin=1e-4, top_db=30.0), dict(amin=1e-3, top_db=0.0)]
)
def test_log_mel_in_blocks_equals_power_to_db_of_the_mel_spectrogram(db):
    # The vector path takes the dB over the staging blocks before unstaging them (kernels/spectral.py):
    # the same numbers, bit for bit, as the dB of the finished mel spectrogram.
    y = np.stack([make_tone_mix(seconds=3.0, seed=seed, dtype=np.float32) for seed in range(2)])
    y[1, 20000:40000] = 0.0  # silence: values at amin and at the top_db floor
    ours = kernels.log_melspectrogram(y, sr=22050, **db)
    expected = kernels.power_to_db(kernels.melspectrogram(y, sr=22050), **db)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, expected)


def test_vector_kernel_numbers_do_not_depend_on_the_vector_width(tmp_path):
    # _simd.LANES is 32 floats on this AVX-512 machine; compiled for a generic x86-64 (or any CPU
    # without AVX) it is 4. Every lane does the same IEEE operations in the same order, so the
    # numbers must be equal bit for bit.
    import os
    import subprocess
    import sys

    from mgc.kernels import _simd

    probe = (
        "import sys, numpy as np\n"
        "from mgc import kernels\n"
        "from mgc.kernels import _simd\n"
        "y = (np.random.default_rng(3).standard_normal((2, 40000)) * 0.1).astype(np.float32)\n"
        "np.save(sys.argv[1], kernels.log_melspectrogram(y, sr=22050, n_fft=1024, hop_length=256, n_mels=64))\n"
        "print(_simd.LANES)\n"
    )
    results = {}
    for name, cpu in (("here", None), ("generic", "generic")):
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
        if cpu:  # its own cache: the suite's stays as this machine's
            env["NUMBA_CPU_NAME"] = cpu
            env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
        out = tmp_path / f"{name}.npy"
        run = subprocess.run([sys.executable, "-c", probe, str(out)], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        results[name] = (int(run.stdout.split()[-1]), np.load(out))
    assert results["generic"][0] == 4
    assert results["here"][0] == _simd.LANES
    np.testing.assert_array_equal(results["here"][1], results["generic"][1])


@pytest.mark.parametrize("window", ["hann", "blackman"])
def test_finite_samples_that_overflow_give_infinities_not_an_error(window):
    # Finite, but the frame sums and powers overflow float32: both window paths give inf
    # (the engine stores nothing of such a track: kind non_finite_features).
    y = np.full(8192, np.finfo(np.float32).max / 4, dtype=np.float32)
    y[::2] *= -1
    S = kernels.melspectrogram(y, sr=22050, window=window)
    assert not np.isfinite(S).all()


# --- Without librosa: tests/naive.py's brute-force references. ---

NAIVE_GRID = [
    dict(sr=16000, n_fft=512, hop_length=160, n_mels=40),
    dict(
        sr=16000,
        n_fft=400,
        hop_length=100,
        win_length=300,
        n_mels=26,
        htk=True,
        center=False,
        power=1.0,
        norm=None,
        fmin=50.0,
        fmax=7000.0,
    ),
    dict(sr=16000, n_fft=1024, hop_length=256, n_mels=64, pad_mode="reflect", power=1.5),
    dict(sr=8000, n_fft=255, hop_length=64, n_mels=20, pad_mode="edge", fmax=3500.0),
]
#: Spectra relative to their peak. float64 is not 1e-12 because the filterbank is float32, as librosa's.
NAIVE_MEL_RTOL = {np.float32: 2e-6, np.float64: 1e-6}
#: dB absolute: float32 log10 near 100 dB, float64 with float32 filter weights.
NAIVE_DB_ATOL = {np.float32: 2e-4, np.float64: 2e-6}


@pytest.mark.parametrize("kwargs", NAIVE_GRID, ids=_ids)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_melspectrogram_and_log_mel_equal_naive(kwargs, dtype):
    y = make_tone_mix(sr=kwargs["sr"], seconds=0.5, seed=kwargs["n_fft"], dtype=dtype)
    reference = naive.melspectrogram(y, **kwargs)
    ours = kernels.melspectrogram(y, **kwargs)
    assert ours.dtype == dtype
    assert_spectrum_close(ours, reference.astype(dtype), rtol=NAIVE_MEL_RTOL[dtype])
    for ref, amin, top_db in [(1.0, 1e-10, 80.0), (np.max, 1e-5, 60.0), (2.5, 1e-8, None)]:
        log_mel = kernels.log_melspectrogram(y, ref=ref, amin=amin, top_db=top_db, **kwargs)
        expected = naive.power_to_db(reference, ref=ref, amin=amin, top_db=top_db).astype(dtype)
        assert_db_close(log_mel, expected, atol=NAIVE_DB_ATOL[dtype])


@pytest.mark.parametrize(
    "ref, amin, top_db",
    [
        (1.0, 1e-10, 80.0),
        (np.max, 1e-10, 80.0),
        (np.max, 1e-5, 60.0),
        (2.5, 1e-8, None),
        (np.median, 1e-10, 120.0),
        (-4.0, 1e-10, 0.0),
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_power_to_db_equals_naive(ref, amin, top_db, dtype, rng):
    S = (np.abs(rng.standard_normal((3, 64, 50))) ** 2 * 1e3).astype(dtype)
    S[0, :5] = 0.0  # exercises amin
    ours = kernels.power_to_db(S, ref=ref, amin=amin, top_db=top_db)
    assert ours.dtype == dtype and ours is not S and S[0, 0, 0] == 0.0
    reference = naive.power_to_db(S, ref=ref, amin=amin, top_db=top_db)
    assert_db_close(ours, reference.astype(dtype), atol=5e-5 if dtype == np.float32 else 1e-10)
    if top_db is not None:
        assert ours.max() - ours.min() <= top_db + 1e-4


def test_power_to_db_known_values():
    S = np.array([[1.0, 10.0, 100.0, 1e-12, 0.0]])
    np.testing.assert_allclose(kernels.power_to_db(S, top_db=None), [[0.0, 10.0, 20.0, -100.0, -100.0]], atol=1e-12)
    np.testing.assert_allclose(
        kernels.power_to_db(S, ref=np.max, top_db=30.0), [[-20.0, -10.0, 0.0, -30.0, -30.0]], atol=1e-12
    )
    assert kernels.power_to_db(np.array([[2.0]], np.float32)).dtype == np.float32
    assert kernels.power_to_db(np.array([[2]], np.int64)).dtype == np.float64
