"""Kill a real extraction with SIGKILL at several moments; the resumed store equals an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mgc.engine import FeatureStore, extract

from .conftest import write_audio
from .test_extract import assert_same_store

_RUN = """
import sys
from mgc.engine import extract
extract(sys.argv[1], sys.argv[2], workers=2, shard_size=1)
"""


def _shards_in_index(store: Path) -> int:
    try:
        return len(json.loads((store / "index.json").read_text())["shards"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _run_and_kill(corpus: Path, store: Path, should_kill) -> None:
    root = str(Path(__file__).resolve().parents[2])
    process = subprocess.Popen(
        [sys.executable, "-c", _RUN, str(corpus), str(store)],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while process.poll() is None and not should_kill(store) and time.monotonic() < deadline:
        time.sleep(0.001)
    workers = _children(process.pid)
    os.kill(process.pid, signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, f"the run ended before the kill point: {stderr.decode()}"
    for pid in workers:  # orphaned workers finish their task and leave; wait so runs don't overlap
        for _ in range(2000):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
    # whatever the moment, readers see only complete shards
    if (store / "index.json").exists():
        reader = FeatureStore(store)
        assert len(reader) + len(reader.failures) == sum(
            s["n_tracks"] + s["n_failures"] for s in reader.index["shards"]
        )
        for row in range(len(reader)):
            reader.read(row)


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume_equals_an_uninterrupted_run(tmp_path: Path):
    corpus = tmp_path / "corpus"
    for i in range(14):
        write_audio(corpus / ("a" if i % 2 else "b b") / f"t{i:02d}.ogg", 8.0, sr=44100, channels=2, seed=i)
    (corpus / "a" / "broken.wav").write_text("not audio")
    store = tmp_path / "killed"
    kill_points = [
        lambda s: any(p.name.endswith(".tmp") and p.name.startswith("shard-") for p in s.glob("*")),  # mid-shard
        lambda s: _shards_in_index(s) >= 4,
        lambda s: _shards_in_index(s) >= 9,
    ]
    for should_kill in kill_points:
        _run_and_kill(corpus, store, should_kill)
    extract(corpus, store, workers=1)
    extract(corpus, tmp_path / "clean", workers=1, shard_size=1)
    assert_same_store(store, tmp_path / "clean")
    assert sorted(p.name for p in store.iterdir() if p.name.endswith(".tmp")) == []
