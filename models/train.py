"""The training loop: a store in, a model folder with checkpoints and a metrics log out.

See :func:`train`. The step itself is :func:`models.steps.train_step`, made
data-parallel by :mod:`models.parallel`; batches come from
:mod:`models.input_pipeline`; checkpoints from :mod:`models.checkpoint`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from models.checkpoint import Checkpoints, check_spec
from models.config import ModelConfig, ModelError, TrainConfig
from models.data import StoreTracks, split_source
from models.input_pipeline import Normalizer, TrainLoader, crop_frames_for, prefetch
from models.metrics import classification_metrics, track_probabilities
from models.parallel import make_parallel
from models.progress import Reporter
from models.splits import load_splits, make_splits, save_splits
from models.steps import init_state, make_graphdef, make_optimizer, make_schedule

__all__ = ["has_checkpoint", "train"]


def has_checkpoint(out_dir: str | Path) -> bool:
    """True when ``out_dir`` holds a saved training checkpoint (so ``resume=True`` continues it)."""
    latest = Path(out_dir) / "checkpoints" / "latest"
    return latest.is_dir() and any(p.name.isdigit() for p in latest.iterdir())


def _truncate_log(path: Path, step: int) -> None:
    """Drop metric rows written after checkpoint ``step`` (a run killed between the two)."""
    if path.exists():
        rows = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
        path.write_text("".join(r + "\n" for r in rows))


def train(
    store: Any,
    out_dir: str | Path,
    config: TrainConfig | Mapping[str, Any] | None = None,
    *,
    model_config: ModelConfig | None = None,
    resume: bool = False,
    split_files: Mapping[str, str | Path] | None = None,
    reporter: Reporter | None = None,
    devices: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Train the short-chunk CNN on a feature store.

    Parameters
    ----------
    store : str, Path or engine.FeatureStore
        The feature store (log-mel is read through ``engine``'s reader).
    out_dir : str or Path
        The model folder (see :mod:`models.checkpoint` for its layout).
    config : TrainConfig or mapping, optional
        Run settings; a mapping overrides fields of ``TrainConfig()``. When
        resuming, the saved settings are used; passing different ones (all of
        a TrainConfig's fields, or just the mapping's) is an error, because it
        would not continue the same run.
    model_config : ModelConfig, optional
        Network width and depth; ``n_mels`` and ``n_classes`` are taken from the store.
    resume : bool
        Continue from the latest checkpoint in ``out_dir``.
    split_files : mapping of split name to path, optional
        Track-id lists that define the splits (see :func:`models.splits.make_splits`).
    reporter : Reporter, optional
        Receives progress events (the CLI passes a rich progress bar).
    devices : sequence of jax.Device, optional
        Devices to train on; default all local devices.

    Returns
    -------
    dict
        ``model_dir``, ``steps``, ``best_val_accuracy`` and the ``last`` metrics row.
    """
    out_dir = Path(out_dir)
    reporter = reporter or Reporter()
    tracks = StoreTracks.of(store)
    spec, label_names = tracks.store.spec, [str(n) for n in tracks.store.label_names]
    log_path = out_dir / "metrics.jsonl"
    resuming = resume and has_checkpoint(out_dir)
    if has_checkpoint(out_dir) and not resume:
        raise ModelError(f"{out_dir} already holds a trained model; pass --resume to continue it or pick another --out")
    if resuming:
        meta = Checkpoints(out_dir).meta("latest")
        check_spec(meta["spec"], spec, where=f"the checkpoint in {out_dir}", store_path=getattr(tracks.store, "path", store))
        saved = TrainConfig.from_dict(meta["train_config"])
        given = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
        changed = {k: (saved.to_dict().get(k), v) for k, v in given.items() if saved.to_dict().get(k) != v}
        if changed:
            raise ModelError("--resume continues the saved run with its own settings; these differ from it: "
                             + ", ".join(f"{k} (saved {a!r}, given {b!r})" for k, (a, b) in changed.items())
                             + ". Drop them, or train a new model into another --out.")
        if meta["label_names"] != label_names:
            raise ModelError(f"the store's labels {label_names} differ from the checkpoint's {meta['label_names']}")
        saved_model = ModelConfig.from_dict(meta["model_config"])
        if model_config is not None and (model_config.widths, model_config.dense, model_config.dropout) != (
                saved_model.widths, saved_model.dense, saved_model.dropout):
            raise ModelError(f"--resume continues the saved network {saved_model.to_dict()}; drop --widths "
                             "or train a new model into another --out")
        config, model_config = saved, saved_model
        splits = load_splits(out_dir / "splits.json")
        normalizer = Normalizer.from_dict(meta["normalizer"])
    else:
        if not isinstance(config, TrainConfig):
            config = TrainConfig(**dict(config or {}))
        if model_config is None:
            # Default widths, as many blocks as the bands allow (each block halves them).
            widths = ModelConfig().widths[: max(1, int(np.log2(spec.n_mels)) - 1)]
            model_config = ModelConfig(widths=widths, n_mels=spec.n_mels, n_classes=len(label_names))
        else:
            model_config = dataclasses.replace(model_config, n_mels=spec.n_mels, n_classes=len(label_names))
        splits = make_splits(tracks.store.tracks, seed=config.seed, val_fraction=config.val_fraction,
                             test_fraction=config.test_fraction, split_files=split_files)
        normalizer = None

    train_rows = tracks.rows_of(splits["train"])
    valid_rows = tracks.rows_of(splits["valid"])
    train_source = split_source(tracks, train_rows, memory_limit_mb=config.memory_limit_mb)
    valid_source = split_source(tracks, valid_rows, memory_limit_mb=config.memory_limit_mb)
    if normalizer is None:
        normalizer = Normalizer.fit(lambda: iter(train_source))
    crop_frames = crop_frames_for(config.crop_seconds, spec.frames_per_second)
    if crop_frames < 2 ** len(model_config.widths):
        raise ModelError(f"--crop-seconds {config.crop_seconds} gives {crop_frames} frames, fewer than the "
                         f"{2 ** len(model_config.widths)} that {len(model_config.widths)} pooling blocks need")
    n_devices = len(devices) if devices is not None else jax.local_device_count()
    loader = TrainLoader(train_source, tracks.columns["label"][train_rows], len(label_names), normalizer,
                         crop_frames, config)
    total_steps = config.epochs * loader.steps_per_epoch
    tx = make_optimizer(config, total_steps)
    checkpoints = Checkpoints(out_dir)
    runner = make_parallel(config.parallel, model_config, tx, devices=devices, batch_size=config.batch_size)
    schedule = make_schedule(config, total_steps)

    static_meta = {
        "label_names": label_names, "spec": spec.to_dict(), "spec_hash": spec.hash,
        "model_config": model_config.to_dict(), "train_config": config.to_dict(),
        "normalizer": normalizer.to_dict(), "crop_frames": crop_frames, "total_steps": total_steps,
        "steps_per_epoch": loader.steps_per_epoch, "splits_method": splits["method"],
    }
    state = jax.tree.map(np.asarray, init_state(model_config, tx, seed=config.seed))
    if resuming:
        state, meta = checkpoints.restore("latest", state)
        epoch, index = meta["position"]
        sums, best = meta["epoch_sums"], meta["best_val_accuracy"]
        last_row = meta.get("metrics") or {}
        _truncate_log(log_path, int(state["step"]))
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_splits(splits, out_dir / "splits.json")
        (out_dir / "model.json").write_text(json.dumps({**static_meta, "store": str(getattr(tracks.store, "path", ""))}, indent=1))
        log_path.write_text("")
        epoch, index, sums, best = 0, 0, {"loss": 0.0, "accuracy": 0.0, "steps": 0}, -1.0
        last_row = {}

    eval_graphdef = make_graphdef(model_config)
    valid_labels = tracks.columns["label"][valid_rows]

    def validate(host_state: Any) -> dict[str, Any] | None:
        if not len(valid_source):
            return None
        probs = track_probabilities(host_state["params"], host_state["batch_stats"], eval_graphdef, iter(valid_source),
                                    normalizer=normalizer, crop_frames=crop_frames, max_crops=config.eval_crops)
        return classification_metrics(valid_labels, probs.argmax(-1), len(label_names))

    n_processes, process = jax.process_count(), jax.process_index()
    local_batch = config.batch_size // n_processes
    step = int(state["step"])
    reporter.start(total_steps, step, {"epochs": config.epochs, "devices": n_devices})
    device_state = runner.put_state(state)
    val_accuracy = last_row.get("val_accuracy")
    timer_start, timed_examples = None, 0
    epoch_start = time.perf_counter()
    batches = prefetch(loader.batches(epoch, index, config.epochs), config.prefetch)
    try:
        for epoch, index, batch in batches:
            if n_processes > 1:
                # Every process builds the same global batch (a function of seed and position) and
                # feeds its own rows; put_batch assembles the global array from the local parts.
                batch = {k: v[process * local_batch:(process + 1) * local_batch] for k, v in batch.items()}
            device_state, metrics = runner.step(device_state, runner.put_batch(batch))
            loss, accuracy = float(metrics["loss"]), float(metrics["accuracy"])
            step += 1
            # Throughput is timed from the end of the first step, so compilation is left out.
            if timer_start is None:
                timer_start = time.perf_counter()
            else:
                timed_examples += config.batch_size
            rate = timed_examples / max(time.perf_counter() - timer_start, 1e-9)
            sums = {"loss": sums["loss"] + loss, "accuracy": sums["accuracy"] + accuracy, "steps": sums["steps"] + 1}
            reporter.step(step, {"epoch": epoch, "loss": loss, "examples_per_s": rate, "val_accuracy": val_accuracy})
            end_of_epoch = index + 1 == loader.steps_per_epoch
            if not end_of_epoch and not (config.checkpoint_every and step % config.checkpoint_every == 0):
                continue
            host = runner.get_state(device_state)
            position = [epoch + 1, 0] if end_of_epoch else [epoch, index + 1]
            is_best = False
            if end_of_epoch:
                val = validate(host)
                val_accuracy = None if val is None else val["accuracy"]
                last_row = {
                    "epoch": epoch + 1, "step": step, "train_loss": sums["loss"] / sums["steps"],
                    "train_accuracy": sums["accuracy"] / sums["steps"], "val_accuracy": val_accuracy,
                    "val_macro_f1": None if val is None else val["macro_f1"], "lr": float(schedule(step - 1)),
                    "examples_per_s": rate, "epoch_seconds": time.perf_counter() - epoch_start,
                }
                with log_path.open("a") as log:
                    log.write(json.dumps(last_row) + "\n")
                reporter.epoch(last_row)
                sums = {"loss": 0.0, "accuracy": 0.0, "steps": 0}
                score = -1.0 if val_accuracy is None else val_accuracy
                # Ties go to the later, longer-trained model; without a validation split
                # the latest model is the best one.
                is_best = val_accuracy is None or score >= best
                best = max(best, score)
                epoch_start = time.perf_counter()
            meta = {**static_meta, "position": position, "epoch_sums": sums, "best_val_accuracy": best,
                    "metrics": last_row}
            # Best before latest: a kill between the two re-runs the epoch from the older latest.
            if is_best:
                checkpoints.save("best", host, meta)
            checkpoints.save("latest", host, meta)
    except BaseException:
        reporter.end({"error": True})  # leave the terminal clean before the error is shown
        raise
    finally:
        batches.close()
    summary = {"model_dir": str(out_dir), "steps": step, "best_val_accuracy": best if best >= 0 else None,
               "last": last_row, "devices": n_devices, "parallel": config.parallel}
    reporter.end(summary)
    return summary
