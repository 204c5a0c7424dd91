"""Parity with librosa on the real recordings in ../shared/audio."""

from __future__ import annotations

import numpy as np
import soundfile

from mgc import kernels

from .conftest import MFCC_ATOL, assert_db_close, assert_spectrum_close


def _clips(folder):
    names = sorted(p for p in folder.glob("*.ogg") if not p.name.endswith(".hq.ogg"))
    assert names, f"no recordings in {folder}"
    return names


def test_real_recordings_match_librosa(shared_audio, librosa):
    for path in _clips(shared_audio):
        y, sr = soundfile.read(path, dtype="float32", frames=22050 * 20)
        assert sr == 22050 and y.ndim == 1
        kwargs = dict(sr=sr, n_fft=2048, hop_length=512, n_mels=128)
        mel = librosa.feature.melspectrogram(y=y, **kwargs)
        assert_spectrum_close(kernels.melspectrogram(y, **kwargs), mel)
        assert_db_close(kernels.log_melspectrogram(y, **kwargs), librosa.power_to_db(mel, top_db=80.0))
        np.testing.assert_allclose(
            kernels.mfcc(y=y, n_mfcc=20, **kwargs), librosa.feature.mfcc(y=y, n_mfcc=20, **kwargs), atol=MFCC_ATOL
        )


def test_real_stereo_recording_stacked_channels(shared_audio, librosa):
    path = next(shared_audio.glob("*.hq.ogg"))
    y, sr = soundfile.read(path, dtype="float32", frames=44100 * 5, always_2d=True)
    channels = np.ascontiguousarray(y.T)
    kwargs = dict(sr=sr, n_fft=4096, hop_length=1024, n_mels=128)
    assert_spectrum_close(
        kernels.melspectrogram(channels, **kwargs), librosa.feature.melspectrogram(y=channels, **kwargs)
    )
