"""Genre predictions for audio files, with the model's own FeatureSpec."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.checkpoint import TrainedModel, load_model
from models.metrics import track_probabilities
from models.steps import make_graphdef

__all__ = ["describe_error", "predict"]


def predict(
    model_dir: str | Path | TrainedModel,
    inputs: Sequence[str | Path] | str | Path,
    *,
    top_k: int = 3,
    max_crops: int | None = None,
    which: str = "best",
) -> list[dict[str, Any]]:
    """Top genres of each audio file (mean softmax over evenly spaced crops).

    Parameters
    ----------
    model_dir : str, Path or TrainedModel
        A folder written by :func:`models.train` (or a model loaded from one).
    inputs : path or sequence of paths
        Audio files and folders (searched recursively for audio files).
    top_k : int
        Genres reported per file.
    max_crops : int, optional
        Cap on crops per file (default: enough to cover the file).
    which : str
        ``best`` or ``latest`` checkpoint, when ``model_dir`` is a folder.

    Returns
    -------
    list of dict
        One per file, in input order: ``path``, ``top`` (a list of
        ``{"label", "probability"}``, best first) and ``error`` (``None``, or
        why the file could not be used; its ``top`` is then empty). Any
        exception while decoding, computing features or predicting one file is
        recorded there and the other files go on: ``"KIND: message"`` for an
        :class:`engine.AudioError`, the message of another mgc error, and
        ``"TYPE: message"`` (``"unexpected TYPE: ..."`` unless an OSError) for
        anything else. KeyboardInterrupt and SystemExit stop the batch.

    Raises
    ------
    ModelError
        When the model cannot be loaded, e.g. a training is writing into
        ``model_dir`` (the folder's shared lock is held only while the model
        is read, see :mod:`models.layout`).
    """
    from engine import FeatureSpec, find_audio_files

    model = model_dir if isinstance(model_dir, TrainedModel) else load_model(model_dir, which)
    spec = FeatureSpec.from_dict(model.spec)
    # Only log-mel feeds the network; skip computing the rest.
    compute_spec = dataclasses.replace(spec, features=("logmel",)) if "features" in model.spec else spec
    graphdef = make_graphdef(model.model_config)
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    results: list[dict[str, Any]] = []
    for path in find_audio_files(inputs):
        result: dict[str, Any] = {"path": str(path), "top": [], "error": None}
        try:
            result["top"] = _top_genres(path, model, compute_spec, graphdef, top_k=top_k, max_crops=max_crops)
        except Exception as error:  # one file never aborts the batch (KeyboardInterrupt is no Exception)
            result["error"] = describe_error(error)
        results.append(result)
    return results


def _top_genres(
    path: Path, model: TrainedModel, compute_spec: Any, graphdef: Any, *, top_k: int, max_crops: int | None
) -> list[dict[str, Any]]:
    """The ``top_k`` genres of one file, best first."""
    from engine import compute_features

    logmel = compute_features(str(path), compute_spec)["logmel"]
    if model.spec.get("logmel_dtype") == "float16":
        # The network was trained on float16-stored log-mel; round the same way.
        logmel = logmel.astype(np.float16).astype(np.float32)
    probs = track_probabilities(
        model.params,
        model.batch_stats,
        graphdef,
        [logmel],
        normalizer=model.normalizer,
        crop_frames=model.crop_frames,
        max_crops=max_crops,
    )[0]
    best = np.argsort(-probs, kind="stable")[:top_k]
    return [{"label": model.label_names[i], "probability": float(probs[i])} for i in best]


def describe_error(error: Exception) -> str:
    """One line saying why a file could not be used, for the ``error`` field of a prediction."""
    from engine import AudioError, MgcError

    if isinstance(error, AudioError):
        return f"{error.kind}: {error}"
    if isinstance(error, MgcError):
        return str(error)
    detail = f": {error}" if str(error) else ""
    if isinstance(error, OSError):
        return f"{type(error).__name__}{detail}"
    return f"unexpected {type(error).__name__}{detail} (please report it)"
