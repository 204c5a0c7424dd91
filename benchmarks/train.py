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

from engine.background import background as prefetch  # noqa: E402
from models.config import ModelConfig, TrainConfig  # noqa: E402
from models.data import StoreTracks  # noqa: E402
from models.input_pipeline import TrainStream, crop_frames_for, fit_normalizer  # noqa: E402
from models.parallel import make_parallel  # noqa: E402
from models.steps import init_state, make_optimizer  # noqa: E402


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
    import engine

    corpus, store = folder / "corpus", folder / "store"
    try:
        from engine.synth import make_corpus

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
    args = parser.parse_args()

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
