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

from engine import AudioError
from engine.audio import AudioStream

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
    assert str(path) in str(info.value)


_AS_NOBODY = """
import os, sys
from engine.audio import AudioStream
from engine.errors import AudioError
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
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(root)),
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
