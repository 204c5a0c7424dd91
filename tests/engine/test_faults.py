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

from mgc.engine import FeatureStore, extract

from .conftest import write_audio
from .test_extract import assert_same_store

ROOT = Path(__file__).resolve().parents[2]


def mgc(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real CLI in a new interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "mgc.cli", *map(str, args)],
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


def _corpus(folder: Path, n: int = 6) -> Path:
    for i in range(n):
        write_audio(folder / ("rock" if i % 2 else "jazz") / f"t{i}.wav", 1.0, seed=i)
    return folder


def test_a_damaged_shard_is_found_and_rebuilt(tmp_path: Path):
    corpus, store = _corpus(tmp_path / "corpus"), tmp_path / "store"
    assert mgc("extract", corpus, store, "--workers", "1", "--shard-size", "2").returncode == 0
    shard = store / "shard-00001.h5"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # a torn copy, a bad disk
    verified = mgc("extract", corpus, store, "--verify")
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert "damaged shard-00001.h5" in verified.stdout + verified.stderr
    assert shard.stat().st_size > 0, "--verify must not write"
    again = mgc("extract", corpus, store, "--workers", "1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "re-extracting 1 shard" in again.stdout + again.stderr
    extract(corpus, tmp_path / "clean", workers=1, shard_size=2)
    assert_same_store(store, tmp_path / "clean")
    assert mgc("extract", corpus, store, "--verify").returncode == 0


def test_a_missing_shard_is_rebuilt(tmp_path: Path):
    corpus, store = _corpus(tmp_path / "corpus"), tmp_path / "store"
    extract(corpus, store, workers=1, shard_size=2)
    (store / "shard-00002.h5").unlink()
    assert mgc("extract", corpus, store, "--workers", "1").returncode == 0
    extract(corpus, tmp_path / "clean", workers=1, shard_size=2)
    assert_same_store(store, tmp_path / "clean")


def _manifest_store(tmp_path: Path) -> tuple[Path, Path, Path, list[str]]:
    """A corpus, its manifest (``path,label`` rows) and a store of shards of 2 extracted by the CLI."""
    audio = _corpus(tmp_path / "audio")
    manifest = tmp_path / "m.csv"
    rows = [f"{p.relative_to(tmp_path).as_posix()},{p.parent.name}" for p in sorted(audio.rglob("*.wav"))]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    store = tmp_path / "store"
    assert mgc("extract", manifest, store, "--workers", "1", "--shard-size", "2").returncode == 0
    return audio, manifest, store, rows


def test_resume_follows_changes_of_labels_and_files(tmp_path: Path):
    audio, manifest, store, _rows = _manifest_store(tmp_path)
    # A label fixed in the manifest, and one recording replaced by another of another length.
    manifest.write_text(manifest.read_text().replace("audio/jazz/t0.wav,jazz", "audio/jazz/t0.wav,blues"))
    time.sleep(0.01)
    write_audio(audio / "rock" / "t3.wav", 1.5, seed=33)
    verified = mgc("extract", manifest, store, "--verify")
    assert verified.returncode == 1
    said = verified.stdout + verified.stderr
    assert "changed audio/jazz/t0.wav" in said and "changed audio/rock/t3.wav" in said
    assert mgc("extract", manifest, store, "--workers", "1").returncode == 0
    with FeatureStore(store) as reader:
        assert reader.tracks.label_name[reader.row("audio/jazz/t0.wav")] == "blues"
        assert reader.tracks.duration[reader.row("audio/rock/t3.wav")] == 1.5
    extract(manifest, tmp_path / "clean", workers=1, shard_size=2)
    assert_same_store(store, tmp_path / "clean")
    assert mgc("extract", manifest, store, "--verify").returncode == 0


def test_a_label_changed_to_another_existing_label_and_a_touched_file_settle(tmp_path: Path):
    """Issue 22, case 10: the shard is extracted again with the same name and counts; the store follows it."""
    _audio, manifest, store, rows = _manifest_store(tmp_path)
    track, label = rows[0].split(",")
    other = next(row.split(",")[1] for row in rows if row.split(",")[1] != label)  # a label the store has
    manifest.write_text(manifest.read_text().replace(rows[0], f"{track},{other}"))
    assert mgc("extract", manifest, store, "--workers", "1").returncode == 0
    with FeatureStore(store) as reader:
        assert reader.tracks.label_name[reader.row(track)] == other
    assert mgc("extract", manifest, store, "--verify").returncode == 0
    time.sleep(0.01)
    (tmp_path / track).touch()  # the same audio, a newer mtime: extracted once more, then settled
    assert mgc("extract", manifest, store, "--verify").returncode == 1
    assert mgc("extract", manifest, store, "--workers", "1").returncode == 0
    assert mgc("extract", manifest, store, "--verify").returncode == 0
    extract(manifest, tmp_path / "clean", workers=1, shard_size=2)
    assert_same_store(store, tmp_path / "clean")


def test_a_fixed_file_that_had_failed_is_tried_again(tmp_path: Path):
    corpus, store = _corpus(tmp_path / "corpus", 4), tmp_path / "store"
    broken = corpus / "rock" / "broken.wav"
    broken.write_text("not audio")
    extract(corpus, store, workers=1)
    assert list(np.asarray(FeatureStore(store).failures.kind)) == ["unreadable"]
    write_audio(broken, 1.0, seed=7)
    assert mgc("extract", corpus, store, "--workers", "1").returncode == 0
    with FeatureStore(store) as reader:
        assert len(reader.failures) == 0 and len(reader) == 5


def test_a_folder_that_is_not_a_store_is_never_emptied(tmp_path: Path):
    corpus = _corpus(tmp_path / "corpus", 2)
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "index.json").write_text('{"name": "my web site"}')
    (folder / "shard-00000.h5").write_text("someone's file")
    for extra in ((), ("--overwrite",)):
        done = mgc("extract", corpus, folder, "--workers", "1", *extra)
        assert done.returncode != 0
        assert "not an mgc feature store" in done.stdout + done.stderr
    assert (folder / "index.json").read_text() == '{"name": "my web site"}'
    assert (folder / "shard-00000.h5").read_text() == "someone's file"
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "plan.json").write_text("my plan")
    assert mgc("extract", corpus, mine, "--overwrite", "--workers", "1").returncode != 0
    assert (mine / "plan.json").read_text() == "my plan"


def test_names_from_json_never_leave_the_store(tmp_path: Path):
    corpus, store = _corpus(tmp_path / "corpus", 4), tmp_path / "store"
    extract(corpus, store, workers=1, shard_size=2)
    outside = tmp_path / "x.h5"
    outside.write_text("precious")
    index = (store / "index.json").read_text()
    (store / "index.json").write_text(index.replace('"shard-00001.h5"', '"../x.h5"'))
    for args in (("inspect", store), ("extract", corpus, store, "--workers", "1")):
        done = mgc(*args)
        assert done.returncode != 0
        assert "not a shard file name" in done.stdout + done.stderr
    assert outside.read_text() == "precious"
    (store / "index.json").write_text(index)
    plan = (store / "plan.json").read_text()
    (store / "plan.json").write_text(plan.replace('"shard-00001.h5"', '"../x.h5"'))
    (store / "shard-00001.h5").unlink()  # so that the run would write that shard again
    done = mgc("extract", corpus, store, "--workers", "1")
    assert done.returncode != 0 and "not a shard file name" in done.stdout + done.stderr
    assert outside.read_text() == "precious"


def test_a_store_of_a_newer_schema_is_not_offered_to_be_overwritten(tmp_path: Path):
    corpus, store = _corpus(tmp_path / "corpus", 2), tmp_path / "store"
    extract(corpus, store, workers=1)
    index = (store / "index.json").read_text()
    (store / "index.json").write_text(index.replace('"schema_version": 1', '"schema_version": 7'))
    for args in (("inspect", store), ("extract", corpus, store, "--workers", "1")):
        done = mgc(*args)
        text = " ".join((done.stdout + done.stderr).split())
        assert done.returncode != 0
        assert "newer mgc" in text and "Upgrade mgc" in text, text


def test_a_fifo_in_the_corpus_is_recorded_not_waited_on(tmp_path: Path):
    corpus = _corpus(tmp_path / "corpus", 2)
    os.mkfifo(corpus / "rock" / "stream.wav")
    done = mgc("extract", corpus, tmp_path / "store", "--workers", "1", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    with FeatureStore(tmp_path / "store") as reader:
        assert list(np.asarray(reader.failures.kind)) == ["not_a_file"] and len(reader) == 2


class _ElsewhereExecutor:
    """An executor whose workers write into another folder than the one the run names (a mount not shared)."""

    def __init__(self, folder: Path) -> None:
        import concurrent.futures as cf
        import dataclasses

        from mgc.engine.shard import run_shard

        self.folder, self._pool, self._run, self._replace = folder, cf.ThreadPoolExecutor(1), run_shard, dataclasses
        folder.mkdir()

    def submit(self, fn, task):
        return self._pool.submit(self._run, self._replace.replace(task, store=str(self.folder)))


def test_workers_that_cannot_see_the_store_fail_the_run_loudly(tmp_path: Path):
    from mgc.engine import ExtractFailed

    corpus, store = _corpus(tmp_path / "corpus", 4), tmp_path / "store"
    executor = _ElsewhereExecutor(tmp_path / "their-disk")
    try:
        extract(corpus, store, executor=executor, shard_size=2)
    except ExtractFailed as exc:
        assert "shared filesystem" in str(exc)
    else:
        raise AssertionError("the run should fail")
    assert not list(store.glob("shard-*.h5"))
    assert mgc("extract", corpus, store, "--verify").returncode == 1


def test_memory_bombs_are_refused_under_a_memory_limit(tmp_path: Path):
    """The files that would ask for gigabytes, extracted by the CLI with its address space capped at 6 GiB."""
    import resource

    import soundfile as sf

    corpus = _corpus(tmp_path / "corpus", 2)
    bombs = corpus / "bombs"
    bombs.mkdir()
    # 300,000 samples at 1 Hz: resampled to 22,050 Hz that is 6.6e9 samples (26 GB).
    sf.write(bombs / "one_hertz.wav", np.zeros(300_000, np.int16), 1, subtype="PCM_16")
    sf.write(bombs / "channels.wav", np.zeros((16, 1024), np.int16), 22050, subtype="PCM_16")  # a 1 GiB buffer
    loud = np.full(22050, 1e38, np.float32)
    loud[::2] *= -1
    sf.write(bombs / "loud.wav", loud, 22050, subtype="FLOAT")  # the power spectrum overflows

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    done = subprocess.run(
        [sys.executable, "-m", "mgc.cli", "extract", str(corpus), str(tmp_path / "store"), "--workers", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=cap,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with FeatureStore(tmp_path / "store") as store:
        kinds = dict(zip(np.asarray(store.failures.track_id), np.asarray(store.failures.kind)))
        assert kinds == {
            "bombs/one_hertz.wav": "bad_sample_rate",
            "bombs/channels.wav": "too_many_channels",
            "bombs/loud.wav": "non_finite_features",
        }
        assert len(store) == 2
        assert all(np.isfinite(logmel).all() for _row, logmel in store.iter_tracks())
