"""What makes a head's one vector per track: the store's statistics, or a pretrained backbone's penultimate layer.

- ``stats``: per-track means and standard deviations of the store's MFCC, of
  their frame-to-frame differences, and of its log-mel bands:
  ``2 * (2 * n_mfcc + n_mels)`` values (336 with the default spec).
- a backbone name (``musicnn-msd``, ``musicnn-mtt``): the backbone's
  penultimate layer averaged over the 3 s patches of the track, computed from
  the track's audio file with the backbone's own front-end, or read from the
  store when it holds that front-end's output (``mgc extract --preset musicnn``).

Every function yields ``(key, vector or error)`` in input order, one track at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mgc.models.config import FEATURIZERS
from mgc.models.data.inputs import decode_features, decode_logmel
from mgc.models.errors import ModelError
from mgc.models.kinds.builtin import BuiltinModel
from mgc.models.pretrained.musicnn import MUSICNN_SPEC, weights_path

__all__ = [
    "BACKBONE_BATCH",
    "audio_vectors",
    "backbone_vectors",
    "check_featurizer",
    "holds_backbone_input",
    "stats_vector",
    "store_vectors",
    "vector_dim",
]

#: Patches per backbone call: as fast as 256 on the CPU (85 against 87 patches/s) at 1.0 GB of peak memory
#: instead of 2.7 GB (the timbral convolutions' output is 2.3 GB at 256).
BACKBONE_BATCH = 64


def stats_vector(logmel: np.ndarray, mfcc: np.ndarray) -> np.ndarray:
    """Per-track statistics ``(2 * (2 * n_mfcc + n_mels),)`` of log-mel ``(T, n_mels)`` and MFCC ``(T, n_mfcc)``.

    Means and standard deviations, in this order: MFCC, MFCC frame-to-frame
    differences (zeros for a one-frame track), log-mel bands.
    """
    mfcc = np.asarray(mfcc, np.float64)
    logmel = np.asarray(logmel, np.float64)
    delta = np.diff(mfcc, axis=0) if len(mfcc) > 1 else np.zeros_like(mfcc)
    parts = [mfcc.mean(0), mfcc.std(0), delta.mean(0), delta.std(0), logmel.mean(0), logmel.std(0)]
    return np.concatenate(parts).astype(np.float32)


def check_featurizer(featurizer: str, spec: dict) -> None:
    """Refuse an unknown featurizer, or ``stats`` on a store without log-mel and MFCC."""
    if featurizer not in FEATURIZERS:
        raise ModelError(f"unknown featurizer {featurizer!r}; choose one of {FEATURIZERS}")
    if featurizer == "stats" and not {"logmel", "mfcc"} <= set(spec.get("features", [])):
        raise ModelError("the stats model needs a store with both logmel and mfcc (the default spec)")


def vector_dim(featurizer: str, spec: dict) -> int:
    """Length of a featurizer's vector for a store of ``spec``."""
    if featurizer == "stats":
        return 2 * (2 * int(spec["n_mfcc"]) + int(spec["n_mels"]))
    # From the weights file's shape: no need to build the network the vectors pass loads anyway.
    with np.load(weights_path(featurizer), allow_pickle=False) as weights:
        return int(weights["dense/kernel"].shape[1])


def holds_backbone_input(store: Any) -> bool:
    """Whether ``store`` was extracted with the backbone's spec (``mgc extract --preset musicnn``)."""
    from mgc.engine import differences

    return not differences(MUSICNN_SPEC, store.spec.to_dict())


def _embeddings(results) -> Iterator[tuple]:
    for result in results:
        yield result.key, (result.error if result.error is not None else result.embedding)


def store_vectors(
    store: Any, rows: np.ndarray, featurizer: str, *, workers=None, executor=None, backbone: Path | None = None
) -> Iterator[tuple]:
    """``((track_id, path, label), vector or error)`` for ``rows`` of ``store``, in order.

    ``backbone``: a fine-tuned backbone's weights file instead of the shipped weights.
    A backbone reads the store's log-mel when the store holds its input
    (``mgc extract --preset musicnn``), and decodes each track's audio file otherwise.
    """
    ids, paths, labels = store.tracks.track_id, store.tracks.path, store.tracks.label_name
    if featurizer == "stats":
        pairs = zip(store.iter_tracks("logmel", rows=rows), store.iter_tracks("mfcc", rows=rows))
        for (row, logmel), (_row, mfcc) in pairs:
            yield (ids[row], paths[row], labels[row]), stats_vector(logmel, mfcc)
        return
    if holds_backbone_input(store):  # the backbone's own input is in the store: no audio is read
        stored = store.iter_tracks("logmel", rows=rows)
        items = (((ids[row], paths[row], labels[row]), logmel) for row, logmel in stored)
        yield from _embeddings(BuiltinModel(featurizer, path=backbone).infer(items, batch_size=BACKBONE_BATCH))
        return
    keys = [(ids[row], paths[row], labels[row]) for row in rows]
    yield from backbone_vectors(keys, featurizer, workers=workers, executor=executor, backbone=backbone)


def backbone_vectors(keys: list, featurizer: str, *, workers=None, executor=None, backbone=None) -> Iterator[tuple]:
    """``(key, vector or error)`` of audio files (``key[1]`` is the path) through a backbone.

    ``backbone``: a fine-tuned backbone's weights file (default: the shipped weights of ``featurizer``).
    """
    model = BuiltinModel(featurizer, path=backbone)
    items = decode_logmel(model.spec, list(keys), workers=workers, executor=executor)
    yield from _embeddings(model.infer(items, batch_size=BACKBONE_BATCH))


def audio_vectors(featurizer: str, spec: dict, keys: list, *, workers=None, executor=None, backbone=None) -> Iterator:
    """``(key, vector or error)`` of audio files for a featurizer (``spec``: the store's, for ``stats``)."""
    if featurizer != "stats":
        yield from backbone_vectors(keys, featurizer, workers=workers, executor=executor, backbone=backbone)
        return
    for key, value in decode_features(spec, keys, workers=workers, executor=executor):
        yield key, value if isinstance(value, BaseException) else stats_vector(value["logmel"], value["mfcc"])
