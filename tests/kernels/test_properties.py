"""Property tests: random signals, lengths and sizes against librosa."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mgc import kernels

from .conftest import assert_db_close, assert_spectrum_close

sizes = st.sampled_from([(256, 64), (512, 100), (1024, 256), (2048, 512), (400, 160)])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    length=st.integers(0, 12000),
    size=sizes,
    center=st.booleans(),
    scale=st.sampled_from([1e-4, 1.0, 30.0]),
)
def test_random_signals_log_mel(librosa, seed, length, size, center, scale):
    n_fft, hop_length = size
    if not center:
        length = max(length, n_fft)
    y = (np.random.default_rng(seed).standard_normal(length) * scale).astype(np.float32)
    kwargs = dict(sr=22050, n_fft=n_fft, hop_length=hop_length, n_mels=40, center=center)
    reference = librosa.feature.melspectrogram(y=y, **kwargs)
    assert_spectrum_close(kernels.melspectrogram(y, **kwargs), reference)
    assert_db_close(kernels.log_melspectrogram(y, **kwargs), librosa.power_to_db(reference, top_db=80.0))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(1, 6000), channels=st.integers(1, 3))
def test_random_stacked_stft(librosa, seed, length, channels):
    y = np.random.default_rng(seed).uniform(-1, 1, (channels, length))
    assert_spectrum_close(kernels.stft(y, n_fft=512, hop_length=128), librosa.stft(y, n_fft=512, hop_length=128))
