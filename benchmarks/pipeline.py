"""Corpus-scale speed: ``mgc extract`` vs the plain librosa way, same machine, same run.

Usage:
    python benchmarks/pipeline.py [--tracks 64] [--seconds 30] [--workers N] [--repeat 3]
                                  [--formats wav,ogg,mp3,flac] [--long-minutes 60] [--workdir DIR] [--no-dask]

Makes a corpus of ``--tracks`` music-like clips of ``--seconds`` s (22.05 kHz
mono WAV, and the same music as 44.1 kHz stereo OGG, MP3 and FLAC), then for
each format prints, with ``--workers`` processes (default: all cores):

- ours: ``mgc extract CORPUS STORE --workers N`` (a real CLI subprocess);
- librosa: ``librosa.load(sr=22050)`` + ``melspectrogram``/``power_to_db`` +
  ``mfcc`` + ``h5py`` writes in our store's format (float16 log-mel, chunks of 512
  frames, shuffle + LZF; one file per task), in a spawn process pool of
  the same size, one BLAS thread per worker, tasks of the same size as ours;
- decode: our decoding only (soundfile + mono + soxr HQ), the floor for compressed input;

with the median of ``--repeat`` timed runs after a warm-up run, three tables:

1. CPU time of whole runs (user + sys of every process): what a fully busy
   machine pays, and a figure that other load on a shared machine barely
   disturbs; with the CPU of a run over one track per worker (mostly start-up);
2. wall time of whole runs, process start-up included, as a user sees it:
   tracks/s, audio hours/s, ratio ours/librosa, ours/decode, peak memory of the
   largest process;
3. per-track milliseconds on one core once started (in one process, 16 tracks:
   ours is the worker's own ``run_shard``), the cost that remains at corpus
   scale, where start-up vanishes; and the throughput it gives on N cores.

Then the wall-time speed-up of ours from 1 to N workers; the same extraction
through a Dask LocalCluster of N worker processes (``mgc extract --scheduler
local:N``, cluster start-up included) against the process pool; and the peak memory of
``mgc extract --workers 1`` on one ``--long-minutes`` track (44.1 kHz mono WAV;
0 skips it) against a 30 s one.

The corpus is generated once and kept in ``--workdir`` (default: a folder
under the system's temporary directory).
"""

from __future__ import annotations

import os
import sys

# This workplace sets OpenBLAS variables meant for old builds that slow a current numpy.
for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SR = 22050
THREAD_ENV = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}


def music(seconds: float, sr: int, seed: int) -> np.ndarray:
    """A stereo music-like clip: harmonic notes that change, an envelope, a little noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = np.zeros((n, 2), dtype=np.float64)
    note_length = sr // 2
    for start in range(0, n, note_length):
        stop = min(n, start + note_length)
        for f0 in rng.uniform(80, 900, size=3):
            for h in range(1, 6):
                phase = 2 * np.pi * f0 * h * t[start:stop]
                gain = rng.uniform(0.05, 0.3) / h
                y[start:stop, 0] += gain * np.sin(phase)
                y[start:stop, 1] += gain * np.sin(phase + rng.uniform(0, 1))
    y *= (0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 1.5 * t)))[:, None]
    y += 0.01 * rng.standard_normal(y.shape)
    return (0.8 * y / np.abs(y).max()).astype(np.float32)


def make_corpus(workdir: Path, tracks: int, seconds: float, formats: list[str]) -> dict[str, Path]:
    """One folder per format, two labels; reused when already complete."""
    import soundfile as sf
    import soxr

    folders = {}
    for fmt in formats:
        folder = workdir / f"corpus-{fmt}-{tracks}x{seconds:g}s"
        folders[fmt] = folder
        marker = folder / ".complete"
        if marker.exists():
            continue
        for i in range(tracks):
            stereo = music(seconds, 44100, seed=i)
            path = folder / ("a" if i % 2 else "b") / f"track{i:04d}.{fmt}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "wav":
                mono = soxr.resample(stereo.mean(axis=1), 44100, SR, quality="HQ")
                sf.write(path, mono, SR, subtype="PCM_16")
            else:
                sf.write(path, stereo, 44100)
        marker.write_text("ok")
    return folders


# ---- the work each measurement does, in a fresh child process --------------------------------


def _librosa_task(args):
    import h5py
    import librosa

    from mgc.engine import schema

    paths, out = args
    with h5py.File(out, "w") as h5:
        for i, path in enumerate(paths):
            y, _ = librosa.load(path, sr=SR, mono=True)
            mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=128)
            logmel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)
            mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=20)
            # The same on-disk format as our store (float16 log-mel, float32 MFCC,
            # chunks of 512 frames, the default filter), so both sides pay for the same output.
            for name, values in (("logmel", logmel.T.astype(np.float16)), ("mfcc", mfcc.T.astype(np.float32))):
                h5.create_dataset(
                    f"{i}/{name}",
                    data=values,
                    chunks=(min(512, len(values)), values.shape[1]),
                    **schema.FILTERS[schema.DEFAULT_COMPRESSION],
                )
    return len(paths)


def _decode_task(paths):
    from mgc.engine.audio import AudioStream

    for path in paths:
        for _ in AudioStream(path, SR).blocks():
            pass
    return len(paths)


def _pool_map(function, tasks, workers: int):
    import concurrent.futures as cf
    import multiprocessing

    os.environ.update(THREAD_ENV)  # inherited by the spawned workers
    with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return sum(pool.map(function, tasks))


def _tasks(corpus: Path, per_task: int) -> list[list[str]]:
    paths = sorted(str(p) for p in corpus.rglob("*.*") if p.name[0] != ".")
    return [paths[i : i + per_task] for i in range(0, len(paths), per_task)]


def per_core(corpus: str, out: str, tracks: int, repeat: int) -> None:
    """Print JSON: per-track ms on one core, in this process, of ours / librosa's way / decode only."""
    from mgc.engine import FeatureSpec
    from mgc.engine.shard import ShardTask, run_shard

    os.environ.update(THREAD_ENV)
    paths = _tasks(Path(corpus), tracks)[0]
    Path(out).mkdir(parents=True, exist_ok=True)
    task = ShardTask(out, "shard-00000.h5", FeatureSpec().to_dict(), [(p, p, "", "", "") for p in paths])
    work = {
        "ours": lambda: run_shard(task),
        "librosa": lambda: _librosa_task((paths, os.path.join(out, "librosa.h5"))),
        "decode": lambda: _decode_task(paths),
    }
    # mgc bench's timing: a warm-up each (imports, compilation caches, OS file cache), shuffled rounds, medians.
    from mgc.engine.bench.timing import round_robin

    timings = round_robin(list(work.items()), repeat)
    print(json.dumps({t.name: t.median / len(paths) * 1000 for t in timings}))


def child(mode: str, corpus: str, out: str, workers: int, per_task: int) -> None:
    """Run one measurement and print JSON: wall seconds and peak RSS (MB) of the largest process."""
    import resource

    start = time.perf_counter()
    if mode == "ours":
        command = [
            sys.executable,
            "-m",
            "cli",
            "extract",
            corpus,
            out,
            "--workers",
            str(workers),
            "--overwrite",
            "--shard-size",
            str(per_task),
        ]
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elif mode == "dask":
        command = [
            sys.executable,
            "-m",
            "cli",
            "extract",
            corpus,
            out,
            "--scheduler",
            f"local:{workers}",
            "--overwrite",
            "--shard-size",
            str(per_task),
        ]
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elif mode == "dask-warm":
        # A cluster that is already up (as a shared one is): time the extraction alone.
        from mgc.engine import FeatureSpec, extract
        from mgc.engine.cluster import dask_executor

        with dask_executor(f"local:{workers}") as session:
            extract(corpus, out, FeatureSpec(), executor=session.executor, overwrite=True, shard_size=per_task)
            start = time.perf_counter()
            extract(corpus, out, FeatureSpec(), executor=session.executor, overwrite=True, shard_size=per_task)
            elapsed = time.perf_counter() - start
        print(json.dumps({"seconds": elapsed, "cpu": float("nan"), "peak_mb": float("nan")}))
        return
    elif mode == "librosa":
        Path(out).mkdir(parents=True, exist_ok=True)
        tasks = _tasks(Path(corpus), per_task)
        _pool_map(_librosa_task, [(t, os.path.join(out, f"part{i:05d}.h5")) for i, t in enumerate(tasks)], workers)
    elif mode == "decode":
        _pool_map(_decode_task, _tasks(Path(corpus), per_task), workers)
    elapsed = time.perf_counter() - start
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    peak = max(u.ru_maxrss for u in usage)
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)  # every process of the run, start-up included
    print(json.dumps({"seconds": elapsed, "cpu": cpu, "peak_mb": peak / 1024}))


def measure(mode: str, corpus: Path, out: Path, workers: int, per_task: int) -> dict:
    command = [sys.executable, __file__, "_child", mode, str(corpus), str(out), str(workers), str(per_task)]
    done = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(mode, corpus, out, workers, per_task, repeat) -> dict:
    """Median over ``repeat`` runs after one warm-up (fills the OS file cache and Numba's cache)."""
    measure(mode, corpus, out, workers, per_task)
    runs = [measure(mode, corpus, out, workers, per_task) for _ in range(repeat)]
    return {key: statistics.median(r[key] for r in runs) for key in ("seconds", "cpu")} | {
        "peak_mb": max(r["peak_mb"] for r in runs)
    }


def report(rows: list[tuple], header: tuple) -> None:
    """Print aligned rows."""
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    for row in [header, *rows]:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths)))
    print()


def long_track_memory(workdir: Path, minutes: float) -> tuple[float, float]:
    """Peak RSS (MB) of ``mgc extract --workers 1`` on a 30 s track and on a ``minutes`` track."""
    import soundfile as sf

    peaks = []
    for seconds in (30.0, minutes * 60):
        folder = workdir / f"long-{seconds:g}s"
        path = folder / "track.wav"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            piece = music(60.0, 44100, seed=7).mean(axis=1)
            with sf.SoundFile(path, "w", samplerate=44100, channels=1, subtype="PCM_16") as handle:
                left = int(seconds * 44100)
                while left > 0:
                    handle.write(piece[: min(left, piece.size)])
                    left -= piece.size
        peaks.append(measure("ours", folder, workdir / f"store-long-{seconds:g}s", 1, 1)["peak_mb"])
    return peaks[0], peaks[1]


def small_corpus(corpus: Path, n: int) -> Path:
    """A corpus of the first ``n`` tracks of ``corpus`` (symlinks): one per worker, to measure start-up."""
    folder = corpus.with_name(corpus.name + f"-first{n}")
    if not folder.exists():
        for path in sorted(p for p in corpus.rglob("*.*") if p.name[0] != ".")[:n]:
            link = folder / path.relative_to(corpus)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
    return folder


def compare(corpus: Path, workdir: Path, modes, workers: int, per_task: int, tracks: int, repeat: int) -> dict:
    """Wall and CPU time of each mode on the corpus, and CPU on one track per worker (start-up)."""
    small = small_corpus(corpus, workers)
    out = {}
    for mode in modes:
        full = timed(mode, corpus, workdir / f"out-{mode}-{corpus.name}", workers, per_task, repeat)
        small_run = timed(mode, small, workdir / f"out-{mode}-{small.name}", workers, 1, repeat)
        out[mode] = {**full, "startup": small_run["seconds"], "startup_cpu": small_run["cpu"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats", default="wav,ogg,mp3,flac")
    parser.add_argument("--long-minutes", type=float, default=60.0)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "mgc-bench-pipeline")
    parser.add_argument(
        "--no-dask",
        dest="dask",
        action="store_false",
        help="skip the Dask LocalCluster row (it needs pip install 'mgc[dask]')",
    )
    args = parser.parse_args()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    args.workdir.mkdir(parents=True, exist_ok=True)
    workers = args.workers
    # The same tasks for every contender: at least 4 tasks per worker, at most 128 tracks each.
    per_task = max(1, min(128, args.tracks // (4 * workers)))

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}; workers {workers}, {args.tracks} tracks x {args.seconds:g} s, "
        f"median of {args.repeat} after a warm-up; load average before: {os.getloadavg()[0]:.2f}\n"
    )
    started = time.perf_counter()
    corpora = make_corpus(args.workdir, args.tracks, args.seconds, formats)
    print(f"corpus ready in {time.perf_counter() - started:.0f} s under {args.workdir}\n")
    hours = args.tracks * args.seconds / 3600
    per_track_hours = args.seconds / 3600
    rows, steady_rows, cpu_rows, results = [], [], [], {}
    for fmt, corpus in corpora.items():
        r = compare(corpus, args.workdir, ("ours", "librosa", "decode"), workers, per_task, args.tracks, args.repeat)
        results[fmt] = r
        ours, theirs, decode = (r[m]["seconds"] for m in ("ours", "librosa", "decode"))
        rows.append(
            (
                fmt,
                f"{ours:.2f}",
                f"{args.tracks / ours:.1f}",
                f"{hours / ours:.3f}",
                f"{theirs:.2f}",
                f"{args.tracks / theirs:.1f}",
                f"{theirs / ours:.2f}x",
                f"{decode:.2f}",
                f"{ours / decode:.2f}",
                f"{r['ours']['peak_mb']:.0f}",
                f"{r['librosa']['peak_mb']:.0f}",
            )
        )
        cpu = {m: r[m]["cpu"] for m in r}
        cpu_rows.append(
            (
                fmt,
                f"{cpu['ours']:.2f}",
                f"{cpu['librosa']:.2f}",
                f"{cpu['librosa'] / cpu['ours']:.2f}x",
                f"{cpu['decode']:.2f}",
                f"{cpu['ours'] / cpu['decode']:.2f}",
                f"{r['ours']['startup_cpu']:.2f}",
                f"{r['librosa']['startup_cpu']:.2f}",
            )
        )
        command = [
            sys.executable,
            __file__,
            "_per_core",
            str(corpus),
            str(args.workdir / f"percore-{fmt}"),
            str(min(16, args.tracks)),
            str(max(3, args.repeat)),
        ]
        ms = json.loads(subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout)
        steady_rows.append(
            (
                fmt,
                f"{ms['ours']:.1f}",
                f"{ms['librosa']:.1f}",
                f"{ms['librosa'] / ms['ours']:.2f}x",
                f"{ms['decode']:.1f}",
                f"{ms['ours'] / ms['decode']:.2f}",
                f"{workers * 1000 / ms['ours']:.0f}",
                f"{workers * 1000 / ms['ours'] * per_track_hours:.2f}",
            )
        )
    print("CPU time of whole runs (user + sys of every process; robust to other load on the machine):")
    report(
        cpu_rows,
        (
            "corpus",
            "ours cpu s",
            "librosa cpu s",
            "ratio",
            "decode cpu s",
            "ours/decode",
            "ours start-up cpu s*",
            "librosa start-up cpu s*",
        ),
    )
    print("* CPU of the same run over one track per worker: mostly process start-up and imports\n")
    print("Wall time of whole runs (process start-up included, as a user sees it):")
    report(
        rows,
        (
            "corpus",
            "ours s",
            "ours tr/s",
            "ours h/s",
            "librosa s",
            "librosa tr/s",
            "ratio",
            "decode s",
            "ours/decode",
            "ours MB",
            "librosa MB",
        ),
    )
    print("Per track on one core once started (in one process, 16 tracks, median of passes after a warm-up):")
    report(
        steady_rows,
        (
            "corpus",
            "ours ms",
            "librosa ms",
            "ratio",
            "decode ms",
            "ours/decode",
            f"ours tr/s x{workers}",
            f"ours h/s x{workers}",
        ),
    )

    for fmt in [f for f in ("wav", "ogg") if f in corpora][: 1 if workers > 1 else 0]:
        one = timed("ours", corpora[fmt], args.workdir / f"out-ours-{fmt}-1", 1, per_task, args.repeat)
        many = results[fmt]["ours"]
        report(
            [
                (1, f"{one['seconds']:.2f}", f"{args.tracks / one['seconds']:.1f}", "1.00x"),
                (
                    workers,
                    f"{many['seconds']:.2f}",
                    f"{args.tracks / many['seconds']:.1f}",
                    f"{one['seconds'] / many['seconds']:.2f}x",
                ),
            ],
            (f"workers ({fmt}, wall)", "seconds", "tracks/s", "speed-up"),
        )
    if args.dask:
        fmt = next(iter(corpora))
        pool = results[fmt]["ours"]
        dask = timed("dask", corpora[fmt], args.workdir / f"out-dask-{fmt}", workers, per_task, args.repeat)
        runs = [
            measure("dask-warm", corpora[fmt], args.workdir / f"out-daskwarm-{fmt}", workers, per_task)
            for _ in range(args.repeat)
        ]
        warm = statistics.median(r["seconds"] for r in runs)
        report(
            [
                ("process pool (mgc extract)", f"{pool['seconds']:.2f}", f"{args.tracks / pool['seconds']:.1f}", ""),
                (
                    f"dask LocalCluster x{workers} (mgc extract --scheduler)",
                    f"{dask['seconds']:.2f}",
                    f"{args.tracks / dask['seconds']:.1f}",
                    f"{dask['seconds'] / pool['seconds'] - 1:+.0%}",
                ),
                (
                    "dask, cluster already running (extract only)",
                    f"{warm:.2f}",
                    f"{args.tracks / warm:.1f}",
                    f"{warm / pool['seconds'] - 1:+.0%}",
                ),
            ],
            (f"executor ({fmt}, wall)", "seconds", "tracks/s", "vs pool"),
        )
    if args.long_minutes > 0:
        short, long = long_track_memory(args.workdir, args.long_minutes)
        report(
            [("30 s", f"{short:.0f}"), (f"{args.long_minutes:g} min", f"{long:.0f}")],
            ("track (44.1 kHz WAV)", "peak MB, mgc extract --workers 1"),
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_per_core":
        sys.path.insert(0, str(ROOT))
        per_core(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_child":
        sys.path.insert(0, str(ROOT))
        child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
