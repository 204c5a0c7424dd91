"""The three model kinds on small labelled sets: the CNN from scratch, the stats model, a musicnn head.

Usage:
    python benchmarks/model_kinds.py [--sizes 5,10,20,50] [--seeds 0,1] [--out /tmp/mgc-model-kinds]
    python benchmarks/model_kinds.py --fit-scale 1000000 [--head mlp]   # a head's fit alone on a million vectors

For each size and seed, ``mgc demo --quick``'s path makes a generated corpus of
10 genres x SIZE tracks of 4 s, extracts it (default spec: log-mel and MFCC)
and trains the quick CNN (8 epochs, 8 crops per track); on the same store and
the same split (same seed) it then trains ``--model stats`` and ``--backbone
musicnn-msd`` (vectors computed from each track's audio; the time includes
computing them). Each model is evaluated on the held-out test tracks and
predicts the whole store once (``predict(store=...)``, tracks/s). Prints mean
test accuracy, training seconds and prediction rate per size and kind.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

#: Kind -> train_head's arguments (None: the CNN of the quick demo).
KINDS = {
    "cnn": None,
    "stats": {"featurizer": "stats"},
    "stats mlp": {"featurizer": "stats", "head": "mlp"},
    "musicnn-msd": {"featurizer": "musicnn-msd"},
    "musicnn-msd mlp": {"featurizer": "musicnn-msd", "head": "mlp"},
    "musicnn-msd fine-tuned": {"featurizer": "musicnn-msd", "fine_tune_epochs": 5},
}


def run(out: Path, size: int, seed: int) -> dict:
    from mgc.engine import FeatureStore
    from mgc.models import evaluate, predict
    from mgc.models.tasks.demo import DemoConfig, run_demo
    from mgc.models.training.heads import train_head

    folder = out / f"n{size}-s{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    config = DemoConfig.quick(tracks_per_genre=size, seed=seed)
    started = time.perf_counter()
    report = run_demo(folder, config)
    cnn_seconds = time.perf_counter() - started  # includes synthesis and extraction
    store = folder / "store"
    n = len(FeatureStore(store))
    results = {}
    for kind, arguments in KINDS.items():
        model = folder / "model" if kind == "cnn" else folder / kind.replace(" ", "-")
        seconds = cnn_seconds
        if arguments is not None:
            started = time.perf_counter()
            train_head(store, model, seed=seed, **arguments)
            seconds = time.perf_counter() - started
        accuracy = report.test_accuracy if kind == "cnn" else evaluate(model, store, split="test")["accuracy"]
        started = time.perf_counter()
        predict(model, store=store)
        results[kind] = {"accuracy": accuracy, "seconds": seconds, "predict_rate": n / (time.perf_counter() - started)}
    return results


def fit_at_scale(n: int, head: str = "linear", dim: int = 336, classes: int = 10) -> None:
    """A head's fit alone on ``n`` clustered vectors of ``dim`` (the stats model's size): seconds and memory."""
    import resource

    import numpy as np

    from mgc.models.nets.heads import head_logits
    from mgc.models.training.fit import fit_linear, fit_mlp

    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, n)
    centres = rng.standard_normal((classes, dim)).astype(np.float32) * 0.3
    x = centres[labels] + rng.standard_normal((n, dim), dtype=np.float32)
    x = (x - x.mean(0)) / x.std(0)
    valid = rng.random(n) < 0.1
    started = time.perf_counter()
    if head == "linear":
        w, b, iterations = fit_linear(x[~valid], labels[~valid], classes, 1.0, 500)
        params, unit = {"weights": w, "bias": b}, "L-BFGS iterations"
    else:
        params, iterations = fit_mlp(x[~valid], labels[~valid], classes, 1.0, 256, valid=(x[valid], labels[valid]))
        unit = "Adam steps of 512"
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    accuracy = (head_logits(params, x[valid]).argmax(1) == labels[valid]).mean()
    print(
        f"{head} fit on {int((~valid).sum()):,} vectors of {dim}: {seconds:.1f} s, {iterations} {unit}, "
        f"held-out accuracy {accuracy:.3f}, peak RSS {peak:,.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit-scale", type=int, default=0, help="Only time the head's fit on N random vectors.")
    parser.add_argument("--head", default="linear", choices=("linear", "mlp"), help="The head --fit-scale fits.")
    parser.add_argument("--sizes", default="5,10,20,50")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--out", default="/tmp/mgc-model-kinds")
    args = parser.parse_args()
    if args.fit_scale:
        fit_at_scale(args.fit_scale, args.head)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for size in sizes:
        runs = [run(Path(args.out), size, seed) for seed in seeds]
        print(json.dumps({"size": size, "runs": runs}), flush=True)
        row = [str(size)]
        for kind in KINDS:
            row += [
                f"{statistics.mean(r[kind]['accuracy'] for r in runs):.2f}",
                f"{statistics.mean(r[kind]['seconds'] for r in runs):.1f}",
                f"{statistics.mean(r[kind]['predict_rate'] for r in runs):.0f}",
            ]
        rows.append(row)
    print(f"\nmean over seeds {seeds}; chance 0.10; test split 10 % of the tracks; 4 s tracks")
    print("cnn seconds include synthesis and extraction; head seconds include computing the vectors")
    print("tracks per genre | kind | accuracy | train s | predict tracks/s")
    for row in rows:
        for i, kind in enumerate(KINDS):
            print(" | ".join([row[0], kind, *row[1 + 3 * i : 4 + 3 * i]]))


if __name__ == "__main__":
    main()
