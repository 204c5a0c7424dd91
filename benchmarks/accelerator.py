"""One prepared check of mgc on an accelerator: devices, the train step, the input, end to end, inference.

Usage:
    python benchmarks/accelerator.py [--json-out FILE]     # on a GPU/TPU machine, at most about 8 minutes
    python benchmarks/accelerator.py --smoke               # the same code paths on a CPU in under a minute

Prints one table and writes the figures as JSON (``--json-out``, default
``accelerator.json`` in the working folder):

- the devices JAX found (``mgc devices``'s report);
- the jitted train step alone of the default network on 3 s crops (128 bands),
  float32 and bfloat16, in examples/s and as a share of the device's bfloat16
  dense peak from XLA's FLOP count of the compiled step; compile seconds;
- the input pipeline alone (``TrainStream`` through ``ReaderPool``) with 1, 4, 8
  and 16 reader processes (``--smoke``: 1 and 2), from a generated store;
- training end to end (``models.train``, ``--precision auto``, the most reader
  processes) from that store, examples/s and its ratio to the step alone;
- predict and embed crops/s of the trained network over the store, and musicnn
  patches/s over a store made with musicnn's front end.

Nothing here is a test: the figures go to docs/benchmarks.md with the device named.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Dense bfloat16 peak FLOP/s by device kind (vendor figures, without sparsity).
PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L4": 121e12,
    "L40S": 362e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
}


def peak_of(kind: str) -> float | None:
    for name, flops in PEAK_BF16.items():
        if name.lower() in kind.lower():
            return flops
    return None


def make_store(folder: Path, tracks_per_genre: int, seconds: float, workers: int, preset: str | None = None) -> Path:
    """A generated corpus (``engine.synth``) extracted into a store (default spec, or a preset's)."""
    from mgc import engine
    from mgc.engine.synth import make_corpus

    corpus = folder / "corpus"
    if not corpus.exists():
        make_corpus(corpus, tracks_per_genre=tracks_per_genre, seconds=seconds, seed=0)
    spec = (
        engine.FeatureSpec.from_dict(engine.SPEC_PRESETS[preset])
        if preset
        else engine.FeatureSpec(features=("logmel",))
    )
    store = folder / f"store-{preset or 'default'}"
    engine.extract(corpus, store, spec, workers=workers)
    return store


def time_step(precision: str, batch: int, steps: int, widths) -> dict:
    """The train step alone on a fixed device batch: examples/s, compile s, XLA's FLOPs per example."""
    import jax
    import numpy as np

    from mgc.models.config import ModelConfig, TrainConfig
    from mgc.models.nets.steps import init_state, make_optimizer
    from mgc.models.training.parallel import make_parallel

    model_config = ModelConfig(n_mels=128, n_classes=10, **({"widths": widths} if widths else {}))
    config = TrainConfig(batch_size=batch, precision=precision)
    tx = make_optimizer(config, total_steps=1000)
    runner = make_parallel("jit", model_config, tx, batch_size=batch, precision=precision)
    rng = np.random.default_rng(0)
    host = {
        "x": rng.standard_normal((batch, 130, 128)).astype(np.float32),
        "y": np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)],
    }
    state = runner.put_state(init_state(model_config, tx, seed=0))
    device_batch = runner.put_batch(host)
    lowered = runner._step.lower(state, device_batch)
    started = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - started
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0)) / batch
    state, metrics = runner.step(state, device_batch)
    jax.block_until_ready(metrics)
    started = time.perf_counter()
    for _ in range(steps):
        state, metrics = runner.step(state, device_batch)
    jax.block_until_ready((state, metrics))
    rate = steps * batch / (time.perf_counter() - started)
    return {"examples_per_s": rate, "compile_s": compile_s, "flops_per_example": flops}


def time_pipeline(store: Path, readers: int, batch: int, steps: int) -> float:
    """examples/s of the input pipeline alone with ``readers`` reader processes."""
    import numpy as np

    from mgc.engine import FeatureStore
    from mgc.models.config import TrainConfig
    from mgc.models.data.pipeline import TrainStream, crop_frames_for, fit_normalizer
    from mgc.models.data.readers import ReaderPool

    features = FeatureStore(store)
    rows = np.arange(len(features))
    config = TrainConfig(batch_size=batch, crops_per_track=4)
    normalizer = fit_normalizer(features, rows, seed=0, max_tracks=200)
    crop = crop_frames_for(3.0, features.spec.frames_per_second)
    stream = TrainStream(features, rows, features.tracks.label, len(features.label_names), normalizer, crop, config)
    batches = ReaderPool(stream, readers).batches(0, steps + 2)
    next(batches)  # the readers' start is left out
    next(batches)
    started = time.perf_counter()
    n = sum(1 for _ in batches)
    return n * batch / (time.perf_counter() - started)


def time_training(store: Path, out: Path, readers: int, batch: int, steps: int, widths) -> dict:
    from mgc.models import ModelConfig, TrainConfig, train

    seen = {}

    def progress(event):
        if event.kind == "update":
            seen["examples_per_s"] = event.info["examples_per_s"]

    config = TrainConfig(steps=steps, batch_size=batch, reader_processes=readers, val_fraction=0.02,
                         test_fraction=0.02, precision="auto")  # fmt: skip
    model = ModelConfig.with_widths(widths) if widths else None
    started = time.perf_counter()
    summary = train(store, out, config, model_config=model, progress=progress)
    seen["seconds"] = time.perf_counter() - started
    seen["steps"] = summary["steps"]
    return seen


def time_inference(model_dir: str | Path, store: Path) -> float:
    """Crops (or musicnn patches) per second of a model over every track of ``store``."""
    import numpy as np

    from mgc.engine import FeatureStore
    from mgc.models import load_model

    model = load_model(model_dir)
    features = FeatureStore(store)
    rows = np.arange(len(features))
    list(model.store_results(features, rows[:2]))  # compile
    started = time.perf_counter()
    for _result in model.store_results(features, rows):
        pass
    seconds = time.perf_counter() - started
    n_frames = np.asarray(features.tracks.n_frames)
    crops = np.maximum(1, -(-n_frames // model.crop_frames)).sum()  # eval_crops: ceil(frames / crop) a track
    return float(crops) / seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: the same code paths on a CPU, < 1 minute")
    parser.add_argument("--json-out", default="accelerator.json")
    parser.add_argument("--workdir", default=None, help="where the generated stores go (default: a temp folder)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    from mgc.models.devices import describe

    report = {"smoke": smoke, "devices": describe()}
    devices = report["devices"]
    kind = devices["devices"][0]["kind"]
    peak = peak_of(kind)
    cpus = os.cpu_count() or 1
    batch = 8 if smoke else 512
    widths = "4,8" if smoke else None
    rows = []
    for precision in ("float32", "bfloat16"):
        got = time_step(precision, batch, 3 if smoke else 50, (4, 8) if smoke else None)
        report[f"step_{precision}"] = got
        share = got["examples_per_s"] * got["flops_per_example"] / peak if peak else None
        rows.append((f"train step alone, {precision}", f"{got['examples_per_s']:,.0f}",
                     f"{share:.1%}" if share else "-", f"compile {got['compile_s']:.1f} s"))  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        workers = 1 if smoke else min(cpus, 16)  # smoke: no pool to start
        store = make_store(tmp, 2 if smoke else 60, 4.0 if smoke else 30.0, workers)
        report["extract_s"] = time.perf_counter() - started
        counts = (1, 2) if smoke else tuple(r for r in (1, 4, 8, 16) if r <= cpus)
        pipeline_batch = 8 if smoke else 512
        report["pipeline"] = {}
        for readers in counts:
            rate = time_pipeline(store, readers, pipeline_batch, 4 if smoke else 100)
            report["pipeline"][readers] = rate
            rows.append((f"input pipeline alone, {readers} reader process{'es' if readers > 1 else ''}",
                         f"{rate:,.0f}", "-", f"batch {pipeline_batch}"))  # fmt: skip
        trained = time_training(store, tmp / "model", counts[-1], batch, 6 if smoke else 300, widths)
        report["train"] = trained
        step_alone = report[f"step_{devices['precision']}"]["examples_per_s"]
        rows.append((f"training end to end ({devices['precision']}, {counts[-1]} readers)",
                     f"{trained['examples_per_s']:,.0f}", "-",
                     f"{trained['examples_per_s'] / step_alone:.2f} of the step alone"))  # fmt: skip
        report["predict_crops_per_s"] = time_inference(tmp / "model", store)
        rows.append(("predict / embed (the network over the store)", f"{report['predict_crops_per_s']:,.0f}", "-",
                     "crops/s"))  # fmt: skip
        musicnn_store = make_store(tmp, 2 if smoke else 60, 4.0 if smoke else 30.0, workers, "musicnn")
        report["musicnn_patches_per_s"] = time_inference("musicnn-msd", musicnn_store)
        rows.append(("musicnn-msd over the store", f"{report['musicnn_patches_per_s']:,.0f}", "-", "patches/s"))
    header = ("", "examples/s", "of bf16 peak", "note")
    table = [header] + rows
    widths_ = [max(len(r[i]) for r in table) for i in range(4)]
    where = f"device: {kind} x {len(devices['devices'])} ({devices['backend']}), jax {devices['versions']['jax']}"
    print(f"{where}, {cpus} CPU cores" + (f", bf16 peak {peak / 1e12:,.0f} TFLOP/s" if peak else ""))
    if devices["warning"]:
        print(f"warning: {devices['warning']}")
    for k, row in enumerate(table):
        print("  ".join(c.ljust(w) if i in (0, 3) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths_))))
        if k == 0:
            print("  ".join("-" * w for w in widths_))
    partial = Path(f"{args.json_out}.{os.getpid()}.tmp")  # written whole, then renamed: never half a report
    partial.write_text(json.dumps(report, indent=1, default=str))
    os.replace(partial, args.json_out)
    print(f"figures written to {args.json_out}")


if __name__ == "__main__":
    main()
