from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mgc.engine import AudioError, FeatureSpec, compute_features
from mgc.engine.audio import AudioStream
from mgc.engine.features import compute_track, features_from_blocks

from .conftest import write_audio

SPEC32 = FeatureSpec(logmel_dtype="float32")


def _librosa_features(path, spec: FeatureSpec, offset=None, duration=None):
    librosa = pytest.importorskip("librosa")
    y, _ = librosa.load(
        path, sr=spec.sr, mono=True, offset=offset or 0.0, duration=duration, dtype=np.float32, res_type="soxr_hq"
    )
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=spec.sr,
        n_fft=spec.n_fft,
        hop_length=spec.hop_length,
        win_length=None,
        window="hann",
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=spec.n_mels,
        fmin=spec.fmin,
        fmax=spec.fmax,
        htk=spec.htk,
        norm=spec.norm,
    )
    logmel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=spec.top_db)
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=spec.n_mfcc, dct_type=2, norm="ortho", lifter=0)
    return logmel.T, mfcc.T


def test_equals_librosa_on_a_resampled_stereo_file(tmp_path: Path):
    path = write_audio(tmp_path / "x.flac", 4.0, sr=44100, channels=2)
    ours = compute_features(path, SPEC32)
    logmel, mfcc = _librosa_features(path, SPEC32)
    assert ours["logmel"].shape == logmel.shape and ours["logmel"].dtype == np.float32
    np.testing.assert_allclose(ours["logmel"], logmel, atol=1e-3)
    np.testing.assert_allclose(ours["mfcc"], mfcc, atol=2e-3)


def test_equals_librosa_with_other_spec_and_window(tmp_path: Path):
    spec = FeatureSpec(
        sr=16000,
        n_fft=1024,
        hop_length=256,
        n_mels=64,
        fmin=50.0,
        fmax=7000.0,
        htk=True,
        norm=None,
        top_db=60.0,
        n_mfcc=13,
        logmel_dtype="float32",
    )
    path = write_audio(tmp_path / "x.wav", 5.0, sr=22050)
    ours = compute_features(path, spec, offset=1.0, duration=3.0)
    logmel, mfcc = _librosa_features(path, spec, offset=1.0, duration=3.0)
    np.testing.assert_allclose(ours["logmel"], logmel, atol=1e-3)
    np.testing.assert_allclose(ours["mfcc"], mfcc, atol=2e-3)


def test_block_size_does_not_change_a_bit(tmp_path: Path):
    path = write_audio(tmp_path / "x.ogg", 6.0, sr=44100, channels=2)
    whole = compute_track(path, SPEC32).features
    for block_frames in (999, 4096, 50_000):
        stream = AudioStream(path, SPEC32.sr, block_frames=block_frames)
        blocks, _ = features_from_blocks(stream.blocks(), SPEC32)
        for name in whole:
            np.testing.assert_array_equal(blocks[name], whole[name])


def test_feature_selection_and_store_rounding(tmp_path: Path):
    path = write_audio(tmp_path / "x.wav", 1.0)
    only = compute_features(path, FeatureSpec(features=("mfcc",)))
    assert list(only) == ["mfcc"] and only["mfcc"].shape == (44, 20)
    rounded = compute_features(path)["logmel"]
    exact = compute_features(path, SPEC32)["logmel"]
    assert rounded.dtype == np.float32
    np.testing.assert_array_equal(rounded, exact.astype(np.float16).astype(np.float32))


def test_shorter_than_one_frame(tmp_path: Path):
    path = write_audio(tmp_path / "x.wav", 2000 / 22050)
    with pytest.raises(AudioError) as info:
        compute_features(path)
    assert info.value.kind == "too_short"
    assert compute_features(write_audio(tmp_path / "y.wav", 2048 / 22050))["logmel"].shape == (5, 128)


def test_real_recordings_match_librosa(shared_audio: Path):
    path = sorted(shared_audio.glob("*.ogg"))[0]
    ours = compute_features(path, SPEC32, offset=10.0, duration=20.0)
    logmel, mfcc = _librosa_features(path, SPEC32, offset=10.0, duration=20.0)
    np.testing.assert_allclose(ours["logmel"], logmel, atol=1e-3)
    np.testing.assert_allclose(ours["mfcc"], mfcc, atol=2e-3)


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from mgc.engine import FeatureSpec
    from mgc.engine.features import compute_track
    spec = FeatureSpec(n_mels=32, n_mfcc=13)
    compute_track(sys.argv[1], spec)  # warm-up: compile, import, allocate pools
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    features = compute_track(sys.argv[2], spec).features
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) // 1024, features["logmel"].shape[0])
    """
)


@pytest.mark.slow
def test_memory_does_not_grow_with_track_length(tmp_path: Path):
    """A 20-minute track: its float32 audio alone would be 106 MB; the worker's peak must stay far below."""
    import soundfile as sf

    short = write_audio(tmp_path / "short.wav", 5.0)
    long = tmp_path / "long.wav"
    piece = (np.sin(np.arange(22050 * 60) * 0.05) * 0.5).astype(np.float32)
    with sf.SoundFile(long, "w", samplerate=22050, channels=1, subtype="PCM_16") as handle:
        for _ in range(20):
            handle.write(piece)
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(short), str(long)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    grown_mb, n_frames = map(int, done.stdout.split())
    assert n_frames == 1 + 20 * 60 * 22050 // 512
    # features: 51,681 frames x (32 + 13) bins x 4 bytes = 9 MB, a few copies of them at the end
    assert grown_mb < 60, f"peak memory grew by {grown_mb} MB for a 20 min track"
