"""Feature compression: what a shard's filter costs to write, how fast it reads back, how much disk it takes.

Usage:
    python benchmarks/compression.py [--tracks 128] [--seconds 30] [--audio ../shared/audio] [--repeats 3]

Makes one shard's worth of real features (``--tracks`` crops of ``--seconds``
each, cut at different offsets from the recordings in ``--audio``; the
generated corpus of ``mgc synth`` when that folder is absent), with mgc's default
spec (float16 log-mel of 128 bands, 20 float32 MFCCs), then writes them the way
the extractor does (append per track into chunks of ``CHUNK_FRAMES`` frames) with
every filter plain h5py reads (``none``, ``lzf``, ``gzip`` levels 1 and 4, all
with the byte shuffle) and, when ``hdf5plugin`` is installed, the filters it adds
(Blosc with LZ4 or Zstd, Zstd, LZ4, Bitshuffle+LZ4). For each it prints, median
of ``--repeats``: write throughput, size on disk and ratio, whole-dataset read
throughput (what training and ``iter_tracks`` do), random one-track reads (what
``read(i)`` does), and what the filter's write costs beside the feature
computation itself (measured in the same run). Files live in the page cache: this
measures the codecs, not the disk.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from mgc.engine import FeatureSpec, schema  # noqa: I001  (after the path)
from mgc.engine.features import compute_track

PLAIN = {
    "none": {},
    "lzf + shuffle (mgc default)": dict(compression="lzf", shuffle=True),
    "lzf, no shuffle": dict(compression="lzf"),
    "gzip 1 + shuffle": dict(compression="gzip", compression_opts=1, shuffle=True),
    "gzip 4 + shuffle": dict(compression="gzip", compression_opts=4, shuffle=True),
}


def plugin_filters() -> tuple[dict, str]:
    """Filters of hdf5plugin (readable only where hdf5plugin is installed), or why there are none."""
    try:
        import hdf5plugin
    except ImportError:
        return {}, "hdf5plugin not installed: `pip install hdf5plugin` adds Blosc, Zstd and LZ4 rows"
    blosc = hdf5plugin.Blosc
    return {
        "blosc lz4 + shuffle": dict(**blosc(cname="lz4", clevel=5, shuffle=blosc.SHUFFLE)),
        "blosc zstd 1 + shuffle": dict(**blosc(cname="zstd", clevel=1, shuffle=blosc.SHUFFLE)),
        "blosc2 lz4 + shuffle": dict(**hdf5plugin.Blosc2(cname="lz4", clevel=5, filters=hdf5plugin.Blosc2.SHUFFLE)),
        "zstd 3": dict(**hdf5plugin.Zstd(clevel=3)),
        "bitshuffle + lz4": dict(**hdf5plugin.Bitshuffle(cname="lz4")),
    }, ""


def real_features(audio: Path, n_tracks: int, seconds: float, spec: FeatureSpec) -> tuple[list[dict], float]:
    """``n_tracks`` feature dicts of ``seconds`` each from the files in ``audio``; and seconds spent computing."""
    from mgc.engine import find_audio_files

    files = [f for f in find_audio_files([audio]) if ".hq." not in os.path.basename(f)] if audio.is_dir() else []
    if not files:
        from mgc.engine.synth import make_corpus

        folder = Path(tempfile.mkdtemp(prefix="mgc-compression-"))
        make_corpus(folder, tracks_per_genre=2, seconds=seconds)
        files = find_audio_files([folder])
        print(f"({audio} not found: generated corpus in {folder})")
    import soundfile

    lengths = {f: soundfile.info(f).duration for f in files}
    tracks, started = [], time.perf_counter()
    for i in range(n_tracks):
        path = files[i % len(files)]
        room = max(lengths[path] - seconds, 0.0)
        offset = (i // len(files)) * 7.3 % room if room else 0.0  # different crops of each recording
        tracks.append(compute_track(path, spec, offset=offset, duration=seconds).features)
    return tracks, time.perf_counter() - started


def write(path: str, tracks: list[dict], spec: FeatureSpec, filters: dict) -> float:
    """Seconds to write ``tracks`` the way engine/shard.py does, with ``filters`` on every feature."""
    started = time.perf_counter()
    with h5py.File(path, "w") as h5:
        datasets = {}
        for feature in spec.features:
            n_bins = spec.n_bins(feature)
            datasets[feature] = h5.create_dataset(
                f"features/{feature}",
                shape=(0, n_bins),
                maxshape=(None, n_bins),
                dtype=schema.FEATURE_DTYPES[feature] or spec.logmel_dtype,
                chunks=(schema.CHUNK_FRAMES, n_bins),
                track_times=False,
                **filters,
            )
        total = 0
        for features in tracks:
            n = next(iter(features.values())).shape[0]
            for feature, values in features.items():
                datasets[feature].resize(total + n, axis=0)
                datasets[feature][total : total + n] = values.astype(datasets[feature].dtype)
            total += n
    return time.perf_counter() - started


def read_whole(path: str, feature: str) -> float:
    started = time.perf_counter()
    with h5py.File(path, "r") as h5:
        h5[f"features/{feature}"][()]
    return time.perf_counter() - started


def read_random(path: str, feature: str, bounds: np.ndarray, rng: np.random.Generator, reads: int = 200) -> float:
    """Seconds per one-track read at random rows (file open, chunk cache cold per file)."""
    picks = rng.integers(0, len(bounds) - 1, reads)
    with h5py.File(path, "r", rdcc_nbytes=0) as h5:  # no chunk cache: every read decodes its chunks
        dataset = h5[f"features/{feature}"]
        started = time.perf_counter()
        for k in picks:
            dataset[bounds[k] : bounds[k + 1]]
        return (time.perf_counter() - started) / reads


def feature_bytes(path: str) -> int:
    with h5py.File(path, "r") as h5:
        return sum(h5["features"][f].id.get_storage_size() for f in h5["features"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=128, help="tracks in the shard (mgc's default shard size)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--audio", default=str(ROOT.parent / "shared" / "audio"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    spec = FeatureSpec()
    tracks, compute_seconds = real_features(Path(args.audio), args.tracks, args.seconds, spec)
    frames = sum(t["logmel"].shape[0] for t in tracks)
    raw = sum(t[f].shape[0] * t[f].shape[1] * np.dtype(schema.FEATURE_DTYPES[f] or spec.logmel_dtype).itemsize
              for t in tracks for f in t)  # fmt: skip
    bounds = np.concatenate([[0], np.cumsum([t["logmel"].shape[0] for t in tracks])])
    filters, why = plugin_filters()
    filters = {**PLAIN, **filters}
    print(
        f"{args.tracks} tracks x {args.seconds:g} s of {args.audio}: {frames:,} frames, "
        f"{raw / 2**20:.1f} MB raw (logmel {spec.logmel_dtype}, mfcc float32); "
        f"computing the features took {compute_seconds:.1f} s on one core "
        f"({args.tracks / compute_seconds:.1f} tracks/s)"
    )
    if why:
        print(why)

    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mgc-compression-") as tmp:
        for name, options in filters.items():
            path = os.path.join(tmp, "shard.h5")
            w = statistics.median(write(path, tracks, spec, options) for _ in range(args.repeats))
            size = feature_bytes(path)
            logmel_raw = frames * spec.n_mels * np.dtype(spec.logmel_dtype).itemsize
            r = statistics.median(read_whole(path, "logmel") for _ in range(args.repeats))
            one = statistics.median(read_random(path, "logmel", bounds, rng) for _ in range(args.repeats))
            rows.append(
                (
                    name,
                    f"{raw / w / 2**20:,.0f}",
                    f"{100 * w / compute_seconds:.1f}%",
                    f"{size / 2**20:.1f}",
                    f"{raw / size:.2f}",
                    f"{logmel_raw / r / 2**20:,.0f}",
                    f"{one * 1e3:.2f}",
                    f"{size / args.tracks * 1e6 / 2**30 * 30 / args.seconds:,.0f}",
                )
            )
    header = (
        "filter",
        "write MB/s",
        "write / compute",
        "MB on disk",
        "ratio",
        "read logmel MB/s",
        "one track ms",
        "GiB @1M x 30 s",
    )
    table = [header] + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for k, row in enumerate(table):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print(
        "\nwrite / compute: the filter's write time as a share of computing the same features on one core "
        "(extraction pays both). Read throughput counts decoded bytes."
    )


if __name__ == "__main__":
    main()
