"""What C decoders print stays off the terminal, and a bad file's failure says what happened (issue 23).

Real files from real encoders (libsndfile's LAME and FLAC writers), damaged on disk; no mocks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mgc.engine import AudioError, FeatureStore
from mgc.engine.audio import AudioStream, _decoder_output

from .conftest import write_audio

ROOT = Path(__file__).resolve().parents[2]
# Lines as libmpg123 prints them on fd 2 (mgc's own failure table may quote their words, never these lines).
DECODER_LINE = re.compile(r"^(?:Note: |Warning: |\[src/|\[[^\]]*\.c:[^\]]*\] \w+: )", re.MULTILINE)


def _write_mp3(path: Path, seconds: float = 4.0) -> Path:
    try:
        return write_audio(path, seconds, sr=22050, format="MP3")
    except (sf.LibsndfileError, TypeError, ValueError) as exc:  # libsndfile before 1.1 has no MP3 writer
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write MP3: {exc}")


def _overwrite(path: Path, at: float, data: bytes) -> Path:
    raw = bytearray(path.read_bytes())
    start = int(len(raw) * at)
    raw[start : start + len(data)] = data
    path.write_bytes(bytes(raw))
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    """name -> file: one good WAV and MP3, and damaged MP3 and FLAC files."""
    folder = tmp_path_factory.mktemp("bad")
    files = {"good_wav": write_audio(folder / "good.wav", 1.0), "good_mp3": _write_mp3(folder / "good.mp3")}
    files["corrupt_mp3"] = _overwrite(_write_mp3(folder / "corrupt.mp3"), 1 / 3, bytes(4000))
    files["random_mp3"] = folder / "random.mp3"
    files["random_mp3"].write_bytes(np.random.default_rng(3).integers(0, 256, 20_000, np.uint8).tobytes())
    flac = write_audio(folder / "half.flac", 4.0)
    flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    files["half_flac"] = flac
    header = write_audio(folder / "header.flac", 1.0)
    header.write_bytes(header.read_bytes()[:40])  # inside the metadata blocks
    files["header_flac"] = header
    files["damaged_flac"] = _overwrite(write_audio(folder / "damaged.flac", 4.0), 1 / 3, bytes(2000))
    return files


def _failure(path: Path) -> AudioError:
    with pytest.raises(AudioError) as info:
        for _ in AudioStream(path, 8000).blocks():
            pass
    message = str(info.value)
    assert "does not exist" not in message and "possibly a pipe" not in message
    assert message.count(str(path)) == 1  # the detail never repeats the path
    return info.value


def test_a_corrupt_mp3_is_corrupt_and_quotes_the_decoder_not_the_terminal(bad, capfd):
    error = _failure(bad["corrupt_mp3"])
    assert error.kind == "corrupt"
    assert error.detail.startswith("decoding failed: libmpg123: Illegal Audio-MPEG-Header 0x00000000 at offset")
    assert "resync" in error.detail and "[src/" not in error.detail
    assert capfd.readouterr().err == ""  # libmpg123 printed its notes into the capture, not onto fd 2


def test_random_bytes_named_mp3_are_unreadable_content_not_a_missing_file(bad, capfd):
    error = _failure(bad["random_mp3"])
    assert error.kind == "unreadable"
    assert error.detail.startswith("libsndfile does not recognise the content")
    assert capfd.readouterr().err == ""


def test_a_flac_cut_in_half_is_truncated_and_says_where_it_stops(bad):
    error = _failure(bad["half_flac"])
    assert error.kind == "truncated"
    assert re.match(r"the audio stops at [12]\.\d s of 4\.0 s", error.detail), error.detail


def test_a_flac_cut_inside_its_header_is_truncated_not_a_corrupt_header(bad):
    error = _failure(bad["header_flac"])
    assert (error.kind, error.detail) == ("truncated", "the file ends inside its FLAC header")


def test_a_flac_damaged_in_the_middle_is_corrupt_since_its_end_decodes(bad):
    error = _failure(bad["damaged_flac"])
    assert error.kind == "corrupt"
    assert re.match(r"decoding failed at [01]\.\d s of 4\.0 s: libsndfile: ", error.detail), error.detail


def test_a_good_mp3_decodes_and_the_decoders_remarks_are_dropped(bad, capfd):
    stream = AudioStream(bad["good_mp3"], 22050)
    assert sum(block.size for block in stream.blocks()) == 4 * 22050
    assert stream._messages == []  # libmpg123's remarks on LAME's bit reservoir are no failure
    assert capfd.readouterr().err == ""


def test_the_capture_passes_on_what_is_not_the_decoders(capfd):
    """Another thread's writes during a decoder call (a progress bar, a warning) reach fd 2 unchanged."""
    lines: list = []
    with _decoder_output(lines):
        os.write(2, b"\r\x1b[2Kextract 3/8 tracks \x1b[33m0:00:01\x1b[0m")  # a bar's last line, unfinished
        os.write(2, b"Note: Illegal Audio-MPEG-Header 0x00000000 at offset 11884.\n")
        os.write(2, b"x.py:3: UserWarning: careful\nSystemError: odd\n")
        os.write(2, b"[src/libmpg123/parse.c:wetwork():1349] error: Giving up resync after 1024 bytes\n")
    passed = "\r\x1b[2Kextract 3/8 tracks \x1b[33m0:00:01\x1b[0mx.py:3: UserWarning: careful\nSystemError: odd\n"
    assert capfd.readouterr().err == passed
    assert lines == [
        "Note: Illegal Audio-MPEG-Header 0x00000000 at offset 11884.",
        "[src/libmpg123/parse.c:wetwork():1349] error: Giving up resync after 1024 bytes",
    ]


@pytest.mark.parametrize("workers", [1, 2])
def test_extract_keeps_decoder_chatter_off_stderr(bad, tmp_path: Path, workers: int):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("good_wav", "corrupt_mp3", "random_mp3", "half_flac"):
        (corpus / bad[name].name).write_bytes(bad[name].read_bytes())
    spec = ["--sr", "8000", "--n-fft", "256", "--hop-length", "128", "--n-mels", "16", "--features", "logmel"]
    done = subprocess.run(
        [sys.executable, "-m", "mgc.cli", "extract", str(corpus), str(tmp_path / "store"), "--workers", str(workers)]
        + spec,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert not DECODER_LINE.findall(done.stderr), done.stderr
    assert "Traceback" not in done.stderr
    failures = FeatureStore(tmp_path / "store").failures
    kinds = dict(zip(failures.track_id, failures.kind))
    assert kinds == {"corrupt.mp3": "corrupt", "random.mp3": "unreadable", "half.flac": "truncated"}
