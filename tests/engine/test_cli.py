from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mgc.cli import app

from .conftest import write_audio

runner = CliRunner()


def _output(result) -> str:
    """Everything printed (stdout and stderr), with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_extract_then_inspect(genre_folder: Path, tmp_path: Path):
    (genre_folder / "rock" / "bad.wav").write_text("text")
    store = tmp_path / "my store"
    result = runner.invoke(
        app, ["extract", str(genre_folder), str(store), "--workers", "1", "--n-mels", "64", "--features", "logmel"]
    )
    assert result.exit_code == 0, _output(result)
    assert "stored in the store" in _output(result)
    shown = runner.invoke(app, ["inspect", str(store), "--json"])
    assert shown.exit_code == 0
    summary = json.loads(shown.stdout)
    assert summary["tracks"] == 6 and summary["spec"]["n_mels"] == 64 and summary["spec"]["features"] == ["logmel"]
    assert summary["labels"]["rock"]["tracks"] == 3
    assert summary["failures"]["by_kind"] == {"unreadable": 1}
    # Uncompressed by default; the tiny tracks do not fill their 512-frame chunks, so less than 1.
    assert summary["bytes_on_disk"] > 0 and 0 < summary["compression_ratio"] <= 1
    text = runner.invoke(app, ["inspect", str(store)])
    assert text.exit_code == 0 and "unreadable" in text.stdout and "compression" in text.stdout
    strict = runner.invoke(
        app,
        [
            "extract",
            str(genre_folder),
            str(store),
            "--workers",
            "1",
            "--n-mels",
            "64",
            "--features",
            "logmel",
            "--strict",
        ],
    )
    assert strict.exit_code == 1 and "strict" in _output(strict)
    mismatch = runner.invoke(app, ["extract", str(genre_folder), str(store), "--workers", "1"])
    assert mismatch.exit_code == 2 and "--overwrite" in _output(mismatch)


@pytest.mark.parametrize("args", [["--features", "logmel,chroma"], ["--fmax", "99999"]])
def test_bad_options_exit_2(genre_folder: Path, tmp_path: Path, args):
    result = runner.invoke(app, ["extract", str(genre_folder), str(tmp_path / "s"), *args])
    assert result.exit_code == 2 and "error" in _output(result)


def test_extract_all_files_stores_audio_of_any_name_and_fails_the_cover(tmp_path: Path):
    folder = tmp_path / "album"
    write_audio(folder / "a.wav", 1.0)
    (folder / "b.bin").write_bytes((folder / "a.wav").read_bytes())
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))
    store = tmp_path / "store"
    args = ["--workers", "1", "--sr", "8000", "--n-fft", "256", "--hop-length", "128", "--n-mels", "16"]
    result = runner.invoke(app, ["extract", str(folder), str(store), "--all-files", *args, "--features", "logmel"])
    assert result.exit_code == 0, _output(result)
    summary = json.loads(runner.invoke(app, ["inspect", str(store), "--json"]).stdout)
    assert summary["tracks"] == 2 and summary["failures"]["count"] == 1, summary
    assert set(summary["failures"]["by_kind"]) <= {"unreadable", "unsupported"}


def test_inspect_not_a_store(tmp_path: Path):
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 2 and "not a feature store" in _output(result)


def test_real_cli_exit_codes_and_no_traceback(tmp_path: Path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.wav").write_text("text")
    mgc = [sys.executable, "-m", "cli"]
    root = str(Path(__file__).resolve().parents[2])
    none = subprocess.run(
        [*mgc, "extract", str(tmp_path / "c"), str(tmp_path / "s"), "--workers", "1"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert none.returncode == 1 and "no track could be used" in " ".join(none.stderr.split())
    assert "Traceback" not in none.stderr
    missing = subprocess.run(
        [*mgc, "extract", str(tmp_path / "nope"), str(tmp_path / "s2")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        missing.returncode == 2
        and "does not exist" in " ".join(missing.stderr.split())
        and "Traceback" not in missing.stderr
    )
    write_audio(tmp_path / "c" / "ok.wav", 1.0)
    ok = subprocess.run(
        [*mgc, "extract", str(tmp_path / "c"), str(tmp_path / "s3"), "--workers", "1"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr


def test_ctrl_c_says_what_was_kept_and_the_same_command_resumes(tmp_path: Path):
    """Ctrl-C (SIGINT to the whole process group, workers included) during extract: one line, exit 130, resumable."""
    import functools
    import os
    import signal
    import time

    corpus = tmp_path / "corpus" / "g"
    corpus.mkdir(parents=True)
    write_audio(corpus / "t0000.wav", seconds=1.0, sr=8000)
    for i in range(1, 800):
        os.link(corpus / "t0000.wav", corpus / f"t{i:04d}.wav")
    store, small = tmp_path / "store", ["--sr", "8000", "--n-fft", "256", "--n-mels", "16", "--features", "logmel"]
    argv = [sys.executable, "-m", "mgc.cli", "extract", str(corpus.parent), str(store), "--workers", "2", *small]
    # The run gets Ctrl-C's default handling even where this suite was started with SIGINT ignored (a
    # background job of a script): an ignored SIGINT is inherited, and Python then never raises KeyboardInterrupt.
    run = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (store / "shard-00002.h5").exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run.poll() is None, "the run ended before it could be interrupted: the test needs a longer corpus"
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        "error: interrupted: shards already written are kept; the same command resumes"
    )
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "already done, skipped" in again.stderr and "(0 already done" not in again.stderr
