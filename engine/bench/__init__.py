"""``mgc bench``: feature throughput on a corpus and this machine, against every peer installed.

:func:`bench` measures, on a sample of a corpus (default: a generated one of real-length
tracks in several formats), each figure as tracks/s, hours of audio per second and times
real time, per core and for the whole machine:

- ``decode``: decoding alone, per format present, and resampling alone (soxr HQ to 22050 Hz);
- ``kernels``: mgc's power spectrogram, log-mel and MFCC of one clip;
- ``peers``: the same log-mel and MFCC through every peer installed, with its largest
  difference from librosa's numbers (``parity``);
- ``limits``: the float32 real FFTs installed for the same frames, mgc's own STFT, and a copy
  of the power spectrogram (memory bandwidth), so that each figure reads as a fraction of
  what the machine allows;
- ``extract``: ``extract`` end to end into a temporary store, at each worker count.

How it times (:mod:`.timing`): every single-thread measurement runs in a fresh process of
one thread (:mod:`.child`), warm-up apart (``first_seconds``: import, compilation, cache
loads), then ``repeat`` rounds in shuffled orders, the median kept. ``extract`` runs once per
worker count after a warm-up run, its process pool's start included (what a user waits for).
Per-core figures of single-thread rows times the cores give the machine column (a
projection, marked so); ``extract`` rows are measured on the whole machine.

The result (:func:`bench`'s dict, ``mgc bench --json``) is described in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..corpus import Corpus, Track, load_corpus
from ..errors import EngineError
from ..progress import ProgressCallback
from ..progress import Reporter as ProgressReporter
from .machine import describe, usable_cores
from .peers import PARAMS, PEERS
from .plot import check_plot_path, plot
from .timing import single_thread_environment

__all__ = [
    "DEFAULT_FORMATS",
    "FORMAT",
    "PEERS",
    "bench",
    "check_plot_path",
    "parse_peers",
    "parse_workers",
    "plot",
    "rates",
    "usable_cores",
]

#: The ``format`` of :func:`bench`'s result, and its version.
FORMAT, VERSION = "mgc-bench", 1
#: Formats of the generated corpus.
DEFAULT_FORMATS = ("wav", "flac", "mp3", "ogg", "m4a")


def parse_workers(text: str | None, cores: int) -> list[int]:
    """``"1,2,N"`` (N: every core) as sorted distinct counts; default ``1`` and every core.

    Raises
    ------
    EngineError
        For anything that is not a comma-separated list of positive counts or ``N``.
    """
    if not text:
        return sorted({1, cores})
    counts = set()
    for part in str(text).split(","):
        part = part.strip()
        if part.upper() == "N":
            counts.add(cores)
        elif part.isdigit() and int(part) > 0:
            counts.add(int(part))
        else:
            raise EngineError(f"--workers takes counts such as 1,2,N (N: all {cores} cores), got {text!r}")
    return sorted(counts)


def parse_peers(text: str | None) -> list[str]:
    """``"all"`` (the default) or a comma-separated list of :data:`PEERS` names; mgc is always first.

    Raises
    ------
    EngineError
        For a name that is not a known peer.
    """
    if not text or text.strip().lower() == "all":
        return list(PEERS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = {name.lower(): name for name in PEERS}
    unknown = [name for name in names if name.lower() not in known]
    if unknown:
        raise EngineError(f"unknown peer {', '.join(unknown)}: choose from {', '.join(PEERS)} or all")
    return ["mgc", *dict.fromkeys(known[name.lower()] for name in names if name.lower() != "mgc")]


def rates(row: dict, cores: int) -> dict:
    """Per-core and whole-machine rates of a row: tracks/s, audio hours/s, times real time.

    A single-thread row's machine figures are its per-core ones times ``cores`` (``projected``);
    an ``extract`` row is measured on the machine, its per-core figures per CPU second where its
    ``cpu_seconds`` were measured, else per worker process.
    """
    seconds = row.get("seconds")
    if not seconds:
        return {}
    tracks, audio = row.get("tracks", 1), row.get("audio_seconds", 0.0)
    measured = {
        "tracks_per_s": tracks / seconds,
        "audio_hours_per_s": audio / 3600 / seconds,
        "x_realtime": audio / seconds,
    }
    workers = row.get("workers")
    if workers:
        # Per core: per CPU second where it was measured (a worker also decodes on a thread of its own),
        # else per worker process.
        share = row["cpu_seconds"] / seconds if row.get("cpu_seconds") else workers
        return {"per_core": {k: v / share for k, v in measured.items()}, "machine": measured, "projected": False}
    return {"per_core": measured, "machine": {k: v * cores for k, v in measured.items()}, "projected": True}


def _generated_corpus(folder: Path, tracks: int, formats: Sequence[str], report) -> list[Track]:
    """``tracks`` real-length (30 s, 44.1 kHz stereo) music-like tracks spread over ``formats`` (made once)."""
    from ..synth import GENRES, make_corpus

    per_format = max(1, -(-tracks // len(formats)))
    genres = list(GENRES[: min(per_format, len(GENRES))])
    settings = dict(tracks_per_genre=-(-per_format // len(genres)), seconds=30.0, sr=44100, channels=2, genres=genres)
    found = []
    for fmt in formats:
        report("stage", message=f"{per_format} tracks of 30 s in {fmt} (made once, kept in {folder})", stage="corpus")
        if fmt == "m4a":
            make_corpus(folder / "wav-44k", format="wav", **settings)
            paths = _encode_aac(sorted((folder / "wav-44k").rglob("*.wav"))[:per_format], folder / fmt)
        else:
            make_corpus(folder / fmt, format=fmt, **settings)
            paths = sorted((folder / fmt).rglob(f"*.{fmt}"))[:per_format]
        found += [Track(track_id=f"{fmt}/{p.parent.name}/{p.name}", path=str(p), label=fmt) for p in paths]
    return found


def _encode_aac(sources: list[Path], out: Path) -> list[Path]:
    """AAC in M4A of each WAV (PyAV's FFmpeg), kept when already made."""
    import av
    import soundfile as sf

    out.mkdir(parents=True, exist_ok=True)
    made = []
    for source in sources:
        target = out / (source.stem + ".m4a")
        if not target.exists() or target.stat().st_mtime_ns < source.stat().st_mtime_ns:  # made from this WAV
            y, sr = sf.read(source, dtype="float32", always_2d=True)
            partial = target.with_suffix(".part.m4a")
            with av.open(str(partial), "w") as container:
                stream = container.add_stream("aac", rate=sr, layout="stereo")
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y.T), format="fltp", layout="stereo")
                frame.sample_rate = sr
                for packet in stream.encode(frame):
                    container.mux(packet)
                for packet in stream.encode(None):
                    container.mux(packet)
            partial.replace(target)
        made.append(target)
    return made


def _sample(corpus, tracks: int) -> list[Track]:
    """``tracks`` tracks spread evenly over the corpus (the first, the last and between)."""
    listed = list(corpus)
    if len(listed) <= tracks:
        return listed
    return [listed[i] for i in np.linspace(0, len(listed) - 1, tracks).round().astype(int)]


def _child(request: dict, timeout: float = 1800) -> list[dict]:
    """Run one request of :mod:`.child` in a fresh process of one thread."""
    env = single_thread_environment()
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mgc.engine.bench.child"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise EngineError(f"a benchmark process ran past {timeout:g} s; try fewer --tracks or --repeat") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise EngineError(f"a benchmark process failed: {lines[-1] if lines else f'exit code {done.returncode}'}")
    return json.loads(done.stdout)


def _extract_rows(tracks: list[Track], workers: list[int], workdir: Path, report) -> list[dict]:
    """``extract`` of ``tracks`` at each worker count: as a user runs it (pool start included) and on a started pool."""
    from ..extract import extract
    from ..workers import make_pool, one_thread_environment

    def corpus(items) -> Corpus:
        return Corpus(root=str(workdir), tracks=tuple(items), kind="plain")

    def cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def row(name, count, seconds, result, started_pool, cpu_seconds=None):
        return {
            "section": "extract",
            "name": name,
            "workers": count,
            "started_pool": started_pool,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "first_seconds": None,
            "tracks": result.stored_tracks,
            "audio_seconds": result.audio_seconds,
            "error": f"{result.failed_tracks} tracks failed" if result.failed_tracks else None,
        }

    rows = []
    extract(corpus(tracks[:1]), workdir / "warm-store", workers=1)  # compiled kernels loaded, caches warm
    for count in workers:
        plural = "s" * (count > 1)
        report("stage", message=f"extract of {len(tracks)} tracks with {count} worker{plural}", stage="extract")
        started, spent = time.perf_counter(), cpu()
        result = extract(corpus(tracks), workdir / f"store-{count}", workers=count)  # its pool ends with it
        seconds, spent = time.perf_counter() - started, cpu() - spent
        rows.append(row(f"{count} worker{plural}", count, seconds, result, False, spent))
        if count == 1:
            continue
        with one_thread_environment():
            pool = make_pool(count)
        try:
            list(pool.map(time.sleep, [0.2] * count))  # every worker process started
            extract(corpus(tracks[:count]), workdir / f"warm-{count}", executor=pool)  # and warm
            started = time.perf_counter()
            result = extract(corpus(tracks), workdir / f"pooled-{count}", executor=pool)
            rows.append(row(f"{count} workers, started", count, time.perf_counter() - started, result, True))
        finally:
            pool.shutdown()
    return rows


def bench(
    corpus=None,
    *,
    workers: Sequence[int] | None = None,
    peers: Sequence[str] | None = None,
    tracks: int = 10,
    repeat: int = 5,
    formats: Sequence[str] = DEFAULT_FORMATS,
    workdir: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> dict:
    """Measure feature throughput on ``corpus`` (see the module's docstring).

    Parameters
    ----------
    corpus : str or Path, optional
        A folder or manifest (as ``mgc extract`` takes); ``tracks`` of its tracks, spread evenly,
        are measured. Default: a generated corpus of 30 s tracks in ``formats`` (kept in
        ``workdir`` and reused).
    workers : sequence of int, optional
        Worker counts for ``extract`` (default: 1 and every core).
    peers : sequence of str, optional
        :data:`PEERS` names (default: all; mgc is always measured).
    tracks : int
        Tracks of the sample (of the generated corpus: spread over the formats).
    repeat : int
        Timed rounds of each single-thread figure (the median is kept).
    workdir : str or Path, optional
        Where the generated corpus is kept (default: ``mgc-bench`` in the temporary folder).
        Stores are made in a temporary folder inside it and removed.
    progress : callable, optional
        Receives ``stage`` events of task ``"bench"``.

    Returns
    -------
    dict
        ``format`` ("mgc-bench"), ``version``, ``machine`` (see :func:`.machine.describe`), ``corpus``
        (``path``, ``tracks``, ``formats``: count per format, ``audio_seconds``), ``params`` (the
        feature parameters), ``repeat``, ``rows`` (each: ``section``, ``name``, ``seconds`` (median),
        ``first_seconds``, ``tracks``, ``audio_seconds``, ``error``; ``per_core``/``machine`` rates
        and ``projected``; peers: ``parity``, ``setup_seconds``; limits: ``frames`` or ``bytes``; extract:
        ``workers``, ``started_pool``, ``cpu_seconds``) and ``seconds`` (the whole run).
    """
    started = time.perf_counter()
    report = ProgressReporter(progress, "bench")
    cores = usable_cores()
    counts = list(workers) if workers else parse_workers(None, cores)
    names = list(peers) if peers else list(PEERS)
    if "mgc" not in names:
        names.insert(0, "mgc")
    if tracks < 1:
        raise EngineError(f"--tracks must be at least 1, got {tracks}")
    base = Path(workdir) if workdir else Path(tempfile.gettempdir()) / "mgc-bench"
    base.mkdir(parents=True, exist_ok=True)
    if corpus is None:
        from ..synth import GENERATOR_VERSION

        folder = base / f"corpus-g{GENERATOR_VERSION}"  # another generator makes another corpus, beside it
        sample = _generated_corpus(folder, tracks, formats, report)
        source = str(folder)
    else:
        sample = _sample(load_corpus(corpus, labels_required=False), tracks)
        source = str(corpus)
    if not sample:
        raise EngineError(f"{source} holds no audio file to measure")
    by_format: dict[str, list[str]] = {}
    for track in sample:
        by_format.setdefault(Path(track.path).suffix.lstrip(".").lower() or "?", []).append(track.path)
    rows: list[dict] = []
    report("stage", message=f"decoding and resampling {len(sample)} tracks, one thread", stage="decode")
    rows += _child({"section": "decode", "files": by_format, "sr": PARAMS["sr"], "repeat": max(1, min(repeat, 3))})
    with tempfile.TemporaryDirectory(dir=base) as scratch:
        scratch = Path(scratch)
        from ..ffmpeg import open_audio

        first = np.concatenate(list(open_audio(sample[0].path, PARAMS["sr"], duration=30.0).blocks()))
        np.save(scratch / "clip.npy", first.astype(np.float32))
        report(
            "stage",
            message=f"kernels, {len(names) - 1} peers and FFTs on {first.size / PARAMS['sr']:.0f} s, one thread",
            stage="kernels",
        )
        rows += _child({"section": "clip", "clip": str(scratch / "clip.npy"), "peers": names, "repeat": repeat})
        rows += _extract_rows(sample, counts, scratch, report)
    for row in rows:
        row.update(rates(row, cores))
    audio = sum(r.get("audio_seconds", 0) for r in rows if r["section"] == "decode" and r["name"].startswith("decode"))
    return {
        "format": FORMAT,
        "version": VERSION,
        "machine": describe(),
        "corpus": {
            "path": source,
            "generated": corpus is None,
            "tracks": len(sample),
            "formats": {fmt: len(paths) for fmt, paths in by_format.items()},
            "audio_seconds": audio,
        },
        "params": dict(PARAMS),
        "repeat": repeat,
        "rows": rows,
        "seconds": time.perf_counter() - started,
    }
