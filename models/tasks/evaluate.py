"""Evaluate a trained model on a split of a feature store."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from mgc.engine import atomic
from mgc.models.config import CHECKPOINTS, EVAL_SPLITS, NEAREST_K
from mgc.models.data.stores import StoreTracks
from mgc.models.errors import ModelError
from mgc.models.folder import EVAL_FILES, OUTPUT_MARKERS, ModelFolder, output_folder_lock
from mgc.models.kinds.base import Model
from mgc.models.kinds.loader import load_model
from mgc.models.metrics import classification_metrics

__all__ = ["evaluate"]


def _rows_for(split: str, ids: list[str] | None, tracks: StoreTracks) -> np.ndarray:
    """Store rows of the labeled tracks of ``split`` (``ids``: the model's saved split, None for ``all``).

    Raises :class:`ModelError` when there are none: a store without labels, a split none of whose tracks
    is in the store, or whose tracks are unlabelled there.
    """
    labeled = np.flatnonzero(tracks.columns["label"] >= 0)
    if not labeled.size:
        raise ModelError(
            f"{tracks.store.path} has no labelled tracks: evaluation needs labels "
            "(extract a folder per genre, or a manifest with a label column)"
        )
    if ids is None:
        return labeled
    if not ids:
        raise ModelError(f"the model's {split} split is empty; try --split all or another split")
    # Vectorised membership (the StringColumn's isin): no loop over a million rows.
    member = np.asarray(tracks.columns["track_id"].isin(ids))
    rows = labeled[member[labeled]].astype(np.int64)
    if not member.any():
        raise ModelError(
            f"none of the model's {split} tracks is in this store; evaluate another store with --split all"
        )
    if not rows.size:
        raise ModelError(
            f"the model's {int(member.sum())} {split} track(s) in {tracks.store.path} are unlabelled there: "
            "evaluation needs labels; try --split all"
        )
    return rows


def evaluate(
    model_dir: str | Path,
    store: Any,
    *,
    split: str = "test",
    out_dir: str | Path | None = None,
    max_crops: int | None = None,
    which: str = CHECKPOINTS[0],
    precision_k: int = NEAREST_K,
    progress: Any = None,
) -> dict[str, Any]:
    """Track-level evaluation: mean softmax over evenly spaced crops covering each track.

    Parameters
    ----------
    model_dir : str or Path
        A folder written by :func:`mgc.models.train`.
    store : str, Path or engine.FeatureStore
        A store made with the model's FeatureSpec (checked).
    split : str
        ``train``, ``valid``, ``test`` (the model's saved split) or ``all`` labeled tracks.
    out_dir : str or Path, optional
        Where to write ``metrics.json``, ``confusion_matrix.png``,
        ``training_curves.png`` and ``predictions.jsonl``; default ``MODEL_DIR/eval-SPLIT``.
    max_crops : int, optional
        Cap on crops per track (default: enough to cover the track).
    which : str
        ``best`` or ``latest`` checkpoint.
    precision_k : int
        Neighbours per track for ``genre_precision_at_k``.
    progress : callable, optional
        Receives ``engine.ProgressEvent`` values: task ``evaluate``, unit
        ``tracks``, ``total`` the split's tracks (updates at most every 0.1 s;
        a head model that reads its cached vectors sends only ``start`` and
        ``end``), then task ``neighbours``, unit ``queries`` (see
        ``engine.neighbours.genre_precision_at_k``).

    Returns
    -------
    dict
        Accuracy, macro-F1, per-class precision/recall/F1/support, the
        confusion matrix, ``label_names``, the paths of the files written, and
        ``genre_precision_at_k``: the share of each track's ``k`` nearest
        neighbours in the split (cosine similarity of the embeddings ``mgc
        embed`` writes) that carry its true label, as ``k``, ``precision``,
        ``per_label``, ``queries`` (a seeded sample of at most 10,000 tracks;
        neighbours come from the whole split), ``chance`` (the same share
        for random neighbours), ``k_requested`` (``k`` is lowered to the
        split's tracks less one) and ``note`` (``""``, or for a person why
        ``k`` was lowered, or why the figure says nothing: no two tracks of the
        split share a label).

    Raises
    ------
    ModelError
        Bad split, a store with another FeatureSpec, without labelled tracks
        (in the split) or with labels the model does not know, a
        training writing into ``model_dir`` (the model is read under the
        folder's shared lock, see :mod:`mgc.models.folder`), or another evaluation
        writing into the same output folder (locked for the whole pass).
    """
    model_dir = Path(model_dir)
    if split not in EVAL_SPLITS:
        raise ModelError(f"unknown split {split!r}; use {', '.join(EVAL_SPLITS[:-1])} or {EVAL_SPLITS[-1]}")
    folder = ModelFolder(model_dir)
    # The checkpoint and splits.json of one training, read under the readers' lock (released here:
    # the evaluation itself works on the model in memory).
    with folder.lock(shared=True):
        model = load_model(model_dir, which)
        split_ids = None if split == "all" else folder.read_splits()[split]
    tracks = StoreTracks.of(store)
    model.check_store(tracks.store, where=f"the model in {model_dir}")
    rows = _rows_for(split, split_ids, tracks)
    store_names = [str(n) for n in tracks.store.label_names]
    unknown = sorted({store_names[label] for label in tracks.columns["label"][rows]} - set(model.label_names))
    if unknown:
        raise ModelError(f"the store has labels the model does not know: {unknown}; model labels: {model.label_names}")
    # Store label index -> model label index, by name: the two may order labels differently.
    to_model = {i: model.label_names.index(n) for i, n in enumerate(store_names) if n in model.label_names}
    y_true = np.asarray([to_model[label] for label in tracks.columns["label"][rows]], np.int64)
    out = Path(out_dir) if out_dir is not None else folder.eval_dir(split)
    if out.resolve() == model_dir.resolve():
        raise ModelError(f"--out must be a folder of its own, not the model folder {model_dir}")
    # Locked before the long pass, so that a second evaluation into the same folder fails at once.
    with output_folder_lock(out, "evaluation"):
        return _evaluate_into(
            out,
            model,
            model_dir,
            tracks,
            rows,
            y_true,
            split=split,
            max_crops=max_crops,
            which=which,
            precision_k=precision_k,
            progress=progress,
        )


def _outputs(
    model: Model, store: Any, rows: np.ndarray, *, max_crops: int | None, progress: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``model.store_outputs`` of ``rows``, its tracks counted on ``progress`` (task ``evaluate``).

    The kinds that run a network count through :func:`mgc.models.inference.counting_tracks`
    (their ``store_outputs`` loop is theirs); another kind reports the start and the end.
    """
    from mgc.engine import ThrottledReporter
    from mgc.models.inference import counting_tracks

    total = len(rows)
    report = ThrottledReporter(progress, "evaluate", "tracks")
    report("start", 0, total)
    counting = contextlib.nullcontext() if progress is None else counting_tracks(lambda n: report("update", n, total))
    with counting:
        outputs = model.store_outputs(store, rows, max_crops=max_crops)
    report("end", total, total)
    return outputs


def _evaluate_into(
    out: Path,
    model: Model,
    model_dir: Path,
    tracks: StoreTracks,
    rows: np.ndarray,
    y_true: np.ndarray,
    *,
    split: str,
    max_crops: int | None,
    which: str,
    precision_k: int,
    progress: Any,
) -> dict[str, Any]:
    """:func:`evaluate`'s pass over ``rows`` and its files, written into the locked folder ``out``."""
    probs, embeddings, available = _outputs(model, tracks.store, rows, max_crops=max_crops, progress=progress)
    if not available.all():
        raise ModelError(f"{int((~available).sum())} of the {split} tracks have no vector (their files failed)")
    y_pred = probs.argmax(-1)
    metrics = classification_metrics(y_true, y_pred, len(model.label_names))
    paths = {key: out / name for key, name in EVAL_FILES.items()}
    from mgc.engine import neighbours

    # Does similarity follow genre? The share of each track's nearest neighbours (by the
    # embedding `mgc embed` writes) that carry its true label.
    pool = "labelled tracks in the store" if split == "all" else f"tracks in the {split} split"
    neighbours = neighbours.genre_precision_at_k(embeddings, y_true, k=precision_k, pool=pool, progress=progress)
    neighbours["per_label"] = {model.label_names[int(i)]: v for i, v in neighbours["per_label"].items()}
    if neighbours["chance"] == 0 and split != "all":  # no two tracks of the split share a label
        neighbours["note"] += "; try --split all"
    metrics.update(
        {
            "format": OUTPUT_MARKERS["evaluation"][1],
            "genre_precision_at_k": neighbours,
            "split": split,
            "label_names": model.label_names,
            "checkpoint": which,
            "step": model.step,
        }
    )
    track_ids = tracks.columns["track_id"]
    atomic.write_text(
        paths["predictions"],
        "".join(
            json.dumps(
                {
                    "track_id": str(track_ids[row]),
                    "true": model.label_names[truth],
                    "predicted": model.label_names[pred],
                    "probability": float(p[pred]),
                }
            )
            + "\n"
            for row, truth, pred, p in zip(rows, y_true, y_pred, probs)
        ),
    )
    from mgc.models.tasks.plots import confusion_png, curves_png  # matplotlib: only when the PNGs are drawn

    confusion_png(
        metrics["confusion"],
        model.label_names,
        paths["confusion_png"],
        title=f"{split}: accuracy {metrics['accuracy']:.3f}",
    )
    files = {key: str(paths[key]) for key in ("metrics", "predictions", "confusion_png")}
    rows_log = ModelFolder(model_dir).read_metrics()
    if rows_log:
        files["curves_png"] = str(curves_png(rows_log, paths["curves_png"]))
    metrics["files"] = files
    atomic.write_json(paths["metrics"], metrics, sort_keys=False)
    return metrics
