"""Track-level predictions over evenly spaced crops, and classification metrics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from mgc.models.data.pipeline import Normalizer
from mgc.models.inference import infer_with

__all__ = ["track_outputs", "classification_metrics"]


def track_outputs(
    params: Any,
    batch_stats: Any,
    graphdef: Any,
    tracks: Iterable[np.ndarray],
    *,
    normalizer: Normalizer,
    crop_frames: int,
    max_crops: int | None = None,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean softmax over evenly spaced crops of each track, and the mean penultimate-layer vector.

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
    probabilities : np.ndarray [shape=(n_tracks, n_classes)]
    embeddings : np.ndarray [shape=(n_tracks, dim)]
        Not normalised.
    """
    results = infer_with(
        params,
        batch_stats,
        graphdef,
        enumerate(tracks),
        normalizer=normalizer,
        crop_frames=crop_frames,
        batch_size=batch_size,
        max_crops=max_crops,
    )
    probabilities, embeddings = [], []
    for result in results:
        probabilities.append(result.probabilities)
        embeddings.append(result.embedding)
    if not probabilities:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return np.stack(probabilities), np.stack(embeddings)


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
