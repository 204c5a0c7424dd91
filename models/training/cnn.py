"""The training loop: a store in, a model folder with checkpoints and a metrics log out.

See :func:`train`. The step itself is :func:`mgc.models.nets.steps.train_step`, made
data-parallel by :mod:`mgc.models.training.parallel`; batches come from
:mod:`mgc.models.data.pipeline`; checkpoints from :mod:`mgc.models.checkpoints`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mgc.engine import MgcWarning, ProgressCallback, ProgressReporter, background, describe_differences, differences
from mgc.models.checkpoints import Checkpoints
from mgc.models.config import ModelConfig, TrainConfig
from mgc.models.data.pipeline import Normalizer, TrainStream, crop_frames_for, fit_normalizer
from mgc.models.data.readers import ReaderPool
from mgc.models.data.splits import make_splits, parse_split_files
from mgc.models.data.stores import StoreTracks, check_spec
from mgc.models.devices import fallback_warning, resolve_precision
from mgc.models.errors import ModelError
from mgc.models.folder import ModelFolder
from mgc.models.metrics import classification_metrics, track_outputs
from mgc.models.nets.steps import init_state, make_graphdef, make_optimizer, make_schedule
from mgc.models.training import distributed
from mgc.models.training.parallel import local_ranks, make_parallel

__all__ = ["has_checkpoint", "train"]


def has_checkpoint(out_dir: str | Path) -> bool:
    """True when ``out_dir`` holds a saved training checkpoint (so ``resume=True`` continues it)."""
    return ModelFolder(out_dir).has_checkpoint("latest")


def train(
    store: Any,
    out_dir: str | Path,
    config: TrainConfig | Mapping[str, Any] | None = None,
    *,
    model_config: ModelConfig | None = None,
    resume: bool = False,
    split_files: Mapping[str, str | Path] | Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
    devices: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Train the short-chunk CNN on a feature store.

    Parameters
    ----------
    store : str, Path or engine.FeatureStore
        The feature store (log-mel is read through ``engine``'s reader).
    out_dir : str or Path
        The model folder (see :mod:`mgc.models.folder` for its layout).
    config : TrainConfig or mapping, optional
        Run settings; a mapping overrides fields of ``TrainConfig()``. When
        resuming, the saved settings are used; passing different ones (all of
        a TrainConfig's fields, or just the mapping's) is an error, because it
        would not continue the same run.
    model_config : ModelConfig, optional
        Network width and depth; ``n_mels`` and ``n_classes`` are taken from the store.
    resume : bool
        Continue from the latest checkpoint in ``out_dir``.
    split_files : mapping of split name to path, or ``NAME=PATH`` strings, optional
        Track-id lists that define the splits (see :func:`mgc.models.data.splits.make_splits`).
    progress : callable, optional
        Receives :class:`engine.ProgressEvent` values of task ``"train"`` counting
        ``"steps"``: ``start`` (``info``: ``epochs``, ``devices``; ``done`` > 0 when
        resuming), an ``update`` after every step (``info``: ``epoch``, ``loss``,
        ``examples_per_s``, ``val_accuracy``), a ``note`` after every epoch whose
        ``info`` is the row written to ``metrics.jsonl``, and ``end``.
    devices : sequence of jax.Device, optional
        Devices to train on; default every device of the run (``jax.devices()``: all
        processes' devices after ``jax.distributed.initialize``, see
        :mod:`mgc.models.training.distributed`).

    Returns
    -------
    dict
        ``model_dir``, ``steps``, ``best_val_accuracy`` and the ``last`` metrics row.

    Raises
    ------
    ModelError
        Bad settings, a store that does not fit a resumed run, or another
        training (or, for longer than ``READERS_WAIT_SECONDS``, a reader) holding the
        folder's lock. The lock (``out_dir/.lock``, see :mod:`mgc.models.folder`)
        is held for the whole run and released on any exit.
    PeerLost
        In a multi-process run, another process stopped (killed, crashed); every
        process stops, and ``resume=True`` on all of them continues from the latest
        checkpoint.

    Notes
    -----
    Multi-process (after ``jax.distributed.initialize``; the CLI's ``--coordinator``):
    every process calls ``train`` with the same arguments. Each reads only the shards
    of its own data-parallel ranks (see :class:`~mgc.models.data.pipeline.TrainStream`),
    scores its share of the validation tracks (the predictions are gathered), and
    takes part in every checkpoint (orbax); process 0 alone holds the folder's lock
    and writes ``model.json``, ``splits.json`` and ``metrics.jsonl``. An error on any
    process before the first step stops them all with its message.
    """
    out_dir = Path(out_dir)
    tracks = StoreTracks.of(store)
    split_files = parse_split_files(split_files) if split_files else None  # refused before the folder is made
    # In a multi-process run every process trains into the same folder (a shared file system).
    # Process 0 alone checks, claims and locks it for all of them; only then do the others look into
    # it (they would otherwise see process 0's first files appear). An error on any process before
    # the first step (the folder locked, another run's checkpoint, a damaged one) stops every process
    # with its message. Neither block runs a collective (see distributed.together).
    lead = jax.process_index() == 0
    with contextlib.ExitStack() as stack:
        with distributed.together():
            if lead:
                ModelFolder(out_dir).claim("cnn")  # before the lock file is made in it (and again under the lock)
                stack.enter_context(ModelFolder(out_dir).lock())
        with distributed.together():
            prepared = _prepare(
                tracks,
                out_dir,
                config,
                model_config=model_config,
                resume=resume,
                split_files=split_files,
                devices=devices,
            )
        return _run(tracks, out_dir, prepared, progress=progress, lead=lead)


def _prepare(
    tracks: StoreTracks,
    out_dir: Path,
    config: TrainConfig | Mapping[str, Any] | None,
    *,
    model_config: ModelConfig | None,
    resume: bool,
    split_files: Mapping[str, str | Path] | Sequence[str] | None,
    devices: Sequence[Any] | None,
) -> dict[str, Any]:
    """Everything :func:`_run` needs: settings checked, splits, normalisation, stream, runner.

    Nothing is written and no collective runs (checkpoints are read by each process alone), so an
    error on one process cannot leave another waiting: see :func:`distributed.together`.
    """
    folder = ModelFolder(out_dir)
    if jax.process_index() == 0:
        folder.claim("cnn")  # under the lock (the others rely on process 0's check)
    spec, label_names = tracks.store.spec, [str(n) for n in tracks.store.label_names]
    resuming = resume and has_checkpoint(out_dir)
    if has_checkpoint(out_dir) and not resume:
        raise ModelError(f"{out_dir} already holds a trained model; pass --resume to continue it or pick another --out")
    if resuming:
        meta = Checkpoints(out_dir).meta("latest")
        check_spec(
            meta["spec"], spec, where=f"the checkpoint in {out_dir}", store_path=getattr(tracks.store, "path", "")
        )
        saved = TrainConfig.from_dict(meta["train_config"])
        given = config.to_dict() if isinstance(config, TrainConfig) else dict(config or {})
        if "precision" in given:  # the saved run holds what "auto" became
            given["precision"] = resolve_precision(given["precision"])
        changed = differences(saved.to_dict(), given, keys=given)
        if changed:
            raise ModelError(
                "--resume continues the saved run with its own settings; these differ from it: "
                + describe_differences(changed, "saved", "given")
                + ". Drop them, or train a new model into another --out."
            )
        if meta["label_names"] != label_names:
            raise ModelError(f"the store's labels {label_names} differ from the checkpoint's {meta['label_names']}")
        saved_model = ModelConfig.from_dict(meta["model_config"])
        if model_config is not None and (model_config.widths, model_config.dense, model_config.dropout) != (
            saved_model.widths,
            saved_model.dense,
            saved_model.dropout,
        ):
            raise ModelError(
                f"--resume continues the saved network {saved_model.to_dict()}; drop --widths "
                "or train a new model into another --out"
            )
        config, model_config = saved, saved_model
        splits = folder.read_splits()
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
        splits = make_splits(
            tracks.store.tracks,
            seed=config.seed,
            val_fraction=config.val_fraction,
            test_fraction=config.test_fraction,
            split_files=split_files,
        )
        normalizer = None

    # "auto" settings become this backend's choice, and are saved so (a resume keeps them).
    config = dataclasses.replace(config, precision=resolve_precision(config.precision))
    train_rows = tracks.rows_of(splits["train"])
    valid_rows = np.sort(tracks.rows_of(splits["valid"]))  # storage order: validation streams the store
    if normalizer is None:
        normalizer = fit_normalizer(tracks.store, train_rows, seed=config.seed)
    crop_frames = crop_frames_for(config.crop_seconds, spec.frames_per_second)
    if crop_frames < 2 ** len(model_config.widths):
        raise ModelError(
            f"--crop-seconds {config.crop_seconds} gives {crop_frames} frames, fewer than the "
            f"{2 ** len(model_config.widths)} that {len(model_config.widths)} pooling blocks need"
        )
    # Steps come from the whole split; the stream itself is built once the runner knows the ranks.
    probe = TrainStream(
        tracks.store, train_rows, tracks.columns["label"][train_rows], len(label_names), normalizer, crop_frames, config
    )
    steps_per_epoch = probe.steps_per_epoch
    total_steps = config.steps or config.epochs * steps_per_epoch
    tx = make_optimizer(config, total_steps)
    runner = make_parallel(
        config.parallel, model_config, tx, devices=devices, batch_size=config.batch_size, precision=config.precision
    )
    ranks, mine = local_ranks(runner)
    stream = probe
    if ranks > 1:
        labels = tracks.columns["label"][train_rows]
        stream = TrainStream(
            tracks.store,
            train_rows,
            labels,
            len(label_names),
            normalizer,
            crop_frames,
            config,
            ranks=ranks,
            local_ranks=mine,
        )

    static_meta = {
        "label_names": label_names,
        "spec": spec.to_dict(),
        "spec_hash": spec.hash,
        "model_config": model_config.to_dict(),
        "train_config": config.to_dict(),
        "normalizer": normalizer.to_dict(),
        "crop_frames": crop_frames,
        "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "splits_method": splits["method"],
    }
    checkpoints = Checkpoints(out_dir)
    state = jax.tree.map(np.asarray, init_state(model_config, tx, seed=config.seed))
    meta = None
    if resuming:
        state, meta = checkpoints.restore("latest", state)  # resumes at state["step"]
    return {
        "folder": folder,
        "config": config,
        "model_config": model_config,
        "splits": splits,
        "normalizer": normalizer,
        "crop_frames": crop_frames,
        "valid_rows": valid_rows,
        "label_names": label_names,
        "stream": stream,
        "runner": runner,
        "checkpoints": checkpoints,
        "schedule": make_schedule(config, total_steps),
        "static_meta": static_meta,
        "state": state,
        "meta": meta,
        "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
    }


def _run(tracks: StoreTracks, out_dir: Path, prepared: dict[str, Any], *, progress, lead: bool) -> dict[str, Any]:
    """The training loop of a prepared run (every process runs it; ``lead``: process 0, which writes the files)."""
    p = prepared
    folder, config, model_config, checkpoints = p["folder"], p["config"], p["model_config"], p["checkpoints"]
    runner, stream, schedule, static_meta, state = p["runner"], p["stream"], p["schedule"], p["static_meta"], p["state"]
    normalizer, crop_frames, valid_rows, label_names = (
        p["normalizer"],
        p["crop_frames"],
        p["valid_rows"],
        p["label_names"],
    )
    total_steps, steps_per_epoch = p["total_steps"], p["steps_per_epoch"]
    n_epochs = -(-total_steps // steps_per_epoch)
    report = ProgressReporter(progress, "train", "steps")
    n_processes, n_devices = (
        jax.process_count(),
        len(runner.devices) * (jax.process_count() if config.parallel == "pmap" else 1),
    )
    if p["meta"] is not None:
        meta = p["meta"]
        sums, best = meta["epoch_sums"], meta["best_val_accuracy"]
        last_row = meta.get("metrics") or {}
        if lead:
            folder.truncate_metrics(int(state["step"]))
    else:
        if lead:
            folder.write_splits(p["splits"])
            folder.write_model({"kind": "cnn", **static_meta, "store": str(getattr(tracks.store, "path", ""))})
            folder.write_metrics([])
        sums, best = {"loss": 0.0, "accuracy": 0.0, "steps": 0}, -1.0
        last_row = {}

    eval_graphdef = make_graphdef(model_config)
    valid_labels = tracks.columns["label"][valid_rows]
    # Each process scores its share of the validation tracks; the predictions are gathered.
    share = np.array_split(valid_rows, n_processes)[jax.process_index()]

    def validate(host_state: Any) -> dict[str, Any] | None:
        if not len(valid_rows):
            return None
        predicted = np.zeros(0, np.int64)
        if len(share):
            probs, _embeddings = track_outputs(
                host_state["params"],
                host_state["batch_stats"],
                eval_graphdef,
                (frames for _row, frames in tracks.store.iter_tracks(rows=share)),
                normalizer=normalizer,
                crop_frames=crop_frames,
                max_crops=config.eval_crops,
            )
            predicted = probs.argmax(-1).astype(np.int64)
        predicted = distributed.gather_shares(predicted, len(valid_rows))
        return classification_metrics(valid_labels, predicted, len(label_names))

    step = int(state["step"])
    if lead and (why := fallback_warning()):
        warnings.warn(why, MgcWarning, stacklevel=2)
    report(
        "start",
        step,
        total_steps,
        epochs=n_epochs,
        devices=n_devices,
        backend=jax.default_backend(),
        precision=config.precision,
        batch_size=config.batch_size,
        reader_processes=config.reader_processes,
        processes=n_processes,
    )
    device_state = runner.put_state(state)
    val_accuracy = last_row.get("val_accuracy")
    timer_start, timed_examples = None, 0
    epoch_start = time.perf_counter()
    source = ReaderPool(stream, config.reader_processes) if config.reader_processes else stream
    batches = background(source.batches(step, total_steps), config.prefetch, name="mgc-batches")
    try:
        for step_index, batch in batches:
            epoch, index = divmod(step_index, steps_per_epoch)
            # This process's ranks' part of the global batch; put_batch assembles the global array.
            device_state, metrics = runner.step(device_state, runner.put_batch(batch))
            loss, accuracy = runner.scalar(metrics["loss"]), runner.scalar(metrics["accuracy"])
            step += 1
            distributed.current_step = step
            # Throughput is timed from the end of the first step, so compilation is left out.
            if timer_start is None:
                timer_start = time.perf_counter()
            else:
                timed_examples += config.batch_size
            rate = timed_examples / max(time.perf_counter() - timer_start, 1e-9)
            sums = {"loss": sums["loss"] + loss, "accuracy": sums["accuracy"] + accuracy, "steps": sums["steps"] + 1}
            report("update", step, total_steps, epoch=epoch, loss=loss, examples_per_s=rate, val_accuracy=val_accuracy)
            end_of_epoch = index + 1 == steps_per_epoch or step == total_steps
            if not end_of_epoch and not (config.checkpoint_every and step % config.checkpoint_every == 0):
                continue
            host = runner.get_state(device_state)
            position = [epoch + 1, 0] if end_of_epoch else [epoch, index + 1]
            is_best = False
            if end_of_epoch:
                val = validate(host)
                val_accuracy = None if val is None else val["accuracy"]
                last_row = {
                    "epoch": epoch + 1,
                    "step": step,
                    "train_loss": sums["loss"] / sums["steps"],
                    "train_accuracy": sums["accuracy"] / sums["steps"],
                    "val_accuracy": val_accuracy,
                    "val_macro_f1": None if val is None else val["macro_f1"],
                    "lr": float(schedule(step - 1)),
                    "examples_per_s": rate,
                    "epoch_seconds": time.perf_counter() - epoch_start,
                }
                if lead:
                    folder.append_metrics(last_row)
                report("note", step, total_steps, **last_row)
                sums = {"loss": 0.0, "accuracy": 0.0, "steps": 0}
                score = -1.0 if val_accuracy is None else val_accuracy
                # Ties go to the later, longer-trained model; without a validation split
                # the latest model is the best one.
                is_best = val_accuracy is None or score >= best
                best = max(best, score)
                epoch_start = time.perf_counter()
            meta = {
                **static_meta,
                "position": position,
                "epoch_sums": sums,
                "best_val_accuracy": best,
                "metrics": last_row,
            }
            # Best before latest: a kill between the two re-runs the epoch from the older latest.
            if is_best:
                checkpoints.save("best", host, meta)
            checkpoints.save("latest", host, meta)
    except BaseException as exc:
        report("end", step, total_steps, error=True)  # the CLI clears its bar before the error is shown
        if n_processes > 1 and isinstance(exc, Exception) and distributed.is_peer_loss(exc):
            words = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise distributed.PeerLost(
                f"another process of the run stopped at step {step} ({words}); what the latest checkpoint holds is "
                "kept: run the same command with --resume on every process to continue"
            ) from None
        raise
    finally:
        batches.close()
    summary = {
        "model_dir": str(out_dir),
        "steps": step,
        "best_val_accuracy": best if best >= 0 else None,
        "last": last_row,
        "devices": n_devices,
        "processes": n_processes,
        "parallel": config.parallel,
    }
    report("end", step, total_steps, **summary)
    return summary
