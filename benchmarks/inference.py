"""Batch inference: prediction from audio and from a store, embedding, and similarity search at a million vectors.

Usage:
    python benchmarks/inference.py                      # everything (about 20 minutes on 2 cores)
    python benchmarks/inference.py --skip-ann           # only prediction and embedding
    python benchmarks/inference.py --skip-audio --vectors 100000
    python benchmarks/inference.py --compare-ann        # also faiss-cpu and voyager, when installed

Prints, in one run on this machine:

1. **From audio files.** ``--tracks`` tracks of ``--seconds`` s (hard links to
   40 generated files, 4 per genre), once as WAV and once as OGG Vorbis: ``engine.extract``'s rate with the default
   FeatureSpec on every core (the peer) beside ``models.predict``'s rate on the
   same files, same cores, with the default network (``ModelConfig()``, trained
   two steps: the weights do not change the cost). Target: predict >= 0.7x extract.
2. **From a store.** ``predict(store=...)`` on the WAV store; target >= 40
   tracks/s (20x the 2 tracks/s of one-file-at-a-time prediction before batching,
   measured in the issue). ``embed(store=...)`` on the same store; target: the
   prediction rate.
3. **Similarity.** An embedding store of ``--vectors`` unit vectors of the default
   dimension (128) written by the store's writer, its usearch index built by
   ``engine.neighbours.build_index`` (time, resident memory added, file size),
   single queries through ``engine.neighbours.search`` (p50/p99 latency, k=10),
   and recall@10 against ``exact_search`` on 200 queries. Twice: random unit
   vectors (the issue's speed case, and the worst case for any graph index:
   no structure at all) and clustered vectors (10 genre centres plus a
   16-dimensional spread, the structure real embeddings have); queries are
   stored vectors plus noise. ``--compare-ann`` measures faiss-cpu's
   IndexHNSWFlat and voyager on the clustered vectors with the same graph
   settings (the measurement behind choosing usearch).

The network's compile time is excluded (one warm-up call first). Prediction
decodes on every core through the engine's pool while the network runs in the
parent: on 2 cores the two compete.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_child(fn, *args):
    """``fn(*args)`` in a fresh process, so that its peak memory is its own."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def _build(folder: Path) -> dict:
    import usearch.index  # noqa: F401  (its import is not the index's memory)

    from mgc.engine.neighbours import build_index
    from mgc.engine.vectors import VectorStore as EmbeddingStore

    store = EmbeddingStore(folder)
    base = rss_mb()
    _, seconds = timed(build_index, store)
    return {"seconds": seconds, "memory": peak_mb() - base}


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def audio_section(args, work: Path) -> None:
    from mgc.engine import FeatureSpec, extract
    from mgc.engine.synth import make_corpus
    from mgc.models import ModelConfig, TrainConfig, embed, load_model, predict, train

    spec = FeatureSpec()
    n = args.tracks
    print(
        f"\n## Prediction and embedding: {n} tracks of {args.seconds:.0f} s, default spec and network, "
        f"{os.cpu_count()} cores"
    )
    stores = {}
    rows = []
    model = None
    for fmt in ("wav", "ogg"):
        make_corpus(work / f"source-{fmt}", tracks_per_genre=4, seconds=args.seconds, format=fmt)
        corpus = linked_corpus(work / f"source-{fmt}", work / f"corpus-{fmt}", fmt, n)
        store = work / f"store-{fmt}"
        shutil.rmtree(store, ignore_errors=True)
        _, extract_s = timed(extract, corpus, store, spec, workers=args.workers)
        stores[fmt] = store
        if model is None:
            model_dir = work / "model"
            shutil.rmtree(model_dir, ignore_errors=True)
            config = TrainConfig(steps=2, batch_size=16, seed=0)
            train(store, model_dir, config, model_config=ModelConfig(n_mels=spec.n_mels))
            model = load_model(model_dir, "latest")
            files = sorted(str(p) for p in corpus.rglob(f"*.{fmt}"))
            predict(model, files[:2], workers=1)  # compile the network's one batch shape
        results, predict_s = timed(predict, model, [corpus], workers=args.workers)
        assert len(results) == n and not any(r["error"] for r in results)
        few, few_s = timed(predict, model, [corpus], workers=args.workers, max_crops=3)
        assert len(few) == n
        rows.append((fmt, n / extract_s, n / predict_s, n / few_s))
    head = f"{'format':<8}{'extract tracks/s':>18}{'predict tracks/s':>18}{'ratio':>8}"
    print(head + f"{'--max-crops 3':>15}{'ratio':>8}   target >= 0.70")
    for fmt, ext, pred, few in rows:
        print(f"{fmt:<8}{ext:>18.2f}{pred:>18.2f}{pred / ext:>8.2f}{few:>15.2f}{few / ext:>8.2f}")
    network_only(model)
    store = stores["wav"]
    results, store_s = timed(predict, model, store=store)
    out = work / "embeddings"
    shutil.rmtree(out, ignore_errors=True)
    summary, embed_s = timed(embed, work / "model", out, store=store, which="latest", index="none")
    assert summary["written"] == n
    print(f"\n{'from the store':<28}{'tracks/s':>10}{'target':>16}")
    print(f"{'predict --store':<28}{n / store_s:>10.1f}{'>= 40 (20x 2)':>16}")
    print(f"{'embed --store':<28}{n / embed_s:>10.1f}{f'~ {n / store_s:.1f}':>16}")


def network_only(model) -> None:
    """The default network alone on in-memory crops: crops/s, and its FLOPs from XLA's cost analysis."""
    import jax

    from mgc.models.nets.steps import infer_step, make_graphdef

    graphdef = make_graphdef(model.model_config)
    step = jax.jit(infer_step, static_argnames="graphdef")
    x = np.random.default_rng(0).standard_normal((256, model.crop_frames, model.normalizer.mean.size), np.float32)
    cost = step.lower(model.params, model.batch_stats, x, graphdef=graphdef).compile().cost_analysis()
    flops = (cost[0] if isinstance(cost, list) else cost)["flops"] / len(x)
    jax.block_until_ready(step(model.params, model.batch_stats, x, graphdef=graphdef))
    _, seconds = timed(
        lambda: [jax.block_until_ready(step(model.params, model.batch_stats, x, graphdef=graphdef)) for _ in range(5)]
    )
    rate = 5 * len(x) / seconds
    print(
        f"network alone: {rate:.0f} crops/s of {model.crop_frames} frames, {flops / 1e6:.0f} MFLOP a crop, "
        f"{rate * flops / 1e9:.0f} GFLOP/s on {os.cpu_count()} cores"
    )


def linked_corpus(source: Path, corpus: Path, fmt: str, n: int) -> Path:
    """``n`` tracks in a folder per genre: hard links to the 40 generated files (each link is its own track)."""
    files = sorted(source.rglob(f"*.{fmt}"))
    shutil.rmtree(corpus, ignore_errors=True)
    for i in range(n):
        original = files[i % len(files)]
        folder = corpus / original.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        os.link(original, folder / f"{original.stem}-{i:06d}.{fmt}")
    return corpus


def write_vectors(folder: Path, vectors_fn, n: int, dim: int, shard: int = 65536) -> None:
    from mgc.engine.vectors import FORMAT, VERSION, VectorWriter

    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"dir": None, "checkpoint": "best", "step": 0, "fingerprint": "benchmark"},
        "dim": dim,
        "dtype": "float16",
        "label_names": [],
        "spec": {},
    }
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    writer = VectorWriter(folder, meta, overwrite=False)
    for start in range(0, n, shard):
        block = vectors_fn(start, min(n, start + shard))
        ids = np.char.add("t", np.arange(start, start + len(block)).astype(str)).tolist()
        writer.write(ids, [""] * len(ids), [""] * len(ids), block, [])


def make_vectors(kind: str, dim: int, seed: int = 0):
    """``fn(start, stop)`` giving rows start..stop of a reproducible set of unit vectors."""
    centres = np.random.default_rng(seed).standard_normal((10, dim)).astype(np.float32) * 2
    mix = np.random.default_rng(seed + 1).standard_normal((16, dim)).astype(np.float32) / 4

    def fn(start: int, stop: int) -> np.ndarray:
        rng = np.random.default_rng([seed, start])
        if kind == "random":
            x = rng.standard_normal((stop - start, dim), dtype=np.float32)
        else:
            z = rng.standard_normal((stop - start, 16), dtype=np.float32)
            x = z @ mix + centres[rng.integers(0, 10, stop - start)]
            x += 0.1 * rng.standard_normal(x.shape, dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return fn


def ann_section(args, work: Path) -> None:
    from mgc.engine.neighbours import EXPANSION_SEARCH, exact_search, search
    from mgc.engine.vectors import VectorStore as EmbeddingStore
    from mgc.engine.vectors import normalize

    dim = 128
    print(f"\n## Similarity: {args.vectors:,} vectors of {dim}, k=10, usearch HNSW", end="")
    print(f" (connectivity 16, expansion 128 / {EXPANSION_SEARCH})")
    print("build MB: peak memory the build added; query MB: memory a process searching 200 times added")
    columns = [("vectors", 11), ("build s", 9), ("build MB", 10), ("query MB", 10), ("file MB", 9)]
    columns += [("p50 ms", 8), ("p99 ms", 8), ("recall@10", 11), ("exact 1 query s", 17)]
    print("".join(f"{name:<{w}}" if i == 0 else f"{name:>{w}}" for i, (name, w) in enumerate(columns)))
    for kind in ("random", "clustered"):
        folder = work / f"ann-{kind}"
        fn = make_vectors(kind, dim)
        write_vectors(folder, fn, args.vectors, dim)
        built = in_child(_build, folder)
        store = EmbeddingStore(folder)
        rng = np.random.default_rng(7)
        rows = rng.choice(args.vectors, 200, replace=False)
        queries = normalize(store.vectors(rows) + 0.05 * rng.standard_normal((200, dim)).astype(np.float32))
        before = rss_mb()
        search(store, queries[:1], 10)  # open the index (memory-mapped)
        opened = rss_mb()
        latencies = []
        found = np.empty((200, 10), np.int64)
        for i in range(200):
            start = time.perf_counter()
            found[i] = search(store, queries[i : i + 1], 10)[0][0]
            latencies.append(time.perf_counter() - start)
        searched = rss_mb()
        (truth, _), exact_s = timed(exact_search, store, queries, 10)
        _, one_exact_s = timed(exact_search, store, queries[:1], 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
        size = (folder / "index-usearch.bin").stat().st_size / 2**20
        query_mb = max(opened, searched) - before
        print(
            f"{kind:<11}{built['seconds']:>9.1f}{built['memory']:>10.0f}{query_mb:>10.0f}{size:>9.0f}"
            f"{np.median(latencies) * 1e3:>8.2f}{np.percentile(latencies, 99) * 1e3:>8.2f}{recall:>11.3f}"
            f"{one_exact_s:>17.2f}"
        )
        if kind == "random":
            for expansion in (256, 1024):
                found_wide = np.stack([search(store, q[None], 10, expansion=expansion)[0][0] for q in queries])
                wide = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found_wide, truth)])
                print(f"{'':<11}  random vectors with expansion_search {expansion}: recall@10 {wide:.3f}")
        if args.compare_ann and kind == "clustered":
            compare_libraries(args.vectors, dim, queries, truth)
        shutil.rmtree(folder, ignore_errors=True)


def compare_libraries(n: int, dim: int, queries: np.ndarray, truth: np.ndarray) -> None:
    print("\n  the same clustered vectors, connectivity 16, expansion 128 / 64, 2 build threads, a process each:")
    print(f"  {'library':<22}{'build s':>9}{'memory MB':>11}{'p50 ms':>8}{'recall@10':>11}")
    for name in ("usearch", "faiss", "voyager"):
        row = in_child(_library_row, name, n, dim, queries, truth)
        print(f"  {name:<22}" + (row if isinstance(row, str) else "{:>9.1f}{:>11.0f}{:>8.2f}{:>11.3f}".format(*row)))


def _library_row(name: str, n: int, dim: int, queries: np.ndarray, truth: np.ndarray):
    """Build time, resident memory the index added, p50 latency and recall of one library."""
    fn = make_vectors("clustered", dim)
    vectors = fn(0, n) if n <= 65536 else np.concatenate([fn(s, min(n, s + 65536)) for s in range(0, n, 65536)])
    try:
        __import__({"faiss": "faiss", "voyager": "voyager"}.get(name, "usearch.index"))
    except ImportError:
        return "not installed"
    before = rss_mb()
    start = time.perf_counter()
    if name == "usearch":
        from usearch.index import Index

        index = Index(ndim=dim, metric="ip", dtype="f16", connectivity=16, expansion_add=128, expansion_search=64)
        index.add(np.arange(n), vectors, threads=2)

        def one(q, index=index):
            return np.atleast_2d(index.search(q[None], 10).keys)[0]
    elif name == "faiss":
        import faiss

        faiss.omp_set_num_threads(2)
        index = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 128
        index.add(vectors)
        index.hnsw.efSearch = 64
        faiss.omp_set_num_threads(1)

        def one(q, index=index):
            return index.search(q[None], 10)[1][0]
    else:
        import voyager

        index = voyager.Index(voyager.Space.InnerProduct, num_dimensions=dim, M=16, ef_construction=128)
        index.add_items(vectors, num_threads=2)

        def one(q, index=index):
            return index.query(q, 10, query_ef=64)[0]

    build_s = time.perf_counter() - start
    memory = rss_mb() - before  # what the index keeps resident
    latencies, found = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(one(q))
        latencies.append(time.perf_counter() - t)
    recall = np.mean([len(set(np.asarray(a).tolist()) & set(b.tolist())) / 10 for a, b in zip(found, truth)])
    return build_s, memory, float(np.median(latencies) * 1e3), float(recall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracks", type=int, default=400, help="Tracks per format.")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=None, help="Processes (default: all cores).")
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--skip-audio", action="store_true")
    parser.add_argument("--skip-ann", action="store_true")
    parser.add_argument("--compare-ann", action="store_true", help="Also faiss-cpu and voyager (when installed).")
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the files here (default: a temp folder).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        work = args.workdir or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.skip_audio:
            audio_section(args, work)
        if not args.skip_ann:
            ann_section(args, work)


if __name__ == "__main__":
    main()
