"""Reading a large store: today's reader (benchmarks/_store_v0.py) vs engine.FeatureStore, same run.

Usage:
    python benchmarks/store.py [--tracks 100000] [--workdir /tmp/mgc-store-bench] [--workers 2]
                               [--loop-tracks 10000]

Builds a real store of ``--tracks`` one-second tracks with ``engine.extract``
(hard links to a few short WAV files under label folders; it reports the
extraction rate), consolidates its track table, then prints, for both readers:
open time and resident memory (each measured in a fresh process, median of 3),
``mgc inspect``'s summarize time (and the whole command end to end), per-track random read latency, whole-store
streaming throughput (``iter_tracks`` vs a ``read(i)`` loop over
``--loop-tracks`` tracks vs plain h5py reading each shard's ``/features/logmel``
whole), peak open shard files, and a linear extrapolation to a million tracks.
The store is kept under ``--workdir`` and reused by the next run of the same size.
All reads are from the page cache (the store was just written): this measures
the readers, not the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

_OPEN_PROBE = """
import json, os, sys, time
sys.path[:0] = {paths!r}
import numpy, h5py
{import_line}
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = rss()
started = time.perf_counter()
store = Reader({store!r})
elapsed = time.perf_counter() - started
n = len(store)
print(json.dumps({{"seconds": elapsed, "rss": rss() - before, "tracks": n}}))
"""

_READERS = {
    "today": "from _store_v0 import FeatureStore as Reader",
    "ours": "from engine import FeatureStore as Reader",
}


def report(rows: list[tuple], header: tuple) -> None:
    """Print aligned rows."""
    table = [tuple(str(c) for c in header)] + [tuple(str(c) for c in row) for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for k, row in enumerate(table):
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def build(workdir: Path, n_tracks: int, workers: int) -> tuple[Path, float, float]:
    """Make a store of ``n_tracks`` one-second tracks; return (store, extraction s, consolidate s)."""
    from mgc.engine import extract
    from mgc.engine.tables import consolidate
    from tests.engine.conftest import write_audio

    corpus, store = workdir / "corpus", workdir / "store"
    marker = workdir / f"built-{n_tracks}.json"
    if marker.exists() and (store / "index.json").exists():
        done = json.loads(marker.read_text())
        return store, done["extract"], done["consolidate"]
    shutil.rmtree(workdir, ignore_errors=True)
    # ext4 allows 65,000 links to one file: one source per 50,000 tracks (4 at least)
    n_sources = max(4, -(-n_tracks // 50_000))
    sources = [write_audio(workdir / "sources" / f"s{k}.wav", 1.0, seed=k) for k in range(n_sources)]
    labels = [f"genre{k}" for k in range(8)]
    for label in labels:
        (corpus / label).mkdir(parents=True)
    for i in range(n_tracks):
        os.link(sources[i % len(sources)], corpus / labels[i % len(labels)] / f"track{i:07d}.wav")
    started = time.perf_counter()
    extract(corpus, store, workers=workers)
    extract_seconds = time.perf_counter() - started
    table = store / "tracks.h5"
    if table.exists():  # written by the extraction itself: time a re-consolidation from scratch
        table.unlink()
    started = time.perf_counter()
    consolidate(store)
    consolidate_seconds = time.perf_counter() - started
    marker.write_text(json.dumps({"extract": extract_seconds, "consolidate": consolidate_seconds}))
    return store, extract_seconds, consolidate_seconds


def open_in_fresh_process(reader: str, store: Path, repeats: int = 3) -> tuple[float, float]:
    """Median (seconds, resident bytes added) of opening the store in a new interpreter."""
    paths = [str(ROOT), str(ROOT / "benchmarks")]
    code = _OPEN_PROBE.format(paths=paths, import_line=_READERS[reader], store=str(store))
    runs = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return statistics.median(r["seconds"] for r in runs), statistics.median(r["rss"] for r in runs)


def cli_inspect(store: Path, repeats: int = 3) -> tuple[float, float]:
    """Median seconds of ``mgc inspect STORE`` end to end in a new interpreter, and of ``python -c pass``."""
    runs = {"inspect": [], "python": []}
    for _ in range(repeats):
        for name, argv in (("inspect", ["-m", "mgc.cli", "inspect", str(store)]), ("python", ["-c", "pass"])):
            started = time.perf_counter()
            subprocess.run([sys.executable, *argv], capture_output=True, check=True)
            runs[name].append(time.perf_counter() - started)
    return statistics.median(runs["inspect"]), statistics.median(runs["python"])


def shard_fds(store: Path) -> int:
    prefix, count = os.fspath(store), 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(prefix) and os.path.basename(target).startswith("shard-")
    return count


def timed(fn, repeats: int = 3) -> float:
    """Median seconds of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--workdir", default="/tmp/mgc-store-bench")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--loop-tracks", type=int, default=10_000, help="tracks of the read(i) loops")
    args = parser.parse_args()

    import _store_v0
    import h5py

    from mgc.engine import FeatureStore, summarize_store

    workdir = Path(args.workdir) / str(args.tracks)
    store_path, extract_seconds, consolidate_seconds = build(workdir, args.tracks, args.workers)
    n = args.tracks
    print(f"store: {n} tracks of 1 s, {len(json.loads((store_path / 'index.json').read_text())['shards'])} shards")
    if extract_seconds:
        print(
            f"extraction: {extract_seconds:.1f} s, {n / extract_seconds:.0f} tracks/s on {args.workers} workers "
            f"(today's figure: 735 tracks/s); consolidate from scratch: {consolidate_seconds:.2f} s\n"
        )

    opened = {name: open_in_fresh_process(name, store_path) for name in _READERS}
    inspect = {
        "today": timed(lambda: _store_v0.summarize_store_v0(store_path), 1),
        "ours": timed(lambda: summarize_store(store_path), 1),
    }
    command_seconds, python_seconds = cli_inspect(store_path)
    old, new = _store_v0.FeatureStore(store_path), FeatureStore(store_path)
    rng = np.random.default_rng(0)

    def random_reads(store):  # other rows on every call: the warm-up must not fill HDF5's chunk caches
        return lambda: [store.read(int(r)) for r in rng.integers(0, n, 2000)]

    latency = {"today": timed(random_reads(old), 1) / 2000, "ours": timed(random_reads(new), 1) / 2000}
    old.close()
    new.close()

    bytes_per_track = float(new.tracks.n_frames.mean()) * new.spec.n_mels * 4  # float32 handed out
    loop = min(args.loop_tracks, n)
    peak = {}

    def loop_today():
        store = _store_v0.FeatureStore(store_path)
        for row in range(loop):
            store.read(row)
        peak["today"] = shard_fds(store_path)
        store.close()

    def stream_ours():
        with FeatureStore(store_path) as store:
            most = 0
            for row, _frames in store.iter_tracks():
                if row % 512 == 0:
                    most = max(most, shard_fds(store_path))
            peak["ours"] = most

    def loop_ours():
        with FeatureStore(store_path) as store:
            for row in range(loop):
                store.read(row)

    def plain_h5py():
        index = json.loads((store_path / "index.json").read_text())
        for entry in index["shards"]:
            with h5py.File(store_path / entry["name"], "r") as h5:
                h5["features/logmel"][()].astype(np.float32)

    stream = {
        "today read(i) loop": (timed(loop_today, 1), loop),
        "ours read(i) loop": (timed(loop_ours, 1), loop),
        "ours iter_tracks": (timed(stream_ours, 2), n),
        "plain h5py, shards whole": (timed(plain_h5py, 2), n),
    }

    print("open, inspect, random reads")
    rows = []
    measured = {
        "open (fresh process), s": {name: opened[name][0] for name in _READERS},
        "resident memory added, MB": {name: opened[name][1] / 2**20 for name in _READERS},
        "mgc inspect (summarize_store), s": inspect,
        "random read(i), ms per track": {name: latency[name] * 1e3 for name in _READERS},
    }
    for label, values in measured.items():
        scales = not label.startswith("random")  # open, memory and inspect grow with the tracks
        million = {name: v * 1_000_000 / n for name, v in values.items()}
        ratio = values["today"] / values["ours"]
        rows.append(
            (
                label,
                f"{values['today']:.3f}",
                f"{values['ours']:.3f}",
                f"{ratio:.1f}x",
                f"{million['today']:.1f}" if scales else "",
                f"{million['ours']:.1f}" if scales else "",
            )
        )
    report(rows, ("", "today", "ours", "today/ours", "today @1M (linear)", "ours @1M (linear)"))

    print(
        f"mgc inspect end to end (new process, imports included): {command_seconds:.2f} s "
        f"(an empty interpreter starts in {python_seconds:.2f} s)"
    )

    print("\nwhole-store pass (float32 out)")
    rows = []
    base = stream["ours iter_tracks"]
    for label, (seconds, tracks) in stream.items():
        rate = tracks / seconds
        rows.append(
            (
                label,
                tracks,
                f"{seconds:.2f}",
                f"{rate:,.0f}",
                f"{rate * bytes_per_track / 2**20:,.0f}",
                f"{(base[1] / base[0]) / rate:.2f}x",
                f"{1_000_000 / rate:,.0f}",
            )
        )
    report(rows, ("", "tracks", "seconds", "tracks/s", "MB/s", "iter_tracks speed-up", "s @1M"))
    print(
        f"\npeak open shard files: today {peak['today']} after a {loop}-track read(i) loop (one per shard touched, "
        f"never closed); ours {peak['ours']} during iter_tracks (LRU bound {FeatureStore(store_path).max_open})"
    )
    print(f"(the store stays in {workdir} for the next run; delete it when done)")


if __name__ == "__main__":
    main()
