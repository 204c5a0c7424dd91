"""Training a head on a featurizer's vectors (``mgc train STORE --model stats`` or ``--backbone NAME``).

The vectors of every labelled track (:mod:`mgc.models.kinds.featurizers`) are
computed once into the vector cache (:mod:`mgc.models.training.vectors`), the
head's layers are fitted on the training split's (:mod:`mgc.models.training.fit`)
and, with ``fine_tune_epochs``, the backbone and head are then trained
together (:mod:`mgc.models.training.finetune`). The folder is written through
:meth:`mgc.models.folder.ModelFolder.write_head`.

At the ``patch`` level (the default) every patch of a training track is an
example labelled with its track's genre; the splits stay by track (no patch of
a valid or test track is fitted on), and accuracies are per track, from the
mean of its patches' probabilities, as prediction computes them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from mgc.models.config import BUILTIN_MODELS, HEADS, LEVELS, HeadConfig
from mgc.models.data.splits import make_splits, parse_split_files
from mgc.models.errors import ModelError
from mgc.models.folder import ModelFolder
from mgc.models.kinds.featurizers import check_featurizer, resolve_featurizer
from mgc.models.kinds.head import HeadModel
from mgc.models.training.finetune import fine_tune
from mgc.models.training.fit import fit_linear, fit_mlp
from mgc.models.training.vectors import cached_vectors

__all__ = ["standardisation", "train_head"]


def standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and standard deviation ``(dim,)`` a head standardises its vectors ``(n, dim)`` with.

    A feature that is constant but for float32 rounding (a backbone unit that is dead after its
    ReLU varies by 1e-8 with the batch its crop ran in) gets a spread of 1, not its rounding noise:
    standardised, that noise would be a feature of unit variance, and the fit would change from run
    to run with it.
    """
    mean = x.mean(0)
    std = x.std(0)
    std[std <= 1e-5 * (1.0 + np.abs(mean))] = 1.0
    return mean, std


def train_head(
    store: Any,
    out_dir: str | Path,
    featurizer: str = HeadConfig.featurizer,
    *,
    level: str = HeadConfig.level,
    patches: int = HeadConfig.patches,
    head: str = HeadConfig.head,
    hidden: int = HeadConfig.hidden,
    c: float = HeadConfig.c,
    max_iter: int = HeadConfig.max_iter,
    fine_tune_epochs: int = HeadConfig.fine_tune_epochs,
    fine_tune_lr: float = HeadConfig.fine_tune_lr,
    vectors_dir: str | Path | None = None,
    seed: int = 0,
    split_files=None,
    workers: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Train a head on one vector per track of ``store`` (see the module docstring).

    Parameters
    ----------
    store : str, Path or engine.FeatureStore
    out_dir : str or Path
        The model folder (created; its cached vectors are reused by a second run).
    featurizer : str
        ``stats``, or a backbone (:data:`mgc.models.config.BACKBONES`; ``musicnn`` is
        :data:`~mgc.models.config.DEFAULT_BACKBONE`, the measured best).
    level : {"patch", "track"}
        Fit on one vector per 3 s patch of each training track (the track's
        prediction is then the mean of its patches' probabilities), or on one
        vector per track.
    patches : int >= 1
        Patch level: patches per track at most (evenly spaced), in training and
        prediction, so that long tracks do not dominate the fit.
    head : str
        ``linear`` (logistic regression, L-BFGS) or ``mlp`` (one hidden ReLU layer, Adam).
    hidden : int
        Hidden units of an ``mlp`` head.
    c : float
        Inverse L2 strength, as scikit-learn's ``C`` (> 0).
    max_iter : int
        L-BFGS iterations at most (linear head).
    fine_tune_epochs : int
        Backbones only: after the head is fitted on the frozen vectors, train
        the backbone and the head together for this many passes over the
        training tracks (0: keep the backbone frozen). See :mod:`mgc.models.training.finetune`.
    fine_tune_lr : float
        Peak Adam learning rate of the fine-tuning.
    vectors_dir : str or Path, optional
        Where to cache the per-track vectors (default ``MODEL_DIR/vectors``).
        Heads trained on the same store with the same featurizer can share one
        folder, so that the vectors (a backbone pass over every track) are
        computed once for all of them. A folder of another featurizer or spec is
        refused.
    seed, split_files :
        As for :func:`mgc.models.train` (the same splits for the same store and seed).
    workers : int, optional
        Decoding processes (backbones read the tracks' audio files).

    Returns
    -------
    dict
        ``model_dir``, ``featurizer``, ``level``, ``patches`` (None at the
        track level), ``vectors_fitted`` (training examples), ``head``,
        ``train_accuracy``, ``valid_accuracy`` (per track),
        ``iterations`` (L-BFGS iterations or Adam steps),
        ``seconds`` (fit only), ``vector_seconds`` and, when fine-tuned,
        ``fine_tune`` (see :func:`mgc.models.training.finetune.fine_tune`).
    """
    from mgc.engine import FeatureStore, ProgressReporter

    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    spec = store.spec.to_dict()
    featurizer = resolve_featurizer(featurizer)
    check_featurizer(featurizer, spec)
    if head not in HEADS:
        raise ModelError(f"unknown head {head!r}; choose one of {HEADS}")
    if level not in LEVELS:
        raise ModelError(f"unknown level {level!r}; choose one of {', '.join(LEVELS)}")
    if isinstance(patches, bool) or not isinstance(patches, int) or patches < 1:
        raise ModelError(f"patches must be a positive integer, got {patches!r}")
    if fine_tune_epochs and featurizer != "stats" and featurizer not in BUILTIN_MODELS:
        raise ModelError(
            f"fine-tuning trains one network's penultimate layer: give --backbone {' or '.join(BUILTIN_MODELS)}, "
            f"not {featurizer}"
        )
    if not c > 0:
        raise ModelError(f"C must be positive, got {c}")
    if fine_tune_epochs and featurizer == "stats":
        raise ModelError("fine-tuning needs a backbone (--backbone); the stats model has no network to tune")
    if hidden < 1:
        raise ModelError(f"hidden units must be at least 1, got {hidden}")
    split_files = parse_split_files(split_files) if split_files else None  # refused before the folder is made
    out_dir = Path(out_dir)
    folder = ModelFolder(out_dir)
    folder.claim("head")  # before the lock file is made in it
    with folder.lock():
        folder.claim("head")
        splits = make_splits(store.tracks, seed=seed, split_files=split_files)
        label_names = [str(n) for n in store.label_names]
        ids = store.tracks.track_id
        rows = {name: np.sort(ids.lookup(splits[name])).astype(np.int64) for name in ("train", "valid", "test")}
        start = time.perf_counter()
        report = ProgressReporter(progress, "train", "steps")
        # Every labelled track's vector is cached (evaluation of any split reads it back).
        every = np.concatenate([rows["train"], rows["valid"], rows["test"]])
        cache = Path(vectors_dir) if vectors_dir is not None else folder.vectors_dir
        own = vectors_dir is None
        per_patch = patches if level == "patch" else None
        cached = cached_vectors(store, every, cache, featurizer, progress, workers, own=own, patches=per_patch)
        vector_seconds = time.perf_counter() - start
        labels = store.tracks.label[every]
        position = np.arange(len(every))
        is_train = position < len(rows["train"])
        is_valid = (position >= len(rows["train"])) & (position < len(rows["train"]) + len(rows["valid"]))
        if level == "patch":  # every patch an example, labelled with its track's genre
            vectors, owner, available = cached
        else:
            vectors, available = cached
            owner = np.flatnonzero(available)
            vectors = vectors[available]
        train_x, train_y = vectors[is_train[owner]], labels[owner[is_train[owner]]]
        if not len(train_x):
            raise ModelError("no training vectors (every training track failed?)")
        mean, std = standardisation(train_x)
        start = time.perf_counter()
        if head == "linear":
            report("start", 0, max_iter)
            weights, bias, iterations = fit_linear((train_x - mean) / std, train_y, len(label_names), c, max_iter)
            params = {"weights": weights.astype(np.float32), "bias": bias.astype(np.float32)}
        else:
            in_valid = is_valid[owner]
            valid = ((vectors[in_valid] - mean) / std, labels[owner[in_valid]])
            report("start", 0, None)
            params, iterations = fit_mlp(
                (train_x - mean) / std, train_y, len(label_names), c, hidden, seed=seed, valid=valid
            )
        seconds = time.perf_counter() - start
        report("end", iterations, iterations)
        model = HeadModel(
            out_dir, featurizer, label_names, spec, mean, std, meta={}, level=level, patches=per_patch, **params
        )
        # Per track, as prediction computes it (a patch head: the mean of the track's patches' probabilities).
        track_probabilities, _ = model.track_outputs(vectors, owner, len(every))

        def accuracy(mask):
            mask = mask & available
            if not mask.any():
                return None
            return float((track_probabilities[mask].argmax(1) == labels[mask]).mean())

        summary = {
            "model_dir": str(out_dir),
            "featurizer": featurizer,
            "level": level,
            "patches": per_patch,
            "vectors_fitted": int(len(train_x)),
            "head": head,
            "train_accuracy": accuracy(is_train),
            "valid_accuracy": accuracy(is_valid),
            "iterations": iterations,
            "seconds": seconds,
            "vector_seconds": vector_seconds,
        }
        backbone = None
        if fine_tune_epochs:
            tuned = fine_tune(
                store,
                model,
                rows["train"],
                rows["valid"],
                epochs=fine_tune_epochs,
                lr=fine_tune_lr,
                c=c,
                seed=seed,
                workers=workers,
                progress=progress,
            )
            params = tuned.pop("params")
            backbone = tuned.pop("backbone")
            summary["fine_tune"] = tuned
            summary["train_accuracy"] = tuned["train_accuracy"]
            summary["valid_accuracy"] = tuned["valid_accuracy"]
        meta = {
            "kind": "head",
            "featurizer": featurizer,
            "level": level,
            "patches": per_patch,
            "head": head,
            "hidden": hidden if head == "mlp" else None,
            "fine_tuned": bool(fine_tune_epochs),
            "label_names": label_names,
            "spec": spec,
            "dim": int(mean.size),
            "C": c,
            "vectors": str(Path(vectors_dir).resolve()) if vectors_dir is not None else None,
            "metrics": summary,
        }
        folder.write_head({"mean": mean, "std": std, **params}, meta, splits=splits, backbone=backbone)
    return summary
