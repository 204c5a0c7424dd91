"""A musicnn head's vectors from the audio files against from a ``--preset musicnn`` store.

Usage:
    python benchmarks/backbone_store.py [--tracks-per-genre 20] [--seconds 30] [--format ogg] [--out /tmp/mgc-bb]

Makes a generated corpus (10 genres), extracts it twice (the default spec, and
``--preset musicnn``), trains a ``--backbone musicnn-msd`` head on each store
and predicts each store once with it. With the default store the backbone
decodes and resamples every track's audio again (its front-end is not the
store's); with the musicnn store it reads the store's log-mel. Prints, per
store: extraction seconds, the head's vector pass (tracks/s) and prediction
from the store (tracks/s), on all cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]


def main() -> None:
    from mgc.engine import SPEC_PRESETS, FeatureSpec, extract
    from mgc.engine.synth import make_corpus
    from mgc.models import predict
    from mgc.models.training.heads import train_head

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks-per-genre", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--format", default="ogg")
    parser.add_argument("--out", default="/tmp/mgc-bb")
    args = parser.parse_args()
    out = Path(args.out)
    corpus = make_corpus(
        out / "corpus", tracks_per_genre=args.tracks_per_genre, seconds=args.seconds, format=args.format
    )
    specs = {"default spec": FeatureSpec(), "--preset musicnn": FeatureSpec.from_dict(SPEC_PRESETS["musicnn"])}
    print(f"{args.tracks_per_genre * 10} tracks of {args.seconds:.0f} s ({args.format}), {os.cpu_count()} cores")
    print("store | extract s | head vectors tracks/s | predict --store tracks/s")
    for name, spec in specs.items():
        store = out / name.replace(" ", "-").strip("-")
        shutil.rmtree(store, ignore_errors=True)
        started = time.perf_counter()
        extract(corpus, store, spec)
        extract_s = time.perf_counter() - started
        model = out / f"head-{store.name}"
        shutil.rmtree(model, ignore_errors=True)
        summary = train_head(store, model, "musicnn-msd")
        n = args.tracks_per_genre * 10
        started = time.perf_counter()
        results = predict(model, store=store)
        predict_s = time.perf_counter() - started
        assert len(results) == n and not any(r["error"] for r in results)
        print(f"{name} | {extract_s:.1f} | {n / summary['vector_seconds']:.1f} | {n / predict_s:.1f}", flush=True)


if __name__ == "__main__":
    main()
