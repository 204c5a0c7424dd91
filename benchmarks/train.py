"""Training throughput: the step alone, the input pipeline alone, and both together.

Usage:
    python benchmarks/train.py                       # makes a synthetic corpus + store in a temp folder
    python benchmarks/train.py --store STORE         # an existing store (log-mel)
    python benchmarks/train.py --batch-size 32 --steps 10 --repeats 3 --widths 32,64,64,128,128

Prints examples/s of:

- the jitted train step alone on in-memory synthetic batches, on 1 and 2 (faked
  CPU) devices, for ``--parallel jit`` and ``pmap``, with the compile time apart;
- the input pipeline alone (random crops, normalisation, masks, mixup) reading
  the store's tracks (loading the store into memory is timed apart);
- the step fed by the pipeline through the background prefetch thread.

With ``--processes``, the input of a multi-process run: the pipeline alone in 1
process, then in 2 processes at once, each building the part of its own
data-parallel rank and reading only that rank's shards (``--stream-tracks``
ten-second tracks, ``--memory-limit-mb`` per process): examples/s of all and of
each, the log-mel each read, and a paper projection for 8 hosts x 8 GPUs.
With ``--readers``, batches built in this process against 1 and 2 reader
processes (``mgc train --reader-processes``), the store in memory.

With ``--stream`` it measures streaming instead (each row in a fresh process,
peak resident memory from ``ru_maxrss``): a store of ``--stream-tracks``
ten-second tracks (hard links to 8 generated WAV files under 10 labels, log-mel
of 128 bands, built once under ``--workdir``), read by ``TrainStream`` with
``--memory-limit-mb`` far below the store's size, 3 s crops, batch 256: the
pipeline alone (examples/s, time to the first batch, resident memory); then a
tiny network (widths 4,8) trained by ``models.train`` from that store,
streaming, beside the same network fed from memory (the split cached whole);
and the examples/s one H100 would need for the default network, from XLA's
FLOP count of its train step.

Each figure is the median of ``--repeats`` runs of ``--steps`` steps after a
warm-up. The target is pipeline >= 5x step, so training runs at the step's speed.
On one CPU the faked devices share the same cores: 2 devices measure the cost
of the data-parallel machinery, not a speed-up.
"""

from __future__ import annotations

import os

# Two faked CPU devices; must be set before JAX initialises.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from mgc.engine.background import background as prefetch  # noqa: E402
from mgc.models.config import ModelConfig, TrainConfig  # noqa: E402
from mgc.models.data.pipeline import TrainStream, crop_frames_for, fit_normalizer  # noqa: E402
from mgc.models.data.stores import StoreTracks  # noqa: E402
from mgc.models.nets.steps import init_state, make_optimizer  # noqa: E402
from mgc.models.training.parallel import make_parallel  # noqa: E402


def write_tones(corpus: Path, tracks_per_genre: int, seconds: float, sr: int = 22050) -> None:
    """Fallback corpus: 6 classes of harmonic tones with tremolo and noise."""
    import soundfile as sf

    for g, f0 in enumerate((110.0, 165.0, 220.0, 330.0, 440.0, 660.0)):
        (corpus / f"class{g}").mkdir(parents=True, exist_ok=True)
        for i in range(tracks_per_genre):
            r = np.random.default_rng(1000 * g + i)
            t = np.arange(int(sr * seconds)) / sr
            y = sum(r.uniform(0.1, 0.5) / h * np.sin(2 * np.pi * f0 * h * t) for h in range(1, 6))
            y = y * (0.6 + 0.4 * np.sin(2 * np.pi * r.uniform(0.5, 4) * t)) + 0.05 * r.standard_normal(t.size)
            sf.write(corpus / f"class{g}" / f"class{g}.{i:05d}.wav", (0.5 * y / np.abs(y).max()).astype(np.float32), sr)


def make_store(folder: Path, tracks_per_genre: int, seconds: float) -> Path:
    """A synthetic corpus (engine.synth, else tones) extracted with the default spec, log-mel only."""
    from mgc import engine

    corpus, store = folder / "corpus", folder / "store"
    try:
        from mgc.engine.synth import make_corpus

        make_corpus(corpus, tracks_per_genre=tracks_per_genre, seconds=seconds, seed=0)
    except Exception as error:  # the generator is optional here; any audio will do for timing
        print(f"engine.synth unavailable ({type(error).__name__}: {error}); using generated tones")
        import shutil

        shutil.rmtree(corpus, ignore_errors=True)
        write_tones(corpus, tracks_per_genre, seconds)
    engine.extract(corpus, store, engine.FeatureSpec(features=("logmel",)))
    return store


def time_steps(kind, n_devices, model_config, config, batch, steps, repeats):
    """(compile seconds, median examples/s) of the step alone on a fixed batch."""
    tx = make_optimizer(config, total_steps=1000)
    runner = make_parallel(kind, model_config, tx, devices=jax.devices()[:n_devices], batch_size=len(batch["x"]))
    state = runner.put_state(init_state(model_config, tx, seed=0))
    device_batch = runner.put_batch(batch)
    start = time.perf_counter()
    state, metrics = runner.step(state, device_batch)
    jax.block_until_ready(metrics)
    compile_seconds = time.perf_counter() - start
    # One more untimed step: the first call's inputs were laid out by put_state, later ones by the step itself.
    state, metrics = runner.step(state, runner.put_batch(batch))
    jax.block_until_ready(metrics)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            state, metrics = runner.step(state, runner.put_batch(batch))
        jax.block_until_ready((state, metrics))
        rates.append(steps * len(batch["x"]) / (time.perf_counter() - start))
    return compile_seconds, statistics.median(rates), runner, state


def time_pipeline(loader, steps, repeats):
    rates = []
    for r in range(repeats):
        start = time.perf_counter()
        for _ in loader.batches(r * steps, (r + 1) * steps):
            pass
        rates.append(steps * loader.batch_size / (time.perf_counter() - start))
    return statistics.median(rates)


def time_both(runner, state, loader, steps, repeats, prefetch_size):
    rates = []
    for r in range(repeats):
        stream = prefetch(loader.batches(r * steps, (r + 1) * steps), prefetch_size)
        time.sleep(0.5)  # let the producer fill the queue, as it does during the previous steps of a run
        start = time.perf_counter()
        for _, batch in stream:
            state, metrics = runner.step(state, runner.put_batch(batch))
        jax.block_until_ready((state, metrics))
        rates.append(steps * loader.batch_size / (time.perf_counter() - start))
        stream.close()
    return statistics.median(rates)


_PIPELINE_PROBE = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
started = time.perf_counter()
import numpy as np
from mgc.engine import FeatureStore
from mgc.models.config import TrainConfig
from mgc.models.data.pipeline import TrainStream, crop_frames_for, fit_normalizer
store = FeatureStore({store!r})
rows = np.arange(len(store))
config = TrainConfig(batch_size={batch}, memory_limit_mb={memory}, crops_per_track={crops})
normalizer = fit_normalizer(store, rows, seed=0)
crop = crop_frames_for(3.0, store.spec.frames_per_second)
stream = TrainStream(store, rows, store.tracks.label, len(store.label_names), normalizer, crop, config)
batches = stream.batches(0, {steps})
next(batches)
first = time.perf_counter() - started
begin = time.perf_counter()
n = sum(1 for _ in batches)
rate = n * {batch} / (time.perf_counter() - begin)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"first_batch_s": first, "examples_per_s": rate, "rss_mb": rss, "cached": stream.cached,
                  "window_mb": stream.window_bytes / 2**20, "store_mb": int(stream.track_bytes.sum()) / 2**20}}))
"""

_TRAIN_PROBE = """
import json, resource, sys, tempfile, time
sys.path.insert(0, {root!r})
started = time.perf_counter()
from mgc.models import ModelConfig, TrainConfig, train
events = {{}}
def progress(event):
    if event.kind == "update":
        events.setdefault("first_step_s", time.perf_counter() - started)
        events["examples_per_s"] = event.info["examples_per_s"]
config = TrainConfig(steps={steps}, batch_size={batch}, memory_limit_mb={memory}, val_fraction=0.005,
                     test_fraction=0.005)
with tempfile.TemporaryDirectory() as out:
    train({store!r}, out + "/model", config, model_config=ModelConfig(widths=(4, 8), dense=16), progress=progress)
events["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(events))
"""


def _probe(code: str) -> dict:
    import json
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(header: tuple, rows: list, left=(0,)) -> None:
    """Print ``rows`` of strings under ``header``, aligned: the ``left`` columns to the left, the rest right."""
    table = [header] + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for k, row in enumerate(table):
        print("  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


def build_stream_store(workdir: Path, n_tracks: int) -> Path:
    """A store of ``n_tracks`` ten-second tracks (hard links to 8 WAV files), log-mel only; reused."""
    import json
    import shutil

    from mgc import engine
    from tests.engine.conftest import write_audio

    store, marker = workdir / "store", workdir / f"built-{n_tracks}.json"
    if marker.exists():
        return store
    shutil.rmtree(workdir, ignore_errors=True)
    sources = [write_audio(workdir / "sources" / f"s{k}.wav", 10.0, seed=k) for k in range(max(8, n_tracks // 50_000))]
    for i in range(n_tracks):
        folder = workdir / "corpus" / f"genre{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        os.link(sources[i % len(sources)], folder / f"t{i:07d}.wav")
    started = time.perf_counter()
    engine.extract(workdir / "corpus", store, engine.FeatureSpec(features=("logmel",)))
    marker.write_text(json.dumps({"extract_s": time.perf_counter() - started}))
    return store


def default_network_flops(n_mels: int = 128, crop: int = 130, batch: int = 256) -> float:
    """FLOPs per example of one train step of the default network (XLA's count of the compiled step)."""
    import functools

    from mgc.models.nets.steps import make_graphdef, train_step

    model_config = ModelConfig(n_mels=n_mels, n_classes=10)
    tx = make_optimizer(TrainConfig(), total_steps=1000)
    state = init_state(model_config, tx, seed=0)
    batch_arrays = {"x": np.zeros((batch, crop, n_mels), np.float32), "y": np.zeros((batch, 10), np.float32)}
    step = jax.jit(functools.partial(train_step, graphdef=make_graphdef(model_config), tx=tx))
    cost = step.lower(state, batch_arrays).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]) / batch


def run_streaming(args) -> None:
    root = str(Path(__file__).resolve().parents[1])
    store = build_stream_store(Path(args.workdir), args.stream_tracks)
    common = dict(root=root, store=str(store), batch=256)
    rows = []
    for name, memory, crops in (
        (f"pipeline alone, streaming ({args.memory_limit_mb:g} MB)", args.memory_limit_mb, 1),
        (f"pipeline alone, streaming, 4 crops per track ({args.memory_limit_mb:g} MB)", args.memory_limit_mb, 4),
    ):
        got = _probe(_PIPELINE_PROBE.format(**common, memory=memory, crops=crops, steps=args.stream_steps))
        rows.append((name, f"{got['examples_per_s']:,.0f}", f"{got['first_batch_s']:.1f}", f"{got['rss_mb']:,.0f}"))
        store_mb = got["store_mb"]
    trained = {}
    for name, memory in (
        ("tiny network (4,8), streaming", args.memory_limit_mb),
        ("tiny network (4,8), from memory", 1e6),
    ):
        got = _probe(_TRAIN_PROBE.format(**common, memory=memory, steps=args.train_steps))
        trained[name] = got
        rows.append((name, f"{got['examples_per_s']:,.0f}", f"{got['first_step_s']:.1f}", f"{got['rss_mb']:,.0f}"))
    print(
        f"store: {args.stream_tracks} tracks x 10 s, {store_mb:,.0f} MB of float16 log-mel (128 bands); "
        f"3 s crops, batch 256; page cache warm"
    )
    print_table(("", "examples/s", "first batch or step, s", "peak RSS MB"), rows)
    names = list(trained)
    ratio = trained[names[0]]["examples_per_s"] / trained[names[1]]["examples_per_s"]
    print(f"streaming / from memory, end to end: {ratio:.2f}")
    flops = default_network_flops()
    h100 = 0.4 * 989e12 / flops
    per_core = float(rows[0][1].replace(",", ""))
    print(
        f"default network: {flops / 1e9:.2f} GFLOP per example per train step (XLA's count); one H100 (989 TFLOP/s "
        f"bf16 dense) at 40% utilisation would take {h100:,.0f} examples/s, which needs {h100 / per_core:.1f} "
        f"pipeline threads at this machine's {per_core:,.0f} examples/s each"
    )


_RANK_PROBE = """
import json, sys, time
sys.path.insert(0, {root!r})
import numpy as np
from mgc.engine import FeatureStore
from mgc.models.config import TrainConfig
from mgc.models.data.pipeline import TrainStream, crop_frames_for, fit_normalizer
store = FeatureStore({store!r})
rows = np.arange(len(store))
config = TrainConfig(batch_size={batch}, memory_limit_mb={memory}, crops_per_track=1)
normalizer = fit_normalizer(store, rows, seed=0, max_tracks=200)
crop = crop_frames_for(3.0, store.spec.frames_per_second)
stream = TrainStream(store, rows, store.tracks.label, len(store.label_names), normalizer, crop, config,
                     ranks={ranks}, local_ranks={local})
read = [0]
reader = stream._read_window
def counted(positions, rank=0):  # bytes of log-mel this process reads from the store
    again = rank in stream._cache
    data, first = reader(positions, rank)
    read[0] += 0 if again else data.nbytes
    return data, first
stream._read_window = counted
batches = stream.batches(0, {steps})
next(batches)
begin, cpu = time.time(), time.process_time()
n = sum(1 for _ in batches)
end, cpu = time.time(), time.process_time() - cpu
print(json.dumps({{"begin": begin, "end": end, "examples": n * stream.rank_batch * len(stream.local_ranks),
                  "bytes_read": read[0], "store_bytes": int(stream.track_bytes.sum()), "cpu_s": cpu}}))
"""


def run_processes(args) -> None:
    """The input pipeline of 1 process and of 2 processes (one data-parallel rank each), side by side."""
    import json
    import subprocess

    root = str(Path(__file__).resolve().parents[1])
    store = build_stream_store(Path(args.workdir), args.stream_tracks)
    rows, per_process = [], None
    for n in (1, 2):
        probes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _RANK_PROBE.format(
                        root=root,
                        store=str(store),
                        batch=256,
                        memory=args.memory_limit_mb,
                        ranks=n,
                        local=[p],
                        steps=args.stream_steps,
                    ),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for p in range(n)
        ]
        got = []
        for probe in probes:
            out, err = probe.communicate()
            if probe.returncode:
                raise SystemExit(err[-3000:])
            got.append(json.loads(out.strip().splitlines()[-1]))
        wall = max(g["end"] for g in got) - min(g["begin"] for g in got)
        total = sum(g["examples"] for g in got) / wall
        store_mb = got[0]["store_bytes"] / 2**20
        read = sum(g["bytes_read"] for g in got)
        shares = ", ".join(f"{g['bytes_read'] / 2**20:,.0f} MB ({g['bytes_read'] / read:.0%})" for g in got)
        cores = sum(g["cpu_s"] for g in got) / wall
        rows.append(
            (f"{n} process{'es' if n > 1 else ''}", f"{total:,.0f}", f"{total / n:,.0f}", f"{cores:.1f}", shares)
        )
        if n == 1:
            per_process = total
    print(
        f"input pipeline alone: store of {args.stream_tracks} tracks x 10 s ({store_mb:,.0f} MB of float16 log-mel), "
        f"batch 256 (global), 3 s crops, --memory-limit-mb {args.memory_limit_mb:g} per process, "
        f"{args.stream_steps} steps, {os.cpu_count()} cores"
    )
    header = ("", "examples/s, all", "per process", "cores busy", "log-mel each process read (share of all read)")
    print_table(header, rows, left=(0, 4))
    flops = default_network_flops()
    gpu = 0.4 * 989e12 / flops
    print(
        f"projection, 8 hosts x 8 H100: the default network takes {flops / 1e9:.2f} GFLOP per example per step (XLA); "
        f"at 40% of 989 TFLOP/s a GPU consumes {gpu:,.0f} examples/s, a host {8 * gpu:,.0f}: "
        f"{8 * gpu / per_process:,.0f} pipeline processes per host at this machine's {per_process:,.0f} examples/s "
        f"each; each host reads 1/8 of the store per pass; 64 GPUs make "
        f"{64 * gpu:,.0f} examples/s, a pass over 1,000,000 tracks (one crop each) in {1e6 / (64 * gpu):.2f} s"
    )


def run_readers(args) -> None:
    """The input pipeline alone: batches built in this process, and by 1 and 2 reader processes."""
    from mgc.models.data.readers import ReaderPool

    with tempfile.TemporaryDirectory() as tmp:
        store_path = args.store or make_store(Path(tmp), args.tracks_per_genre, args.seconds)
        tracks = StoreTracks.of(store_path)
        rows = np.flatnonzero(tracks.columns["label"] >= 0)
        config = TrainConfig(batch_size=256, crops_per_track=8)
        normalizer = fit_normalizer(tracks.store, rows, seed=0)
        crop = crop_frames_for(3.0, tracks.store.spec.frames_per_second)
        labels = tracks.columns["label"][rows]
        stream = TrainStream(tracks.store, rows, labels, len(tracks.store.label_names), normalizer, crop, config)

        def rate(source) -> float:
            batches = source.batches(0, args.stream_steps + 3)
            for _ in range(3):  # the readers' start and the store's first read are left out
                next(batches)
            started = time.perf_counter()
            n = sum(1 for _ in batches)
            return n * 256 / (time.perf_counter() - started)

        one = rate(stream)
        rows_out = [("batches built in this process (a thread)", f"{one:,.0f}", "1.00")]
        for readers in (1, 2):
            got = rate(ReaderPool(stream, readers))
            rows_out.append(
                (f"{readers} reader process{'es' if readers > 1 else ''}", f"{got:,.0f}", f"{got / one:.2f}")
            )
        print(
            f"input pipeline alone: {len(rows)} tracks in memory, batch 256, 3 s crops of {tracks.store.spec.n_mels} "
            f"bands, {args.stream_steps} batches, {os.cpu_count()} cores"
        )
        print_table(("", "examples/s", "vs this process"), rows_out)


def report(rows):
    """Print aligned rows of (what, devices, compile s, examples/s, note)."""
    header = ("measurement", "devices", "compile s", "examples/s", "note")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]

    def line(r):
        return "  ".join(str(v).ljust(w) if i in (0, 4) else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths)))

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crop-seconds", type=float, default=3.0)
    parser.add_argument("--widths", default="32,64,64,128,128")
    parser.add_argument("--tracks-per-genre", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--stream", action="store_true", help="measure streaming from a large store instead")
    parser.add_argument("--stream-tracks", type=int, default=20_000)
    parser.add_argument("--stream-steps", type=int, default=200, help="batches of the pipeline-alone rows")
    parser.add_argument("--train-steps", type=int, default=60, help="steps of the end-to-end rows")
    parser.add_argument("--memory-limit-mb", type=float, default=256.0)
    parser.add_argument("--workdir", default="/tmp/mgc-train-stream")
    parser.add_argument(
        "--processes", action="store_true", help="the input of 1 and 2 processes, each reading its ranks' shards"
    )
    parser.add_argument("--readers", action="store_true", help="the input built by 0, 1 and 2 reader processes")
    args = parser.parse_args()
    if args.stream:
        run_streaming(args)
        return
    if args.processes:
        run_processes(args)
        return
    if args.readers:
        run_readers(args)
        return

    with tempfile.TemporaryDirectory() as tmp:
        store_path = args.store
        if store_path is None:
            start = time.perf_counter()
            store_path = make_store(Path(tmp), args.tracks_per_genre, args.seconds)
            print(f"made a synthetic store in {time.perf_counter() - start:.1f} s: {store_path}")
        tracks = StoreTracks.of(store_path)
        spec = tracks.store.spec
        config = TrainConfig(batch_size=args.batch_size, crop_seconds=args.crop_seconds)
        model_config = ModelConfig(
            n_mels=spec.n_mels,
            n_classes=len(tracks.store.label_names),
            widths=tuple(int(w) for w in args.widths.split(",")),
        )
        crop = crop_frames_for(args.crop_seconds, spec.frames_per_second)
        print(
            f"{len(tracks.columns['track_id'])} tracks, {spec.n_mels} bands, crops of {crop} frames, "
            f"batch {args.batch_size}, widths {model_config.widths}, {os.cpu_count()} CPU cores, "
            f"{jax.device_count()} devices"
        )

        rows = []
        labeled = np.flatnonzero(tracks.columns["label"] >= 0)
        start = time.perf_counter()
        normalizer = fit_normalizer(tracks.store, labeled, seed=0)
        loader = TrainStream(
            tracks.store, labeled, tracks.columns["label"][labeled], model_config.n_classes, normalizer, crop, config
        )
        loader.batch(0)  # the store is read into memory (it fits) on the first batch
        load_seconds = time.perf_counter() - start
        pipeline_rate = time_pipeline(loader, args.steps, args.repeats)
        rows.append(
            (
                "pipeline alone",
                "-",
                "-",
                f"{pipeline_rate:,.0f}",
                f"normaliser + store read into memory in {load_seconds:.2f} s",
            )
        )

        rng = np.random.default_rng(0)
        batch = {
            "x": rng.standard_normal((args.batch_size, crop, spec.n_mels)).astype(np.float32),
            "y": np.eye(model_config.n_classes, dtype=np.float32)[
                rng.integers(0, model_config.n_classes, args.batch_size)
            ],
        }
        step_rates = {}
        for kind, n in (("jit", 1), ("jit", 2), ("pmap", 2)):
            compile_s, rate, runner, state = time_steps(kind, n, model_config, config, batch, args.steps, args.repeats)
            step_rates[(kind, n)] = rate
            rows.append(
                (
                    f"step alone ({kind})",
                    n,
                    f"{compile_s:.2f}",
                    f"{rate:,.0f}",
                    f"pipeline / step = {pipeline_rate / rate:.1f}x",
                )
            )
            both = time_both(runner, state, loader, args.steps, args.repeats, config.prefetch)
            rows.append((f"step + pipeline ({kind})", n, "-", f"{both:,.0f}", f"{both / rate:.2f} of the step alone"))
        print()
        report(rows)


if __name__ == "__main__":
    main()
