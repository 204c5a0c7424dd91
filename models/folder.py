"""The model folder: every file of every model kind, what is written when and in which order, what is checked.

As :mod:`engine.schema` describes a feature store, this module describes a
model folder. ``model.json`` names the folder's ``kind``; the loader
(:func:`mgc.models.load_model`) dispatches on it, and nothing else asks.

Every kind::

    MODEL_DIR/
      .lock                      flock: held exclusively by the training writing the folder, shared by
                                 readers while they load a CNN's checkpoint (see ModelFolder.lock); the
                                 training's pid inside, or empty
      model.json                 {"kind": "cnn" | "head", ...}: what made the model (JSON)
      splits.json                {"method": str, "train": [track_id...], "valid": [...], "test": [...]}
      eval-SPLIT/                what ``mgc evaluate`` writes (or the folder given with --out):
        .lock                    held exclusively by the evaluation writing this folder
        metrics.json             accuracy, macro_f1, per-class precision/recall/f1/support, confusion, ...
        predictions.jsonl        one {"track_id", "true", "predicted", "probability"} per track
        confusion_matrix.png     row-normalised confusion matrix
        training_curves.png      loss and accuracy per epoch (when metrics.jsonl has rows)

Kind ``cnn`` (``mgc train``; a ``model.json`` without ``kind``, from before the
field existed, is a CNN)::

      model.json                 kind, configs, label names, FeatureSpec, normalisation, store path (at start)
      metrics.jsonl              one JSON object per finished epoch (epoch, step, train_loss, train_accuracy,
                                 val_accuracy, val_macro_f1, lr, examples_per_s, epoch_seconds)
      checkpoints/latest/STEP/   orbax checkpoint of the last saved step (items "state" and "meta", no pickle)
      checkpoints/best/STEP/     orbax checkpoint of the best validation accuracy so far

Kind ``head`` (``mgc train --model stats`` or ``--backbone NAME``)::

      model.json                 {"kind": "head", "featurizer", "head", "hidden", "fine_tuned",
                                 "label_names", "spec", "dim", "C", "vectors", "metrics"} (written last)
      head.npz                   mean, std (dim,); weights (dim or hidden, n_classes), bias (n_classes,);
                                 an MLP also hidden_weights (dim, hidden), hidden_bias (hidden,)
      backbone.npz               a fine-tuned backbone's variables, named as in the shipped weights
                                 (``models/pretrained/musicnn_msd.npz``); only when fine_tuned
      vectors/                   the frozen backbone's (or the statistics') cached vectors, an
                                 ``engine.vectors`` store (track ids are the store's); elsewhere when
                                 ``vectors`` (``--vectors DIR``) names a shared folder

Every file is written atomically (:mod:`engine.atomic`: a temporary name,
fsync, rename, fsync of the folder): a killed run leaves the previous version
or the new one, never half a file. A head is committed by its ``model.json``:
``backbone.npz`` (or the removal of a previous run's), then ``head.npz``, then
``model.json``, so a head is read only once all its files are in place.
``metrics.jsonl`` is rewritten whole (one row more) per epoch; a reader still
skips a torn last line, which a file copied mid-write by another tool could have.

Checked on open: ``model.json`` is a JSON object of a known kind; a head's
``head.npz`` holds ``mean``, ``std``, ``weights`` and ``bias`` of agreeing
shapes (a missing or damaged file is a :class:`ModelError` naming it); a
fine-tuned head's ``backbone.npz`` exists. A CNN's checkpoint is checked by
orbax as it is restored.

Concurrency: ``mgc train`` holds ``.lock`` exclusively for its whole run, so a
second training into the same folder fails at once, naming the first one's
pid. ``load_model`` (and so ``mgc predict`` and ``mgc evaluate``) holds it
shared only while it reads: reading during a training fails at once with a
clear error (orbax deletes the previous checkpoint when it saves the next),
and a training waits up to ``READERS_WAIT_SECONDS`` for readers to finish. The
kernel releases a lock when its holder dies, even by SIGKILL. An evaluation
holds its output folder's ``.lock`` exclusively, so two evaluations never
write the same files at once.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mgc.engine import FolderLock, atomic
from mgc.models.errors import ModelError

__all__ = ["EVAL_FILES", "KINDS", "ModelFolder", "eval_folder_lock"]

LOCK_NAME = ".lock"
#: How long a training waits for readers, who hold the lock only while they load a checkpoint.
READERS_WAIT_SECONDS = 30.0

MODEL_JSON = "model.json"
SPLITS_JSON = "splits.json"
METRICS_LOG = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
CHECKPOINT_KINDS = ("latest", "best")
#: The kinds a folder can hold (``model.json``'s ``kind``).
KINDS = ("cnn", "head")
HEAD_FILE = "head.npz"
BACKBONE_FILE = "backbone.npz"
VECTORS = "vectors"
#: Arrays every head.npz holds, and those of an MLP's hidden layer.
HEAD_ARRAYS = ("mean", "std", "weights", "bias")
MLP_ARRAYS = ("hidden_weights", "hidden_bias")
#: Files of an evaluation folder: key in ``evaluate()``'s ``files`` -> file name.
EVAL_FILES = {
    "metrics": "metrics.json",
    "predictions": "predictions.jsonl",
    "confusion_png": "confusion_matrix.png",
    "curves_png": "training_curves.png",
}


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing: is {path.parent} a model folder written by `mgc train`?") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"cannot read the {what} {path}: {error}") from None


class ModelFolder:
    """Paths and atomic reads and writes of one model folder.

    Parameters
    ----------
    root : str or Path
        The model folder (need not exist yet).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.model_json = self.root / MODEL_JSON
        self.splits_json = self.root / SPLITS_JSON
        self.metrics_log = self.root / METRICS_LOG
        self.checkpoints = self.root / CHECKPOINTS
        self.head_file = self.root / HEAD_FILE
        self.backbone_file = self.root / BACKBONE_FILE
        self.vectors_dir = self.root / VECTORS

    def kind(self) -> str:
        """The kind ``model.json`` records: ``cnn`` where it records none or is absent (a CNN being trained).

        Raises
        ------
        ModelError
            When ``model.json`` exists but is not a JSON object.
        """
        if not self.model_json.exists():
            return "cnn"
        data = _read_json(self.model_json, "model description")
        if not isinstance(data, dict):
            raise ModelError(f"{self.model_json} is not a model description (a JSON object)")
        return str(data.get("kind", "cnn"))

    def checkpoint_dir(self, which: str) -> Path:
        """``checkpoints/latest`` or ``checkpoints/best``."""
        if which not in CHECKPOINT_KINDS:
            raise ModelError(f"checkpoint must be one of {', '.join(CHECKPOINT_KINDS)}, got {which!r}")
        return self.checkpoints / which

    def has_checkpoint(self, which: str = "latest") -> bool:
        """True when a complete checkpoint ``which`` is saved (orbax names complete steps by number)."""
        folder = self.checkpoint_dir(which)
        return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())

    def lock(self, *, shared: bool = False) -> FolderLock:
        """The folder's lock: exclusive for the training writing it, shared for readers.

        Parameters
        ----------
        shared : bool
            A reader's lock (never creates the folder or the lock file). An
            exclusive lock creates the folder.

        Returns
        -------
        engine.FolderLock
            A context manager; entering it raises :class:`ModelError` when a
            conflicting lock is held (the message names the training's pid) or
            when ``.lock`` is a symbolic link or not a regular file.
        """
        if shared:
            return FolderLock(
                self.root,
                shared=True,
                what="a training",
                advice="wait for it to finish, or copy the folder and use the copy",
                error=ModelError,
                invalid=ModelError,
                name=LOCK_NAME,
            )
        self.root.mkdir(parents=True, exist_ok=True)
        return FolderLock(
            self.root,
            what="another training",
            advice="wait for it to finish, or train into another --out",
            error=ModelError,
            invalid=ModelError,
            wait_for_readers=READERS_WAIT_SECONDS,
            name=LOCK_NAME,
        )

    def eval_dir(self, split: str) -> Path:
        """The default folder of an evaluation of ``split``."""
        return self.root / f"eval-{split}"

    # model.json ------------------------------------------------------------------
    def write_model(self, data: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic.write_json(self.model_json, data, sort_keys=False)

    # a head: head.npz, backbone.npz, model.json -----------------------------------
    def write_head(self, arrays: dict[str, np.ndarray], meta: dict[str, Any], *, backbone: bytes | None) -> None:
        """Write a head: ``backbone.npz`` (or remove a previous run's), ``head.npz``, then ``model.json``.

        Parameters
        ----------
        arrays : dict
            ``mean``, ``std``, ``weights``, ``bias`` and, for an MLP, ``hidden_weights``, ``hidden_bias``.
        meta : dict
            ``model.json``'s content, ``"kind": "head"`` included.
        backbone : bytes or None
            A fine-tuned backbone's ``.npz`` bytes.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if backbone is not None:
            atomic.write_bytes(self.backbone_file, backbone)
        else:
            self.backbone_file.unlink(missing_ok=True)  # a previous run's tuned backbone
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic.write_bytes(self.head_file, buffer.getvalue())
        atomic.write_json(self.model_json, meta, sort_keys=False)

    def read_head(self) -> tuple[dict[str, Any], dict[str, np.ndarray], Path | None]:
        """A head's ``model.json``, ``head.npz`` arrays and fine-tuned backbone file (None when frozen), checked.

        Raises
        ------
        ModelError
            When a file is missing or damaged, or the arrays disagree in shape.
        """
        meta = _read_json(self.model_json, "model description")
        missing = [k for k in ("featurizer", "label_names", "spec") if k not in meta]
        if missing:
            raise ModelError(f"{self.model_json} lacks {', '.join(missing)}: it is not a head's description")
        try:
            with np.load(self.head_file, allow_pickle=False) as head:
                arrays = {k: head[k] for k in head.files}
        except FileNotFoundError:
            raise ModelError(
                f"{self.head_file} is missing: the head in {self.root} is incomplete; train it again"
            ) from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ModelError(f"{self.head_file} is damaged ({error}); train the head again") from None
        _check_head_arrays(arrays, len(meta["label_names"]), self.head_file)
        backbone = self.backbone_file if meta.get("fine_tuned") else None
        if backbone is not None and not backbone.is_file():
            raise ModelError(f"{self.root} is a fine-tuned head but its {BACKBONE_FILE} is missing")
        return meta, arrays, backbone

    # splits.json -----------------------------------------------------------------
    def write_splits(self, splits: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic.write_json(self.splits_json, splits, sort_keys=False)

    def read_splits(self) -> dict[str, Any]:
        splits = _read_json(self.splits_json, "splits file")
        if not isinstance(splits, dict) or not all(isinstance(splits.get(s), list) for s in ("train", "valid", "test")):
            raise ModelError(f"{self.splits_json} is not a splits file (train, valid and test lists)")
        return splits

    # metrics.jsonl ---------------------------------------------------------------
    def read_metrics(self) -> list[dict[str, Any]]:
        """Rows of ``metrics.jsonl`` (``[]`` when absent); a torn or damaged line is skipped."""
        try:
            text = self.metrics_log.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        rows = []
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Replace ``metrics.jsonl`` with ``rows``, atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        atomic.write_text(self.metrics_log, "".join(json.dumps(row) + "\n" for row in rows))

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Add one epoch's row (the file is small: one line per epoch)."""
        self.write_metrics(self.read_metrics() + [row])

    def truncate_metrics(self, step: int) -> None:
        """Drop rows written after checkpoint ``step`` (a run killed between the two)."""
        rows = self.read_metrics()
        kept = [row for row in rows if row.get("step", 0) <= step]
        if kept != rows or not self.metrics_log.exists():
            self.write_metrics(kept)


def _check_head_arrays(arrays: dict[str, np.ndarray], n_classes: int, path: Path) -> None:
    names = set(arrays)
    if not set(HEAD_ARRAYS) <= names or names - set(HEAD_ARRAYS) - set(MLP_ARRAYS):
        expected = f"{list(HEAD_ARRAYS)} (+ {list(MLP_ARRAYS)})"
        raise ModelError(f"{path} holds {sorted(names)}, not a head's arrays {expected}")
    dim = arrays["mean"].shape[0]
    width = arrays["hidden_weights"].shape[1] if "hidden_weights" in arrays else dim
    expected = {"std": (dim,), "weights": (width, n_classes), "bias": (n_classes,)}
    if "hidden_weights" in arrays:
        expected.update({"hidden_weights": (dim, width), "hidden_bias": (width,)})
    wrong = [f"{k} {arrays[k].shape}" for k, shape in expected.items() if arrays[k].shape != shape]
    if wrong:
        raise ModelError(f"{path}: arrays of disagreeing shapes ({', '.join(wrong)}); train the head again")


def eval_folder_lock(out: str | Path) -> FolderLock:
    """Exclusive lock of an evaluation's output folder (created): one evaluation writes it at a time."""
    Path(out).mkdir(parents=True, exist_ok=True)
    return FolderLock(
        out,
        what="another evaluation",
        advice="wait for it to finish, or pass another --out",
        error=ModelError,
        invalid=ModelError,
        name=LOCK_NAME,
    )
