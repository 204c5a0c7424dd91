"""Fault injection against the real CLI: real files, real worker processes, real SIGKILLs.

Each case breaks something a run over millions of files meets (a worker that
dies, a damaged shard, a changed corpus, a folder that is not a store...) and
checks that nothing is lost: every good track is in the store exactly once,
every bad one is recorded with its reason, and the store equals a clean run's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from engine import FeatureStore, extract

from .conftest import write_audio

ROOT = Path(__file__).resolve().parents[2]


def mgc(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real CLI in a new interpreter."""
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _holders(path: Path) -> list[int]:
    """Processes (other than this one) that have ``path`` open."""
    target, found = os.fspath(path), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry.name}/fd/{fd}") == target:
                    found.append(int(entry.name))
                    break
            except OSError:
                continue
    return found


class Killer(threading.Thread):
    """SIGKILL every process that opens ``path``, up to ``limit`` times: a worker that dies on one file."""

    def __init__(self, path: Path, limit: int) -> None:
        super().__init__(daemon=True)
        self.path, self.limit, self.kills = path, limit, []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and len(self.kills) < self.limit:
            for pid in _holders(self.path):
                if pid in self.kills:  # a dying process lists its files until it is gone
                    continue
                try:
                    os.kill(pid, signal.SIGKILL)
                    self.kills.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.002)


def test_a_worker_that_dies_on_one_file_costs_only_that_file(tmp_path: Path):
    corpus = tmp_path / "corpus"
    for i in range(8):
        write_audio(corpus / ("rock" if i % 2 else "jazz") / f"t{i}.wav", 1.0, seed=i)
    # A long file, so that a worker holds it open long enough to be killed while on it.
    deadly = write_audio(corpus / "rock" / "deadly.wav", 600.0, seed=99)
    killer = Killer(deadly, limit=2)
    killer.start()
    try:
        done = mgc("extract", corpus, tmp_path / "store", "--workers", "2", "--shard-size", "3")
    finally:
        killer.stop.set()
        killer.join()
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(killer.kills) == 2, "the worker should die on the file once in the pool and once alone"
    store = FeatureStore(tmp_path / "store")
    assert sorted(np.asarray(store.tracks.track_id)) == sorted(
        f"{'rock' if i % 2 else 'jazz'}/t{i}.wav" for i in range(8)
    )
    failures = store.failures
    assert list(np.asarray(failures.track_id)) == ["rock/deadly.wav"]
    assert list(np.asarray(failures.kind)) == ["crashed"]
    assert "died twice" in failures.message[0]
    assert not [p.name for p in (tmp_path / "store").iterdir() if p.name.endswith(".tmp")]
    store.close()
    # Nothing else is lost: the stored tracks equal a clean run's without the deadly file.
    deadly.unlink()
    extract(corpus, tmp_path / "clean", workers=1, shard_size=3)
    clean = FeatureStore(tmp_path / "clean")
    again = FeatureStore(tmp_path / "store")
    assert len(clean) == len(again) == 8
    for track_id in np.asarray(clean.tracks.track_id):
        np.testing.assert_array_equal(clean.read(track_id), again.read(track_id))
