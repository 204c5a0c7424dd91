"""The FFmpeg (PyAV) decoder: formats libsndfile cannot read, against FFmpeg's own decode as the oracle.

Every file is encoded in the test with PyAV's encoders from a music-like signal.
The oracle of a file is PyAV's one-shot decode (``av.open(...).decode(audio=0)``),
concatenated, mixed to mono by the mean and written to a float WAV.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from mgc.cli import app
from mgc.engine import extract
from mgc.engine.corpus import load_corpus
from mgc.engine.errors import AudioError, SpecMismatchError
from mgc.engine.features import compute_features, features_from_blocks
from mgc.engine.ffmpeg import FFmpegStream, open_audio
from mgc.engine.spec import FeatureSpec
from mgc.engine.store import FeatureStore
from tests.conftest import make_tone_mix
from tests.engine.conftest import write_audio

ROOT = Path(__file__).resolve().parents[2]
SPEC = FeatureSpec(sr=22050, n_fft=1024, hop_length=256, n_mels=64, features=("logmel",), logmel_dtype="float32")

# name -> (codec, container format or None for the extension's, source rate, video codec or None)
FORMATS = {
    "aac.m4a": ("aac", None, 44100, None),
    "alac.m4a": ("alac", None, 44100, None),
    "adts.aac": ("aac", "adts", 44100, None),
    "wmav2.wma": ("wmav2", None, 44100, None),
    "opus.webm": ("libopus", None, 48000, None),
    "mp2.mp2": ("mp2", None, 44100, None),
    "video.mp4": ("aac", None, 44100, "mpeg4"),
    "video.mkv": ("aac", None, 44100, "mpeg4"),
}


def encode(path: Path, codec: str, sr: int, *, fmt=None, video=None, seconds: float = 3.0, channels: int = 2) -> Path:
    """Write ``seconds`` of a stereo music-like clip with PyAV (after a few tiny video frames when ``video``)."""
    y = np.stack([make_tone_mix(sr, seconds, 7 + 101 * c) for c in range(channels)])
    with av.open(str(path), "w", format=fmt) as out:
        if video:
            picture = out.add_stream(video, rate=10)
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream(codec, rate=sr, layout="stereo" if channels == 2 else "mono")
        sound.bit_rate = 128_000
        if video:
            for i in range(int(seconds * 10)):
                frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 9 % 255, np.uint8), format="rgb24")
                frame.pts = i
                for packet in picture.encode(frame):
                    out.mux(packet)
            for packet in picture.encode():
                out.mux(packet)
        for i in range(0, y.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(y[:, i : i + 1024]), format="fltp", layout=sound.layout.name
            )
            frame.sample_rate, frame.pts = sr, i
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)
    return path


def reference(path: Path) -> tuple[np.ndarray, int]:
    """FFmpeg's one-shot decode of the first audio stream, mono by the mean: ``(y [shape=(n,)], rate)``."""
    pieces, rate = [], 0
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            a = frame.to_ndarray()
            a = a.T if frame.format.is_planar else a.reshape(-1, frame.layout.nb_channels)
            if a.dtype.kind == "i":
                a = a.astype(np.float32) / np.float32(2 ** (8 * a.dtype.itemsize - 1))
            pieces.append(a.astype(np.float32))
            rate = frame.sample_rate
    return np.concatenate(pieces).mean(axis=1, dtype=np.float32), rate


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ffmpeg")
    return {
        name: encode(folder / name, codec, sr, fmt=fmt, video=video)
        for name, (codec, fmt, sr, video) in FORMATS.items()
    }


def ffmpeg_features(path: Path, spec: FeatureSpec) -> np.ndarray:
    stream = FFmpegStream(path, spec.sr)
    return features_from_blocks(stream.blocks(), spec, stream.path)[0]["logmel"]


@pytest.mark.parametrize("name", list(FORMATS))
def test_features_equal_ffmpeg_decode_written_to_wav(files, tmp_path, name):
    y, rate = reference(files[name])
    wav = tmp_path / "oracle.wav"
    sf.write(wav, y, rate, subtype="FLOAT")
    expected = compute_features(wav, SPEC)["logmel"]
    # .mp2 is read by soundfile (libmpg123) through open_audio; FFmpegStream is compared on it directly.
    got = ffmpeg_features(files[name], SPEC) if name.endswith(".mp2") else compute_features(files[name], SPEC)["logmel"]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)


def test_video_files_decode_their_first_audio_stream(files):
    for name in ("video.mp4", "video.mkv"):
        stream = open_audio(files[name], 22050)
        assert isinstance(stream, FFmpegStream)
        assert (stream.stream_index, stream.codec, stream.source_channels) == (1, "aac", 2)
        stream.close()


@pytest.mark.parametrize("name", ["aac.m4a", "alac.m4a", "opus.webm", "wmav2.wma", "video.mkv"])
@pytest.mark.parametrize(("offset", "duration"), [(0.37, 1.13), (0.0, 0.5), (2.5, None), (1.0, 60.0)])
def test_offset_and_duration_follow_librosa_rounding(files, name, offset, duration):
    y, rate = reference(files[name])
    stream = FFmpegStream(files[name], rate, offset=offset, duration=duration, block_frames=5000)
    got = np.concatenate(list(stream.blocks()))
    start = int(offset * rate)
    expected = y[start:] if duration is None else y[start : start + int(duration * rate)]
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_offset_past_the_end_has_no_samples(files):
    with pytest.raises(AudioError) as info:
        list(FFmpegStream(files["aac.m4a"], 22050, offset=10.0).blocks())
    assert info.value.kind == "no_samples"


def damaged(path: Path, folder: Path, n_bytes: int = 3000) -> Path:
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + n_bytes] = np.random.default_rng(2).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    out = folder / f"damaged-{path.name}"
    out.write_bytes(bytes(data))
    return out


# Observed with FFmpeg 8 (PyAV 18.1): each of these raises in the decoder or reports damage in the demuxer.
@pytest.mark.parametrize(
    "name", ["aac.m4a", "alac.m4a", "adts.aac", "wmav2.wma", "opus.webm", "video.mp4", "video.mkv"]
)
def test_damage_in_the_middle_is_corrupt_with_a_reason(files, tmp_path, name):
    path = damaged(files[name], tmp_path)
    with pytest.raises(AudioError) as info:
        list(open_audio(path, 22050).blocks())
    assert info.value.kind == "corrupt"
    assert info.value.detail and str(path) not in info.value.detail


def cut_in_half(path: Path, folder: Path) -> Path:
    out = folder / f"cut-{path.name}"
    out.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return out


def test_m4a_without_moov_is_truncated(files, tmp_path):
    for name in ("aac.m4a", "alac.m4a", "video.mp4"):
        with pytest.raises(AudioError) as info:
            open_audio(cut_in_half(files[name], tmp_path), 22050)
        assert info.value.kind == "truncated"
        assert "moov atom" in info.value.detail


def test_cut_streams_are_truncated(files, tmp_path):
    for name in ("adts.aac", "wmav2.wma", "opus.webm", "video.mkv"):
        with pytest.raises(AudioError) as info:
            list(open_audio(cut_in_half(files[name], tmp_path), 22050).blocks())
        assert info.value.kind == "truncated", (name, info.value)


def test_file_without_audio_is_unsupported(tmp_path):
    path = tmp_path / "silent.mp4"
    with av.open(str(path), "w") as out:
        picture = out.add_stream("mpeg4", rate=10)
        picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in picture.encode(frame):
                out.mux(packet)
        for packet in picture.encode():
            out.mux(packet)
    with pytest.raises(AudioError) as info:
        open_audio(path, 22050)
    assert info.value.kind == "unsupported" and "no audio stream" in info.value.detail


def test_m4a_named_mp3_falls_back_to_ffmpeg(files, tmp_path):
    path = tmp_path / "really-aac.mp3"
    path.write_bytes(files["aac.m4a"].read_bytes())
    stream = open_audio(path, 22050)
    assert isinstance(stream, FFmpegStream) and stream.codec == "aac"
    assert sum(block.size for block in stream.blocks()) > 22050


def test_text_named_m4a_is_unreadable(tmp_path):
    path = tmp_path / "notes.m4a"
    path.write_text("not audio at all\n" * 20)
    with pytest.raises(AudioError) as info:
        open_audio(path, 22050)
    assert info.value.kind == "unreadable" and str(path) not in info.value.detail


def test_unknown_extensions_reach_ffmpeg_and_a_cover_fails_with_a_reason(files, tmp_path):
    # Listed with all_files: an M4A named .bin and a WAV without extension decode by content.
    (tmp_path / "aac.bin").write_bytes(files["aac.m4a"].read_bytes())
    write_audio(tmp_path / "tone.wav", 1.0)
    (tmp_path / "tone").write_bytes((tmp_path / "tone.wav").read_bytes())
    spec = FeatureSpec(sr=8000, n_fft=256, hop_length=128, n_mels=16, features=("logmel",))
    stream = open_audio(tmp_path / "aac.bin", 8000)
    assert isinstance(stream, FFmpegStream) and stream.codec == "aac"
    stream.close()
    for name in ("aac.bin", "tone"):
        logmel = compute_features(tmp_path / name, spec)["logmel"]
        assert logmel.shape[1] == 16 and logmel.shape[0] > 40
    (tmp_path / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))  # a JPEG header, no audio
    with pytest.raises(AudioError) as info:
        compute_features(tmp_path / "cover.jpg", spec)
    assert info.value.kind in ("unreadable", "unsupported") and info.value.detail


def test_load_corpus_lists_ffmpeg_formats(files, tmp_path):
    for name in ("aac.m4a", "opus.webm", "mp2.mp2", "wmav2.wma", "video.mkv"):
        (tmp_path / name).write_bytes(files[name].read_bytes())
    (tmp_path / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    corpus = load_corpus(tmp_path, labels="none", labels_required=False)
    assert sorted(t.track_id for t in corpus) == ["aac.m4a", "mp2.mp2", "opus.webm", "video.mkv", "wmav2.wma"]


def test_extract_prints_no_ffmpeg_log(files, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good = ("aac.m4a", "opus.webm", "wmav2.wma")
    for name in good:
        (corpus / name).write_bytes(files[name].read_bytes())
    cut_in_half(files["aac.m4a"], tmp_path).rename(corpus / "cut.m4a")
    damaged(files["adts.aac"], tmp_path).rename(corpus / "damaged.aac")
    store = tmp_path / "store"
    command = [sys.executable, "-m", "mgc.cli", "extract", str(corpus), str(store), "--sr", "8000", "--n-fft", "256"]
    command += ["--hop-length", "128", "--n-mels", "16", "--features", "logmel", "--workers", "1"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT.parent, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    # FFmpeg's own log lines read "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d0c8a0] moov atom not found".
    assert not re.search(r"\[[\w,]+ @ 0x[0-9a-f]+\]", done.stderr), done.stderr
    outside_table = [line for line in done.stderr.splitlines() if not line.lstrip().startswith(("│", "┃", "|"))]
    for line in outside_table:
        assert "moov atom not found" not in line and "invalid band" not in line and "Pulse data" not in line, line
    with FeatureStore(store) as stored:
        assert sorted(stored.tracks.track_id) == sorted(good)
        assert dict(zip(stored.failures.track_id, stored.failures.kind)) == {
            "cut.m4a": "truncated",
            "damaged.aac": "corrupt",
        }


def test_mp3_soundfile_and_ffmpeg_agree(tmp_path):
    path = tmp_path / "song.mp3"
    sf.write(path, make_tone_mix(44100, 3.0, 5), 44100, format="MP3")
    spec = FeatureSpec(sr=22050, n_fft=1024, hop_length=256, n_mels=64, features=("logmel",), logmel_dtype="float32")
    by_soundfile = compute_features(path, spec)["logmel"]
    by_ffmpeg = ffmpeg_features(path, spec)
    assert by_soundfile.shape == by_ffmpeg.shape
    # Measured: libmpg123 and FFmpeg's mp3float decode the same frames with the same gapless trim,
    # apart from float rounding; the log-mel differ by at most MP3_TOLERANCE_DB.
    assert np.abs(by_soundfile - by_ffmpeg).max() <= MP3_TOLERANCE_DB


MP3_TOLERANCE_DB = 0.01  # measured 0.0014 dB (samples within 1e-6), FFmpeg 8 / libsndfile 1.2


# --- --on-corrupt keep: the audio that decodes is kept, and the store says so ---------------


def _decoded(path: Path, on_corrupt: str) -> tuple[np.ndarray, str | None]:
    stream = open_audio(path, 22050, on_corrupt=on_corrupt)
    y = np.concatenate(list(stream.blocks()))
    return y, stream.damage


@pytest.mark.parametrize("name", ["aac.m4a", "adts.aac", "video.mp4", "video.mkv", "song.mp3", "song.flac", "mp2.mp2"])
def test_keep_keeps_what_decodes_after_the_damage(files, tmp_path, name):
    if name.startswith("song."):  # libsndfile reads these and gives up at the damage; FFmpeg decodes on
        clean = write_audio(tmp_path / name, 10.0, 44100, channels=2, format=name.split(".")[1].upper())
    else:
        clean = files[name]
    path = damaged(clean, tmp_path)
    with pytest.raises(AudioError) as info:
        _decoded(path, "skip")
    assert info.value.kind == "corrupt"
    whole, none = _decoded(clean, "keep")
    kept, damage = _decoded(path, "keep")
    assert none is None and damage, damage
    assert str(path) not in damage
    # Most of the audio is kept (the damage is 3 KB of the file), and what precedes it is unchanged.
    assert 0.85 * whole.size <= kept.size <= whole.size + 4096, (kept.size, whole.size)
    head = int(0.5 * 22050)
    assert np.abs(kept[:head] - whole[:head]).max() < 1e-5


def test_keep_stores_damaged_files_and_records_why(files, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.m4a").write_bytes(files["aac.m4a"].read_bytes())
    damaged(files["adts.aac"], tmp_path).rename(corpus / "hurt.aac")
    damaged(write_audio(tmp_path / "song.flac", 6.0, 44100), tmp_path).rename(corpus / "hurt.flac")
    cut_in_half(files["aac.m4a"], tmp_path).rename(corpus / "cut.m4a")
    small = FeatureSpec(sr=8000, n_fft=256, hop_length=128, n_mels=16, features=("logmel",))
    store = tmp_path / "store"
    result = extract(corpus, store, small, workers=1, on_corrupt="keep")
    assert sorted(t for t, _p, _d in result.damaged) == ["hurt.aac", "hurt.flac"]
    with FeatureStore(store) as stored:
        damage = dict(zip(stored.tracks.track_id, stored.tracks.damage))
        assert sorted(damage) == ["good.m4a", "hurt.aac", "hurt.flac"]
        assert damage["good.m4a"] == "" and "FFmpeg" in damage["hurt.aac"] and "libsndfile" in damage["hurt.flac"]
        assert dict(zip(stored.failures.track_id, stored.failures.kind)) == {"cut.m4a": "truncated"}  # not damage
        assert stored.index["run"]["on_corrupt"] == "keep"
    # The store keeps its choice: a run that would skip damaged files is refused, as another offset is.
    with pytest.raises(SpecMismatchError, match="on_corrupt"):
        extract(corpus, store, small, workers=1)
    shown = CliRunner().invoke(app, ["inspect", str(store), "--json"])
    assert shown.exit_code == 0, shown.output
    summary = json.loads(shown.output)
    assert summary["damaged"]["count"] == 2 and summary["run"]["on_corrupt"] == "keep"


def test_stores_made_before_on_corrupt_read_and_resume_as_skip(tmp_path):
    """An index without ``run.on_corrupt`` and shards without ``tracks/damage`` (mgc before the option)."""
    corpus = tmp_path / "corpus"
    for i in range(3):
        write_audio(corpus / f"t{i}.wav", 1.0, 8000, seed=i)
    small = FeatureSpec(sr=8000, n_fft=256, hop_length=128, n_mels=16, features=("logmel",))
    store = tmp_path / "store"
    extract(corpus, store, small, workers=1)
    index = json.loads((store / "index.json").read_text())
    del index["run"]["on_corrupt"]
    (store / "index.json").write_text(json.dumps(index))
    for shard in store.glob("shard-*.h5"):
        with h5py.File(shard, "r+") as h5:
            del h5["tracks/damage"]
    (store / "tracks.h5").unlink()
    again = extract(corpus, store, small, workers=1)  # no settings mismatch: the old store skipped damage
    assert again.processed_tracks == 0 and again.stored_tracks == 3
    with FeatureStore(store) as stored:
        assert list(stored.tracks.damage) == ["", "", ""]
