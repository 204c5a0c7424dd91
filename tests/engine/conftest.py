"""Engine fixtures: real audio files on disk, good and bad, written with soundfile."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import make_tone_mix


def write_audio(path: Path, seconds: float = 2.0, sr: int = 22050, channels: int = 1, seed: int = 0, **kwargs) -> Path:
    """Write a music-like clip (``channels`` decorrelated copies) with soundfile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    y = np.stack([make_tone_mix(sr, seconds, seed + 101 * c) for c in range(channels)], axis=1)
    sf.write(path, y if channels > 1 else y[:, 0], sr, **kwargs)
    return path


def _corrupt_middle(path: Path, n_bytes: int = 2000) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + n_bytes] = bytes(np.random.default_rng(2).integers(0, 256, n_bytes, dtype=np.uint8))
    path.write_bytes(bytes(data))


def make_bad_files(folder: Path) -> dict[str, Path]:
    """One file per failure kind that can be made on disk (permission aside). Returns kind -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    bad = {}
    bad["missing"] = folder / "gone.wav"
    bad["empty"] = folder / "empty.wav"
    bad["empty"].write_bytes(b"")
    bad["unreadable"] = folder / "text.wav"
    bad["unreadable"].write_text("this is a text file, not audio\n")
    header = write_audio(folder / "header.wav", 1.0)
    data = bytearray(header.read_bytes())
    data[20:36] = b"\x00" * 16  # the 'fmt ' chunk body
    header.write_bytes(bytes(data))
    bad["unreadable_header"] = header
    truncated = write_audio(folder / "truncated.wav", 2.0)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    bad["truncated"] = truncated
    ogg = write_audio(folder / "corrupt.ogg", 5.0, sr=44100)
    _corrupt_middle(ogg)
    bad["corrupt_ogg"] = ogg
    mp3 = write_audio(folder / "corrupt.mp3", 5.0, sr=44100)
    _corrupt_middle(mp3)
    bad["corrupt_mp3"] = mp3
    with wave.open(str(folder / "zero.wav"), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(22050)
    bad["no_samples"] = folder / "zero.wav"
    y = make_tone_mix(22050, 1.0, 3)
    y[100] = np.nan
    y[200] = np.inf
    sf.write(folder / "nan.wav", y, 22050, subtype="FLOAT")
    bad["non_finite"] = folder / "nan.wav"
    sf.write(folder / "short.wav", make_tone_mix(22050, 0.02, 4), 22050)  # 441 samples < n_fft
    bad["too_short"] = folder / "short.wav"
    (folder / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    bad["unsupported"] = folder / "song.m4a"
    (folder / "album.flac").mkdir()
    bad["is_directory"] = folder / "album.flac"
    return bad


# failure kind expected for each entry of make_bad_files
EXPECTED_KIND = {
    "missing": "missing",
    "empty": "empty",
    "unreadable": "unreadable",
    "unreadable_header": "unreadable",
    "truncated": "truncated",
    "corrupt_ogg": "corrupt",
    "corrupt_mp3": "corrupt",
    "no_samples": "no_samples",
    "non_finite": "non_finite",
    "too_short": "too_short",
    "unsupported": "unsupported",
    "is_directory": "is_directory",
}


def make_genre_folder(root: Path, labels=("blues", "rock"), per_label: int = 3, seconds: float = 1.5) -> Path:
    """A GTZAN-like tree with mixed formats, rates and channel counts."""
    formats = [("wav", 22050, 1, {}), ("flac", 44100, 2, {}), ("ogg", 44100, 2, {})]
    for li, label in enumerate(labels):
        for i in range(per_label):
            ext, sr, channels, kwargs = formats[i % len(formats)]
            write_audio(root / label / f"{label}.{i:05d}.{ext}", seconds, sr, channels, seed=10 * li + i, **kwargs)
    return root


@pytest.fixture
def genre_folder(tmp_path: Path) -> Path:
    """2 labels x 3 tracks of 1.5 s (WAV 22.05 kHz mono, FLAC and OGG 44.1 kHz stereo)."""
    return make_genre_folder(tmp_path / "corpus")
