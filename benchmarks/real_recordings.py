"""The model kinds on real music: 3 s clips of the five shared recordings (``../shared/audio``).

Usage:
    python benchmarks/real_recordings.py [--seeds 0,1,2] [--fine-tune 5] [--out /tmp/mgc-real]

No labelled real corpus ships with mgc, so two small tasks are cut from the five
CC-licensed recordings (their 22.05 kHz mono versions), clip by clip, each clip
a WAV file decoded by libsndfile like any track:

- **genre across recordings** (the honest genre test): classical against jazz.
  Train on clips of one classical and one jazz recording (Brahms' Hungarian
  Dance no. 5 for strings; Kevin MacLeod's "Vibe Ace"), test on *other*
  recordings (Kevin MacLeod's arrangement of Tchaikovsky's "Dance of the Sugar
  Plum Fairy"; a solo jazz trumpet loop, clips every 1 s). The test is
  imbalanced (39 classical clips, 3 jazz), so balanced accuracy (the mean of the
  two recalls, chance 0.50) is reported beside accuracy.
- **recording from its later clips**: 4 classes (the four longer recordings;
  the 5 s trumpet is too short), train on the first N clips of each (N = 3 and
  8), validate on the next 2, test on each recording's last 5 clips.

Per task and seed it trains the CNN from scratch (``mgc demo --quick``'s
network and settings: 8 epochs, 8 crops per track), the stats model, and
musicnn-msd heads (linear, MLP, and linear then fine-tuned for ``--fine-tune``
passes), and evaluates each on the test clips. Heads are deterministic given
the split; the CNN's and the MLP's initialisation vary with the seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

AUDIO = ROOT.parent / "shared" / "audio"
RECORDINGS = {
    "brahms": ("Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_string_orchestra.ogg", "classical"),
    "sugarplum": ("Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg", "classical"),
    "vibeace": ("Kevin_MacLeod_-_Vibe_Ace.ogg", "jazz"),
    "trumpet": ("sorohanro_-_solo-trumpet-06.ogg", "jazz"),
    "hobbs": ("Karissa_Hobbs_-_Lets_Go_Fishin.ogg", "folk"),
}
CLIP = 3.0


def clips(name: str, hop: float = CLIP) -> list:
    import soundfile as sf

    audio, sr = sf.read(AUDIO / RECORDINGS[name][0], dtype="float32")
    n, step = int(CLIP * sr), int(hop * sr)
    return [(audio[s : s + n], sr) for s in range(0, len(audio) - n + 1, step)]


def write_task(folder: Path, rows: list) -> Path:
    """WAV clips and a manifest (path, label, track_id, split) of ``rows``: (name, index, clip, label, split)."""
    import soundfile as sf

    (folder / "clips").mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "track_id", "split"])
        for name, index, (audio, sr), label, split in rows:
            path = folder / "clips" / f"{name}-{index:03d}.wav"
            sf.write(path, audio, sr)
            writer.writerow([path, label, f"{name}-{index:03d}", split])
    return manifest


def genre_task(folder: Path) -> Path:
    rows = []
    for name, split in (("brahms", "train"), ("vibeace", "train"), ("sugarplum", "test"), ("trumpet", "test")):
        cut = clips(name, hop=1.0 if name == "trumpet" else CLIP)
        for i, clip in enumerate(cut):
            # The last 2 clips of each training recording validate.
            which = "valid" if split == "train" and i >= len(cut) - 2 else split
            rows.append((name, i, clip, RECORDINGS[name][1], which))
    return write_task(folder, rows)


def recording_task(folder: Path, n_train: int) -> Path:
    rows = []
    for name in ("brahms", "sugarplum", "vibeace", "hobbs"):
        cut = clips(name)
        for i, clip in enumerate(cut):
            if i < n_train:
                split = "train"
            elif i < n_train + 2:
                split = "valid"
            elif i >= len(cut) - 5:
                split = "test"
            else:
                continue
            rows.append((name, i, clip, name, split))
    return write_task(folder, rows)


def balanced(metrics: dict) -> float:
    import numpy as np

    confusion = np.asarray(metrics["confusion"], float)
    present = confusion.sum(1) > 0
    return float((np.diag(confusion)[present] / confusion.sum(1)[present]).mean())


def run_task(folder: Path, manifest: Path, seed: int, fine_tune: int) -> dict:
    from mgc.engine import FeatureSpec, extract
    from mgc.models import evaluate, train
    from mgc.models.config import ModelConfig
    from mgc.models.tasks.demo import DemoConfig
    from mgc.models.training.heads import train_head

    store = folder / "store"
    if not store.exists():
        extract(manifest, store, FeatureSpec(), workers=2)
    quick = DemoConfig.quick()
    kinds = {
        "cnn": lambda out: train(
            store,
            out,
            {
                "epochs": quick.epochs,
                "batch_size": quick.batch_size,
                "crop_seconds": quick.crop_seconds,
                "crops_per_track": quick.crops_per_track,
                "seed": seed,
            },
            model_config=ModelConfig(widths=quick.widths, n_mels=128, n_classes=2),
        ),
        "stats": lambda out: train_head(store, out, "stats", seed=seed),
        "musicnn linear": lambda out: train_head(store, out, "musicnn-msd", seed=seed),
        "musicnn mlp": lambda out: train_head(store, out, "musicnn-msd", head="mlp", seed=seed),
    }
    if fine_tune:
        kinds["musicnn fine-tuned"] = lambda out: train_head(
            store, out, "musicnn-msd", fine_tune_epochs=fine_tune, seed=seed
        )
    results = {}
    for kind, fit in kinds.items():
        out = folder / f"{kind.replace(' ', '-')}-s{seed}"
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        summary = fit(out)
        seconds = time.perf_counter() - started
        metrics = evaluate(out, store, split="test")
        results[kind] = {"accuracy": metrics["accuracy"], "balanced": balanced(metrics), "seconds": seconds}
        if kind == "musicnn fine-tuned":
            results[kind]["kept_pass"] = summary["fine_tune"]["best_epoch"]
            results[kind]["step_seconds"] = summary["fine_tune"]["step_seconds"]  # 16 patches
        print(json.dumps({"task": folder.name, "seed": seed, "kind": kind, **results[kind]}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--fine-tune", type=int, default=5, help="Fine-tuning passes (0: skip).")
    parser.add_argument("--out", default="/tmp/mgc-real")
    args = parser.parse_args()
    if not AUDIO.is_dir():
        sys.exit(f"the shared recordings are not at {AUDIO}")
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    tasks = {"genre across recordings": genre_task(out / "genre")}
    for n in (3, 8):
        tasks[f"recording, {n} clips each"] = recording_task(out / f"recording-{n}", n)
    seeds = [int(s) for s in args.seeds.split(",")]
    table = {}
    for task, manifest in tasks.items():
        runs = [run_task(manifest.parent, manifest, seed, args.fine_tune) for seed in seeds]
        table[task] = {
            kind: {m: statistics.mean(r[kind][m] for r in runs) for m in ("accuracy", "balanced", "seconds")}
            for kind in runs[0]
        }
    print(f"\nmean over seeds {seeds}; 3 s clips of the shared recordings (see the docstring)")
    print("task | kind | test accuracy | balanced accuracy | train s")
    for task, kinds in table.items():
        for kind, m in kinds.items():
            print(f"{task} | {kind} | {m['accuracy']:.2f} | {m['balanced']:.2f} | {m['seconds']:.1f}")


if __name__ == "__main__":
    main()
