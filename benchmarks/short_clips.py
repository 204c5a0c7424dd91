"""Genre heads on short clips of held-apart recordings: featurizer x {track, patch} level x clip length.

Usage:
    python benchmarks/short_clips.py [--recordings 6] [--train 4] [--featurizers stats,musicnn-msd,...]
                                     [--levels patch,track] [--clips 2,3,10,30] [--out /tmp/mgc-short-clips]

Two corpora, each split so that no recording has audio on both sides:

- **generated**: ``mgc demo``'s generator, 10 genres x ``--recordings``
  tracks of 30 s; each track is one recording. The first ``--train`` of each
  genre are the training tracks (whole); from each of the others, test clips
  of every ``--clips`` length are cut at evenly spaced offsets (4 of 2 s and
  3 s, 2 of 10 s, 1 of 30 s per recording).
- **real** (when ``../shared/audio`` is there): classical against jazz across
  recordings. Training tracks are 10 s cuts of Brahms' Hungarian Dance no. 5
  and Kevin MacLeod's "Vibe Ace"; test clips come from other recordings, the
  Sugar Plum Fairy (8 clips of each length) and a 5 s solo trumpet (2 s and 3 s
  clips only, every 0.5 s, so that the short clips are not all classical). Balanced accuracy (mean recall, chance
  0.50) is printed beside accuracy.

For each featurizer and level it trains a linear head on the training tracks
(``train_head``, every training track in ``train``, ``--patches`` per track at
the patch level) and predicts every test
clip from its WAV file (``HeadModel.audio_results``, as ``mgc predict`` does).
It prints accuracy per clip length, the training time (vectors + fit), the
vectors fitted and the featurizer's vectors per second in training.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from benchmarks.real_recordings import AUDIO, RECORDINGS  # noqa: E402  (the shared recordings, one table)

#: Two recordings train, the other two of the same genres give the test clips.
REAL_TRAIN = {name: RECORDINGS[name] for name in ("brahms", "vibeace")}
REAL_TEST = {name: RECORDINGS[name] for name in ("sugarplum", "trumpet")}
#: Clips per test recording, by length.
CLIPS_PER_RECORDING = {2.0: 4, 3.0: 4, 10.0: 2, 30.0: 1}
FEATURIZERS = "stats,musicnn-msd,musicnn-mtt,musicnn-msd-pool,musicnn-mtt-pool,musicnn-msd+mtt"


def write_wav(path: Path, audio: np.ndarray, sr: int) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sr, subtype="PCM_16")


def cut(audio: np.ndarray, sr: int, seconds: float, count: int) -> list[np.ndarray]:
    """``count`` clips of ``seconds`` at evenly spaced offsets (none when the audio is shorter)."""
    n = int(round(seconds * sr))
    if len(audio) < n:
        return []
    starts = np.round(np.linspace(0, len(audio) - n, count)).astype(int) if count > 1 else [0]
    return [audio[s : s + n] for s in starts]


def generated_task(out: Path, recordings: int, n_train: int, lengths: list[float]) -> tuple[Path, list, list]:
    """The generated corpus: (training manifest, train ids, test clips as (path, label, seconds))."""
    import soundfile as sf

    from mgc.engine.synth.corpus import GENRES, make_corpus

    manifest = make_corpus(out / "corpus", tracks_per_genre=recordings, seconds=30.0, seed=7)
    train_rows, clips = [], []
    with manifest.open() as f:
        for row in csv.DictReader(f):
            index = int(row["track_id"].rsplit(".", 1)[-1])
            if index < n_train:
                train_rows.append(row)
                continue
            audio, sr = sf.read(out / "corpus" / row["path"], dtype="float32")
            for seconds in lengths:
                for k, clip in enumerate(cut(audio, sr, seconds, CLIPS_PER_RECORDING.get(seconds, 2))):
                    path = out / "clips" / f"{row['track_id']}-{seconds:g}s-{k}.wav"
                    write_wav(path, clip, sr)
                    clips.append((str(path), row["label"], seconds))
    train_manifest = out / "train.csv"
    with train_manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "track_id"])
        for row in train_rows:
            writer.writerow([out / "corpus" / row["path"], row["label"], row["track_id"]])
    assert len(GENRES) == len({r["label"] for r in train_rows})
    return train_manifest, [r["track_id"] for r in train_rows], clips


def real_task(out: Path, lengths: list[float]) -> tuple[Path, list, list]:
    """Classical against jazz across recordings (see the module docstring)."""
    import soundfile as sf

    train_manifest, ids, clips = out / "train.csv", [], []
    out.mkdir(parents=True, exist_ok=True)
    with train_manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "track_id"])
        for name, (file, label) in REAL_TRAIN.items():
            audio, sr = sf.read(AUDIO / file, dtype="float32")
            for k in range(len(audio) // (10 * sr)):
                path = out / "train" / f"{name}-{k}.wav"
                write_wav(path, audio[k * 10 * sr : (k + 1) * 10 * sr], sr)
                writer.writerow([path, label, f"{name}-{k}"])
                ids.append(f"{name}-{k}")
    for name, (file, label) in REAL_TEST.items():
        audio, sr = sf.read(AUDIO / file, dtype="float32")
        for seconds in lengths:
            # The trumpet (5 s) gives a clip every 0.5 s; the Sugar Plum Fairy (2 minutes) 8 spread over it.
            count = max(1, int((len(audio) / sr - seconds) / 0.5) + 1) if name == "trumpet" else 8
            for k, clip in enumerate(cut(audio, sr, seconds, count)):
                path = out / "clips" / f"{name}-{seconds:g}s-{k}.wav"
                write_wav(path, clip, sr)
                clips.append((str(path), label, seconds))
    return train_manifest, ids, clips


def run(
    name: str, out: Path, manifest: Path, train_ids: list, clips: list, featurizers, levels, patches: int
) -> list[dict]:
    from mgc.engine import FeatureSpec, extract
    from mgc.models.kinds.head import HeadModel
    from mgc.models.training.heads import train_head

    store = out / "store"
    if not store.exists():
        extract(manifest, store, FeatureSpec(), workers=2)
    split = out / "train-ids.txt"
    split.write_text("\n".join(train_ids) + "\n")
    lengths = sorted({c[2] for c in clips})
    rows = []
    for featurizer in featurizers:
        for level in levels:
            folder = out / "models" / f"{featurizer}-{level}"
            shutil.rmtree(folder, ignore_errors=True)
            started = time.perf_counter()
            summary = train_head(
                store, folder, featurizer, level=level, patches=patches, split_files={"train": split}, workers=2
            )
            seconds = time.perf_counter() - started
            head = HeadModel.load(folder)
            entries = [(path, path, label) for path, label, _ in clips]
            results = list(head.audio_results(entries, workers=2))
            names = head.label_names
            truth = np.array([names.index(label) for _, label, _ in clips])
            guess = np.array([-1 if r.error is not None else int(np.argmax(r.probabilities)) for r in results])
            length = np.array([c[2] for c in clips])
            row = {
                "corpus": name,
                "featurizer": featurizer,
                "level": level,
                "train_seconds": seconds,
                "vector_seconds": summary["vector_seconds"],
                "vectors": summary["vectors_fitted"],
                "tracks": len(train_ids),
                "failed": int((guess < 0).sum()),
            }
            for seconds_ in lengths:
                mask = length == seconds_
                correct = guess[mask] == truth[mask]
                recalls = [correct[truth[mask] == c].mean() for c in np.unique(truth[mask])]
                row[f"acc {seconds_:g}s"] = float(correct.mean())
                row[f"bal {seconds_:g}s"] = float(np.mean(recalls))
                row[f"n {seconds_:g}s"] = int(mask.sum())
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    for corpus in dict.fromkeys(r["corpus"] for r in rows):
        part = [r for r in rows if r["corpus"] == corpus]
        lengths = [k.split()[1] for k in part[0] if k.startswith("acc ")]
        balanced = corpus == "real"
        print(f"\n{corpus}: test clips per length " + ", ".join(f"{n} {part[0][f'n {n}']}" for n in lengths))
        measure = "balanced accuracy" if balanced else "accuracy"
        header = ["featurizer", "level", *[f"{measure} {n}" for n in lengths], "train s", "vectors", "vectors/s"]
        print(" | ".join(header))
        for r in part:
            cells = [f"{r[('bal ' if balanced else 'acc ') + n]:.2f}" for n in lengths]
            rate = r["vectors"] / r["vector_seconds"] if r["vector_seconds"] > 0 else float("nan")
            print(
                " | ".join(
                    [r["featurizer"], r["level"], *cells, f"{r['train_seconds']:.1f}", str(r["vectors"]), f"{rate:.0f}"]
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=6, help="Generated tracks (recordings) per genre.")
    parser.add_argument("--train", type=int, default=4, help="Of which training tracks, per genre.")
    parser.add_argument("--featurizers", default=FEATURIZERS)
    parser.add_argument("--levels", default="patch,track")
    parser.add_argument("--clips", default="2,3,10,30", help="Test clip lengths in seconds.")
    parser.add_argument("--patches", type=int, default=None, help="Patches per track (default: HeadConfig's).")
    parser.add_argument("--corpora", default="generated,real")
    parser.add_argument("--out", default="/tmp/mgc-short-clips")
    args = parser.parse_args()
    out = Path(args.out)
    lengths = [float(x) for x in args.clips.split(",")]
    featurizers, levels = args.featurizers.split(","), args.levels.split(",")
    from mgc.models.config import HeadConfig

    patches = args.patches or HeadConfig.patches
    rows = []
    if "generated" in args.corpora:
        task = generated_task(out / "generated", args.recordings, args.train, lengths)
        rows += run("generated", out / "generated", *task, featurizers, levels, patches)
    if "real" in args.corpora:
        if not AUDIO.is_dir():
            print(f"real: skipped, the shared recordings are not at {AUDIO}")
        else:
            task = real_task(out / "real", lengths)
            rows += run("real", out / "real", *task, featurizers, levels, patches)
    print_table(rows)


if __name__ == "__main__":
    main()
