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

Kind ``head`` (``mgc train --model stats`` or ``--backbone NAME``), one generation G at a time::

      model.json                 {"kind": "head", "featurizer", "level" ("patch" or "track"; absent: track),
                                 "patches" (per track, patch level; else null), "head", "hidden", "fine_tuned",
                                 "label_names", "spec", "dim", "C", "vectors", "metrics",
                                 "generation": G, "files": {"head", "splits"[, "backbone"]}} (written last)
      head-G.npz                 mean, std (dim,); weights (dim or hidden, n_classes), bias (n_classes,);
                                 an MLP also hidden_weights (dim, hidden), hidden_bias (hidden,)
      splits-G.json              the splits this generation was trained on (as splits.json)
      backbone-G.npz             a fine-tuned backbone's variables, named as in the shipped weights
                                 (``models/pretrained/musicnn_msd.npz``); only when fine_tuned
      vectors/                   the frozen backbone's (or the statistics') cached vectors, an
                                 ``engine.vectors`` store keyed by track id, path, size and mtime
                                 (tab-separated; a patch head's: that key, a tab and the patch number);
                                 elsewhere when ``vectors`` (``--vectors DIR``) names a shared folder

A head from before generations has ``head.npz``, ``splits.json`` and ``backbone.npz`` and no ``files``.

Every file is written atomically (:mod:`engine.atomic`: a temporary name,
fsync, rename, fsync of the folder): a killed run leaves the previous version
or the new one, never half a file. A head changes from one complete
generation to the next: generation G+1's files are written under their new
names, then ``model.json`` naming them (its rename is the commit), then
generation G's files are removed. A kill at any moment leaves the old head or
the new one, never a mix (nor a splits file the head was not trained on).

Ownership: a training writes only into an empty folder or one of its own kind
(:meth:`ModelFolder.claim`: a head never replaces a CNN, nor a CNN a head, and
a folder of files that are not mgc's is refused before anything is made in
it, its lock file included). Evaluation and report folders given with
``--out`` must be new, empty or an earlier output of the same kind (their
``metrics.json`` / ``report.json`` carry ``"format": "mgc-evaluation"`` /
``"mgc-report"``), see :func:`output_folder_lock`.
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
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mgc.engine import FolderLock, atomic
from mgc.models.config import LEVELS
from mgc.models.errors import ModelError

__all__ = [
    "EVAL_FILES",
    "KINDS",
    "ModelFolder",
    "check_folder_path",
    "claim_output_folder",
    "incomplete",
    "output_folder_lock",
    "retrain_command",
]

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
#: A head's generation files, and the fixed names of a head written before generations.
GENERATION = re.compile(r"(head|backbone)-[0-9]+\.npz|splits-[0-9]+\.json")
LEGACY_HEAD = (HEAD_FILE, BACKBONE_FILE, SPLITS_JSON)
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


def retrain_command(root: str | Path, meta: Any = None) -> str:
    """The command that trains the model of folder ``root`` again (``meta``: its ``model.json``, if readable).

    A head names its featurizer (``--model stats`` or ``--backbone NAME``); anything else is a CNN.
    """
    featurizer = meta.get("featurizer") if isinstance(meta, dict) and meta.get("kind") == "head" else None
    if featurizer == "stats":
        kind = " --model stats"
    elif featurizer:
        kind = f" --backbone {featurizer}"
    else:
        kind = ""
    return f"`mgc train STORE --out {root}{kind} ...`"


def incomplete(root: str | Path, what: str, meta: Any = None) -> ModelError:
    """The one wording of a model folder with a missing or damaged file: ``what`` is wrong, train it again."""
    return ModelError(f"{what}; the model folder is incomplete: train it again with {retrain_command(root, meta)}")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing: is {path.parent} a model folder written by `mgc train`?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise incomplete(path.parent, f"{path} is damaged (not valid JSON: {error})") from None
    except OSError as error:
        raise ModelError(f"cannot read the {what} {path}: {error.strerror or error}") from None


def check_folder_path(path: str | Path, option: str = "--out") -> None:
    """Refuse a model folder path that is, or lies under, a file (a new path, or an existing folder, passes).

    Raises
    ------
    ModelError
        "afile.txt is a file, not a model folder; choose another --out".
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ModelError(f"{path} is a file, not a model folder; choose another {option}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ModelError(f"{parent} is a file, so {path} cannot be a model folder; choose another {option}")
            return


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
        self.vectors_dir = self.root / VECTORS

    def _description(self) -> Any:
        """``model.json``'s content, or None when it is absent."""
        return _read_json(self.model_json, "model description") if self.model_json.exists() else None

    def owner(self) -> str | None:
        """The kind of model the folder holds (``cnn``, ``head``), or None when nothing of mgc's is in it.

        A ``model.json`` without ``kind`` but with ``model_config`` is a CNN from before the field existed;
        a ``model.json`` of anything else (not a JSON object, no kind mgc knows) is not mgc's.
        """
        try:
            data = self._description()
        except ModelError:
            return None
        if not isinstance(data, dict):
            return None
        if "kind" in data:
            return str(data["kind"]) if data["kind"] in KINDS else None
        return "cnn" if "model_config" in data else None

    def claim(self, kind: str) -> None:
        """Refuse to write a model of ``kind`` into a folder that holds anything else (call it under the lock).

        An empty folder (or one with only the lock) is claimed; a folder of the same kind is the caller's to
        replace or resume; a folder of the other kind, or of files that are not mgc's, is refused untouched,
        and so is a path that is a file (``--out afile.txt``).
        """
        check_folder_path(self.root)
        owner = self.owner()
        if owner == kind:
            return
        if owner is not None:
            raise ModelError(f"{self.root} holds a {owner} model; train the {kind} into another --out")
        others = sorted(p.name for p in self.root.iterdir() if p.name != LOCK_NAME) if self.root.is_dir() else []
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise ModelError(f"{self.root} is not empty ({shown}) and holds no mgc model; choose another --out")

    def kind(self) -> str:
        """The kind ``model.json`` records: ``cnn`` where it records none or is absent (a CNN being trained).

        Raises
        ------
        ModelError
            When ``model.json`` exists but is not a JSON object.
        """
        data = self._description()
        if data is None:
            return "cnn"
        if not isinstance(data, dict):
            raise incomplete(self.root, f"{self.model_json} is not a model description (a JSON object)")
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

    # a head: one generation of files, committed by model.json ----------------------
    def head_files(self, meta: dict[str, Any] | None = None) -> dict[str, Path]:
        """The files of the head's current generation: ``head``, ``splits`` and, when fine-tuned, ``backbone``.

        ``model.json`` names them (``files``); a head written before generations has the fixed names.
        """
        meta = self._description() if meta is None else meta
        files = meta.get("files") if isinstance(meta, dict) else None
        if not isinstance(files, dict):
            files = {"head": HEAD_FILE, "splits": SPLITS_JSON}
            if isinstance(meta, dict) and meta.get("fine_tuned"):
                files["backbone"] = BACKBONE_FILE
        return {key: self.root / str(name) for key, name in files.items()}

    def write_head(
        self, arrays: dict[str, np.ndarray], meta: dict[str, Any], *, splits: dict[str, Any], backbone: bytes | None
    ) -> None:
        """Write a head as a new generation: new files under new names, then ``model.json`` naming them.

        ``model.json``'s atomic rename is the commit: a kill at any moment leaves the previous head (its
        files are removed only after the commit) or the new one, never a mix.

        Parameters
        ----------
        arrays : dict
            ``mean``, ``std``, ``weights``, ``bias`` and, for an MLP, ``hidden_weights``, ``hidden_bias``.
        meta : dict
            ``model.json``'s content, ``"kind": "head"`` included (``generation`` and ``files`` are added).
        splits : dict
            The splits the head was trained on (as :meth:`read_splits` returns them).
        backbone : bytes or None
            A fine-tuned backbone's ``.npz`` bytes.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        previous = self._description()
        generation = int(previous.get("generation", 0)) + 1 if isinstance(previous, dict) else 1
        files = {"head": f"head-{generation}.npz", "splits": f"splits-{generation}.json"}
        if backbone is not None:
            files["backbone"] = f"backbone-{generation}.npz"
            atomic.write_bytes(self.root / files["backbone"], backbone)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic.write_bytes(self.root / files["head"], buffer.getvalue())
        atomic.write_json(self.root / files["splits"], splits, sort_keys=False)
        atomic.write_json(self.model_json, {**meta, "generation": generation, "files": files}, sort_keys=False)
        for path in self.root.iterdir():  # the previous generations' files, now unreferenced
            if path.name not in files.values() and (GENERATION.fullmatch(path.name) or path.name in LEGACY_HEAD):
                path.unlink(missing_ok=True)

    def read_head(self) -> tuple[dict[str, Any], dict[str, np.ndarray], Path | None]:
        """A head's ``model.json``, its arrays and its fine-tuned backbone file (None when frozen), checked.

        Raises
        ------
        ModelError
            When a file is missing or damaged, or the arrays disagree in shape.
        """
        meta = _read_json(self.model_json, "model description")
        if not isinstance(meta, dict):
            raise incomplete(self.root, f"{self.model_json} is not a model description (a JSON object)")
        missing = [k for k in ("featurizer", "label_names", "spec") if k not in meta]
        if missing:
            what = f"{self.model_json} lacks {', '.join(missing)}: it is not a head's description"
            raise incomplete(self.root, what, meta)
        level, patches = meta.get("level", "track"), meta.get("patches")
        if level not in LEVELS or (
            level == "patch" and (isinstance(patches, bool) or not isinstance(patches, int) or patches < 1)
        ):
            what = f"{self.model_json} has level {level!r} with patches {patches!r}: not a head's description"
            raise incomplete(self.root, what, meta)
        files = self.head_files(meta)
        try:
            with np.load(files["head"], allow_pickle=False) as head:
                arrays = {k: head[k] for k in head.files}
        except FileNotFoundError:
            raise incomplete(self.root, f"{files['head']} is missing", meta) from None
        except IsADirectoryError:
            raise incomplete(self.root, f"{files['head']} is a folder, not a head's .npz file", meta) from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise incomplete(self.root, f"{files['head']} is damaged (not a valid .npz: {error})", meta) from None
        _check_head_arrays(arrays, len(meta["label_names"]), files["head"], meta, self.root)
        backbone = files.get("backbone") if meta.get("fine_tuned") else None
        if meta.get("fine_tuned") and (backbone is None or not backbone.is_file()):
            name = f" {backbone.name}" if backbone is not None else ""
            raise incomplete(
                self.root, f"{self.root} is a fine-tuned head but its backbone file{name} is missing", meta
            )
        return meta, arrays, backbone

    # splits.json -----------------------------------------------------------------
    def write_splits(self, splits: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic.write_json(self.splits_json, splits, sort_keys=False)

    def read_splits(self) -> dict[str, Any]:
        """The splits the model was trained on (a head's generation names its own file)."""
        meta = self._description()
        is_head = isinstance(meta, dict) and meta.get("kind") == "head"
        path = self.head_files(meta)["splits"] if is_head else self.splits_json
        splits = _read_json(path, "splits file")
        if not isinstance(splits, dict) or not all(isinstance(splits.get(s), list) for s in ("train", "valid", "test")):
            raise ModelError(f"{path} is not a splits file (train, valid and test lists)")
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


def _check_head_arrays(arrays: dict[str, np.ndarray], n_classes: int, path: Path, meta: Any, root: Path) -> None:
    names = set(arrays)
    if not set(HEAD_ARRAYS) <= names or names - set(HEAD_ARRAYS) - set(MLP_ARRAYS):
        expected = f"{list(HEAD_ARRAYS)} (+ {list(MLP_ARRAYS)})"
        raise incomplete(root, f"{path} holds {sorted(names)}, not a head's arrays {expected}", meta)
    dim = arrays["mean"].shape[0]
    width = arrays["hidden_weights"].shape[1] if "hidden_weights" in arrays else dim
    expected = {"std": (dim,), "weights": (width, n_classes), "bias": (n_classes,)}
    if "hidden_weights" in arrays:
        expected.update({"hidden_weights": (dim, width), "hidden_bias": (width,)})
    wrong = [f"{k} {arrays[k].shape}" for k, shape in expected.items() if arrays[k].shape != shape]
    if wrong:
        raise incomplete(root, f"{path}: arrays of disagreeing shapes ({', '.join(wrong)})", meta)


#: The ``format`` field that marks an output folder's main file as mgc's: the folder kind -> (file, format).
OUTPUT_MARKERS = {
    "evaluation": ("metrics.json", "mgc-evaluation"),
    "report": ("report.json", "mgc-report"),
    "demo": ("demo.json", "mgc-demo"),
}
#: The keys that mark the same file as written by mgc before it carried ``format``.
_LEGACY_KEYS = {
    "evaluation": {"label_names", "confusion", "split"},
    "report": {"sampled", "spectra", "files"},
    "demo": {"config"},
}


def claim_output_folder(out: str | Path, kind: str) -> None:
    """Refuse ``out`` unless it is new, empty or holds an earlier output of the same ``kind`` (read only).

    The kind's main file (:data:`OUTPUT_MARKERS`) carries ``format``; one written before the field
    existed is recognised by its keys. Anything else (a user's site, another kind of output, a file)
    is refused before it is touched.
    """
    out = Path(out)
    marker, expected = OUTPUT_MARKERS[kind]
    if out.exists() and not out.is_dir():
        raise ModelError(f"{out} is a file, not a folder; choose another --out")
    others = [p.name for p in out.iterdir() if p.name != LOCK_NAME] if out.is_dir() else []
    if others:
        try:
            data = json.loads((out / marker).read_text(encoding="utf-8"))
            ours = data.get("format") == expected or ("format" not in data and _LEGACY_KEYS[kind] <= set(data))
        except (OSError, ValueError, AttributeError, TypeError):
            ours = False
        if not ours:
            shown = ", ".join(sorted(others)[:3]) + (", ..." if len(others) > 3 else "")
            raise ModelError(f"{out} holds files that are not an mgc {kind} ({shown}); choose another --out")


def output_folder_lock(out: str | Path, kind: str) -> FolderLock:
    """Exclusive lock of an evaluation's or a report's folder ``out`` (created), once :func:`claim_output_folder`.

    One run writes the folder at a time.
    """
    claim_output_folder(out, kind)
    Path(out).mkdir(parents=True, exist_ok=True)
    return FolderLock(
        out,
        what=f"another {kind}",
        advice="wait for it to finish, or pass another --out",
        error=ModelError,
        invalid=ModelError,
        name=LOCK_NAME,
    )
