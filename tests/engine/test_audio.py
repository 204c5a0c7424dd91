from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

import mgc.engine.audio as engine_audio
from mgc.engine import AudioError, FeatureSpec, FeatureStore, compute_features, extract
from mgc.engine.audio import AudioStream
from mgc.engine.features import compute_track

from .conftest import EXPECTED_KIND, make_bad_files, write_audio


def _decode(path, sr=22050, **kwargs) -> np.ndarray:
    stream = AudioStream(path, sr, **kwargs)
    return np.concatenate(list(stream.blocks()))


@pytest.mark.parametrize(
    "ext, subtype",
    [("wav", "PCM_16"), ("wav", "FLOAT"), ("flac", None), ("ogg", None), ("mp3", None), ("aiff", None), ("au", None)],
)
def test_any_format_and_channel_count_decodes_to_mono_at_the_spec_rate(tmp_path: Path, ext, subtype):
    path = write_audio(tmp_path / f"x.{ext}", 2.0, sr=44100, channels=2, subtype=subtype)
    raw, _ = sf.read(path, dtype="float32", always_2d=True)
    expected = soxr.resample(raw.mean(axis=1, dtype=np.float32), 44100, 22050, quality="soxr_hq")
    y = _decode(path, block_frames=10_000)  # several blocks: streaming equals one-shot
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, expected)


def test_same_rate_is_not_resampled_and_six_channels_mix_by_mean(tmp_path: Path):
    path = write_audio(tmp_path / "x.wav", 1.0, sr=22050, channels=6, subtype="FLOAT")
    raw, _ = sf.read(path, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(_decode(path), raw.mean(axis=1, dtype=np.float32))


def test_matches_librosa_load_with_offset_and_duration(tmp_path: Path):
    librosa = pytest.importorskip("librosa")
    path = write_audio(tmp_path / "x.flac", 6.0, sr=44100, channels=2)
    for offset, duration in [(None, None), (1.5, 2.0), (4.0, None), (0.0, 10.0)]:
        expected, _ = librosa.load(
            path, sr=22050, mono=True, offset=offset or 0.0, duration=duration, dtype=np.float32, res_type="soxr_hq"
        )
        np.testing.assert_allclose(_decode(path, offset=offset, duration=duration), expected, atol=1e-6)


def test_offset_past_the_end_has_no_samples(tmp_path: Path):
    path = write_audio(tmp_path / "x.wav", 1.0)
    with pytest.raises(AudioError) as info:
        AudioStream(path, 22050, offset=5.0)
    assert info.value.kind == "no_samples"


@pytest.mark.parametrize("name", sorted(set(EXPECTED_KIND) - {"too_short"}))
def test_each_bad_file_raises_its_kind(tmp_path: Path, name: str):
    path = make_bad_files(tmp_path)[name]
    with pytest.raises(AudioError) as info:
        _decode(path)
    assert info.value.kind == EXPECTED_KIND[name]
    assert str(info.value).count(str(path)) == 1  # named once: the detail does not repeat it
    if name != "missing":  # libsndfile's guess for content it does not recognise is never passed on
        assert "does not exist" not in str(info.value)


_AS_NOBODY = """
import os, sys
from mgc.engine.audio import AudioStream
from mgc.engine.errors import AudioError
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:  # the interpreter and engine are loaded: the user nobody need not reach them
    code = 1
    try:
        os.close(read_end)
        os.setgid(65534)
        os.setuid(65534)
        try:
            AudioStream(sys.argv[1], 22050)
            kind = "opened"
        except AudioError as exc:
            kind = exc.kind
        os.write(write_end, kind.encode())
        code = 0
    finally:
        os._exit(code)
os.close(write_end)
with os.fdopen(read_end) as handle:
    print(handle.read())
os.waitpid(pid, 0)
"""


def _kind_as_nobody(path: Path) -> str:
    """Open ``path`` as the unprivileged user "nobody", in a child of a fresh interpreter.

    The fork happens in a new single-threaded interpreter (not in the test
    process, where JAX's threads make forking unsafe), then drops root.
    """
    result = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_unreadable_permissions(tmp_path: Path):
    if os.geteuid() != 0:
        path = write_audio(tmp_path / "locked.wav", 0.5)
        path.chmod(0)
        with pytest.raises(AudioError) as info:
            AudioStream(path, 22050)
        assert info.value.kind == "permission"
        return
    # root reads everything: check as the unprivileged user "nobody" in a real child process
    folder = Path(tempfile.mkdtemp(prefix="mgc-perm-"))
    try:
        folder.chmod(0o755)
        path = write_audio(folder / "locked.wav", 0.5)
        path.chmod(0)
        assert _kind_as_nobody(path) == "permission"
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


# --- Bombs: files whose header or samples would exhaust memory or store inf (issue 11) ---


def _bomb_files(folder: Path) -> dict[str, Path]:
    """One small file per bomb guard, kind -> path (valid audio, every one of them)."""
    folder.mkdir(parents=True, exist_ok=True)
    # 1 Hz: resampled to 22,050 Hz each sample becomes 22,050. Kept to 300 samples so
    # that a missing guard costs 6.6 M samples here, not the 6.6 billion of the real bomb.
    sf.write(folder / "one_hertz.wav", np.zeros(300, np.float32), 1)
    sf.write(folder / "channels.wav", np.zeros((16, 65), np.float32), 22050)
    write_audio(folder / "long.wav", 3.0, sr=8000)  # with MAX_TRACK_SECONDS patched to 2 s
    y = np.full(22050, 1e38, np.float32)
    y[::2] = -1e38
    sf.write(folder / "huge.wav", y, 22050, subtype="FLOAT")  # finite, but its power is inf
    return {
        "bad_sample_rate": folder / "one_hertz.wav",
        "too_many_channels": folder / "channels.wav",
        "too_long": folder / "long.wav",
        "non_finite_features": folder / "huge.wav",
    }


@pytest.fixture
def short_limit(monkeypatch) -> float:
    """MAX_TRACK_SECONDS lowered to 2 s, so that 'too long' needs only 3 s of audio."""
    monkeypatch.setattr(engine_audio, "MAX_TRACK_SECONDS", 2.0)
    return 2.0


@pytest.mark.parametrize("kind", ["bad_sample_rate", "too_many_channels", "too_long", "non_finite_features"])
def test_each_bomb_fails_with_its_kind(tmp_path: Path, short_limit, kind: str):
    path = _bomb_files(tmp_path)[kind]
    with pytest.raises(AudioError) as info:
        compute_track(path, FeatureSpec())
    assert info.value.kind == kind
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "sr, words",
    [(1, "sample rate 1 Hz is below 1,000 Hz"), (999, "below 1,000 Hz"), (768_001, "768,001 Hz is above 768,000 Hz")],
)
def test_sample_rate_outside_the_range_is_refused_on_open(tmp_path: Path, sr: int, words: str):
    path = tmp_path / "x.wav"
    sf.write(path, np.zeros(300, np.float32), sr)
    with pytest.raises(AudioError, match=words) as info:
        AudioStream(path, 22050)  # refused before a block is read or a resampler made
    assert info.value.kind == "bad_sample_rate"


def test_too_many_channels_names_the_count_and_the_limit(tmp_path: Path):
    path = _bomb_files(tmp_path)["too_many_channels"]
    with pytest.raises(AudioError, match="65 channels is more than 64"):
        AudioStream(path, 22050)


def test_too_long_counts_the_window_not_the_file(tmp_path: Path, short_limit):
    path = _bomb_files(tmp_path)["too_long"]
    with pytest.raises(AudioError, match=r"lasts 3\.0 s, more than the limit of 2\.0 s") as info:
        AudioStream(path, 22050)
    assert info.value.kind == "too_long"
    with pytest.raises(AudioError, match=r"the window to use lasts 2\.5 s"):
        AudioStream(path, 22050, offset=0.5)
    assert _decode(path, duration=1.5).size == int(1.5 * 22050)  # a window within the limit is fine
    assert _decode(path, offset=1.5).size == int(1.5 * 22050)


def test_a_length_the_header_does_not_state_is_not_trusted(tmp_path: Path, short_limit):
    path = write_audio(tmp_path / "x.flac", 3.0, sr=8000)
    data = bytearray(path.read_bytes())
    # STREAMINFO's 36-bit total sample count (bytes 21 to 25 of the file) set to 0, "unknown",
    # as an encoder writing to a pipe leaves it: libsndfile then reports 2**63 - 1 frames.
    data[21] &= 0xF0
    data[22:26] = bytes(4)
    path.write_bytes(bytes(data))
    stream = AudioStream(path, 22050)
    assert not stream.length_known
    with pytest.raises(AudioError, match="does not state the length") as info:
        for _ in stream.blocks():
            pass
    assert info.value.kind == "too_long"


def test_nan_samples_fail_the_feature_path(tmp_path: Path):
    y, _ = sf.read(write_audio(tmp_path / "ok.wav", 1.0), dtype="float32")
    y[5000] = np.nan
    sf.write(tmp_path / "nan.wav", y, 22050, subtype="FLOAT")
    with pytest.raises(AudioError) as info:
        compute_features(tmp_path / "nan.wav")
    assert info.value.kind == "non_finite"


@pytest.mark.parametrize("sr, channels", [(8000, 1), (22050, 2), (1000, 1), (768_000, 1), (22050, 64)])
def test_files_within_the_limits_still_work(tmp_path: Path, sr: int, channels: int):
    path = write_audio(tmp_path / "x.wav", 0.5, sr=sr, channels=channels)
    features = compute_features(path, FeatureSpec(logmel_dtype="float32"))
    assert features["logmel"].shape == (1 + int(0.5 * 22050) // 512, 128)
    assert all(np.isfinite(values).all() for values in features.values())


def test_extract_records_each_bomb_as_a_failure_and_stores_the_good_track(tmp_path: Path, short_limit):
    corpus = tmp_path / "corpus"
    bombs = _bomb_files(corpus / "noise")
    sf.write(corpus / "noise" / "nan.wav", np.full(4096, np.nan, np.float32), 22050, subtype="FLOAT")
    bombs["non_finite"] = corpus / "noise" / "nan.wav"
    write_audio(corpus / "music" / "good.wav", 1.0)
    result = extract(corpus, tmp_path / "store", workers=1)
    assert (result.stored_tracks, result.failed_tracks) == (1, len(bombs))
    store = FeatureStore(tmp_path / "store")
    assert list(store.tracks.track_id) == ["music/good.wav"]
    assert np.isfinite(store.read(0, "logmel")).all()
    kinds = dict(zip(store.failures.track_id, store.failures.kind))
    assert kinds == {f"noise/{path.name}": kind for kind, path in bombs.items()}
