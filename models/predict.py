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

__all__ = ["predict"]


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

    Returns
    -------
    list of dict
        One per file, in input order: ``path``, ``top`` (a list of
        ``{"label", "probability"}``, best first) and ``error`` (``None``, or
        why the file could not be used; its ``top`` is then empty).
    """
    from engine import AudioError, EngineError, FeatureSpec, compute_features, find_audio_files

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
            logmel = compute_features(str(path), compute_spec)["logmel"]
        except (AudioError, EngineError, OSError) as error:
            kind = getattr(error, "kind", type(error).__name__)
            result["error"] = f"{kind}: {error}"
            results.append(result)
            continue
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
        result["top"] = [{"label": model.label_names[i], "probability": float(probs[i])} for i in best]
        results.append(result)
    return results
