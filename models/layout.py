"""The model folder: every file ``mgc train`` and ``mgc evaluate`` write, in one place.

As :mod:`engine.schema` describes a feature store, this module describes a
model folder::

    MODEL_DIR/
      .lock                      flock: held exclusively by the training writing the folder, shared by
                                 readers while they load a checkpoint (see ModelFolder.lock); the
                                 training's pid inside, or empty
      model.json                 configs, label names, FeatureSpec, normalisation, store path (JSON, at start)
      splits.json                {"method": str, "train": [track_id...], "valid": [...], "test": [...]}
      metrics.jsonl              one JSON object per finished epoch (epoch, step, train_loss, train_accuracy,
                                 val_accuracy, val_macro_f1, lr, examples_per_s, epoch_seconds)
      checkpoints/latest/STEP/   orbax checkpoint of the last saved step (items "state" and "meta", no pickle)
      checkpoints/best/STEP/     orbax checkpoint of the best validation accuracy so far
      eval-SPLIT/                what ``mgc evaluate`` writes (or the folder given with --out):
        .lock                    held exclusively by the evaluation writing this folder
        metrics.json             accuracy, macro_f1, per-class precision/recall/f1/support, confusion, ...
        predictions.jsonl        one {"track_id", "true", "predicted", "probability"} per track
        confusion_matrix.png     row-normalised confusion matrix
        training_curves.png      loss and accuracy per epoch (when metrics.jsonl has rows)

Every file is written atomically (:mod:`engine.atomic`: a temporary name,
fsync, rename, fsync of the folder): a killed run leaves the previous version
or the new one, never half a file. ``metrics.jsonl`` is rewritten whole (one
row more) per epoch; a reader still skips a torn last line, which a file
copied mid-write by another tool could have.

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

import json
from pathlib import Path
from typing import Any

from mgc.engine import FolderLock, atomic
from mgc.models.config import ModelError

__all__ = ["EVAL_FILES", "ModelFolder", "eval_folder_lock"]

LOCK_NAME = ".lock"
#: How long a training waits for readers, who hold the lock only while they load a checkpoint.
READERS_WAIT_SECONDS = 30.0

MODEL_JSON = "model.json"
SPLITS_JSON = "splits.json"
METRICS_LOG = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
CHECKPOINT_KINDS = ("latest", "best")
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

    def read_model(self) -> dict[str, Any]:
        return _read_json(self.model_json, "model description")

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
