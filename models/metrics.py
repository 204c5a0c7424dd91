"""Track-level predictions over evenly spaced crops, and classification metrics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import numpy as np

from models.input_pipeline import Normalizer, eval_crops
from models.steps import eval_step

__all__ = ["track_probabilities", "classification_metrics"]

_eval = jax.jit(eval_step, static_argnames="graphdef")


def track_probabilities(
    params: Any,
    batch_stats: Any,
    graphdef: Any,
    tracks: Iterable[np.ndarray],
    *,
    normalizer: Normalizer,
    crop_frames: int,
    max_crops: int | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """Mean softmax over evenly spaced crops of each track.

    Parameters
    ----------
    tracks : iterable of np.ndarray [shape=(n_frames, n_mels)]
        Log-mel of each track, not normalised.
    max_crops : int, optional
        Cap on crops per track; default: enough crops to cover the track.
    batch_size : int
        Crops per network call; the last call is padded so that one compiled
        shape serves every call.

    Returns
    -------
    np.ndarray [shape=(n_tracks, n_classes)]
    """
    totals: list[np.ndarray] = []
    counts: list[int] = []
    pending_x: list[np.ndarray] = []
    pending_owner: list[np.ndarray] = []

    def run(final: bool) -> None:
        x, owner = np.concatenate(pending_x), np.concatenate(pending_owner)
        done = 0
        while len(x) - done >= batch_size or (final and done < len(x)):
            take = min(batch_size, len(x) - done)
            chunk = np.zeros((batch_size,) + x.shape[1:], np.float32)
            chunk[:take] = x[done : done + take]
            probs = np.asarray(_eval(params, batch_stats, chunk, graphdef=graphdef), np.float64)[:take]
            for row, track in enumerate(owner[done : done + take]):
                totals[track] = totals[track] + probs[row]
            done += take
        pending_x[:], pending_owner[:] = [x[done:]], [owner[done:]]

    for i, track in enumerate(tracks):
        crops = eval_crops(normalizer(np.asarray(track, np.float32)), crop_frames, max_crops)
        pending_x.append(crops)
        pending_owner.append(np.full(len(crops), i))
        counts.append(len(crops))
        totals.append(np.zeros(()))  # broadcasts to (n_classes,) on the first add
        if sum(len(p) for p in pending_x) >= batch_size:
            run(final=False)
    if not counts:
        return np.zeros((0, 0), np.float32)
    run(final=True)
    return (np.stack(totals) / np.asarray(counts)[:, None]).astype(np.float32)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision / recall / F1 / support and the confusion matrix.

    ``confusion[i][j]`` counts tracks of true class ``i`` predicted as ``j``.
    Classes with no predictions (or no tracks) get precision (recall) 0.
    """
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    confusion = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(np.float64)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    present = support > 0
    return {
        "n_tracks": int(y_true.size),
        "accuracy": float(tp.sum() / max(y_true.size, 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.tolist(),
        "confusion": confusion.tolist(),
    }
