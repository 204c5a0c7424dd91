"""What makes a head's vectors: the store's statistics, or a pretrained backbone's layer.

- ``stats``: means and standard deviations of the store's MFCC, of their
  frame-to-frame differences, and of its log-mel bands:
  ``2 * (2 * n_mfcc + n_mels)`` values (336 with the default spec).
- a backbone (:data:`BACKBONE_PARTS`): ``musicnn-msd`` / ``musicnn-mtt``, the
  network's penultimate layer (200 values); ``musicnn-msd-pool`` /
  ``musicnn-mtt-pool``, its pooled mid-end (max and mean over time of the
  753 mid-end channels, interleaved: 1,506 values); ``musicnn-msd+mtt``, both
  networks' penultimate layers joined (400 values). Computed from the
  track's audio file with the backbone's own front-end, or read from the
  store when it holds that front-end's output (``mgc extract --preset musicnn``).

Two levels. A *track* vector describes a whole track: the statistics over
all its frames, or the backbone's vector averaged over the 3 s patches that
cover it. *Patch* vectors describe a track's patches one by one: up to
``patches`` evenly spaced windows of :data:`PATCH_SECONDS` (a backbone's own
patches, or the statistics over windows of that length), ``(k, dim)`` per
track; a track shorter than one patch is one patch (a backbone's input is
then repeated from its start to fill the 3 s, as its training crops are; the
statistics are taken over what there is).

Every function yields ``(key, vector or error)`` in input order, one track at a time
(``vector`` is ``(dim,)`` for a track, ``(k, dim)`` with ``patches``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mgc.models.config import DEFAULT_BACKBONE, FEATURIZERS
from mgc.models.data.inputs import decode_features, decode_logmel
from mgc.models.errors import ModelError
from mgc.models.kinds.builtin import BuiltinModel
from mgc.models.pretrained.musicnn import MUSICNN_SPEC, weights_path

__all__ = [
    "BACKBONE_BATCH",
    "BACKBONE_PARTS",
    "PATCH_SECONDS",
    "audio_vectors",
    "backbone_vectors",
    "check_featurizer",
    "holds_backbone_input",
    "patch_starts",
    "resolve_featurizer",
    "stats_patches",
    "stats_vector",
    "store_vectors",
    "vector_dim",
]

#: Patches per backbone call: as fast as 256 on the CPU (85 against 87 patches/s) at 1.0 GB of peak memory
#: instead of 2.7 GB (the timbral convolutions' output is 2.3 GB at 256).
BACKBONE_BATCH = 64


#: Featurizer name -> the (built-in network, layer) pairs whose vectors it joins, in order.
BACKBONE_PARTS = {
    "musicnn-msd": (("musicnn-msd", "penultimate"),),
    "musicnn-mtt": (("musicnn-mtt", "penultimate"),),
    "musicnn-msd-pool": (("musicnn-msd", "pool"),),
    "musicnn-mtt-pool": (("musicnn-mtt", "pool"),),
    "musicnn-msd+mtt": (("musicnn-msd", "penultimate"), ("musicnn-mtt", "penultimate")),
}
#: Seconds of audio per patch: a backbone's input (musicnn: 187 frames at 16 kHz, hop 256), and the
#: statistics' window at the patch level, so that both kinds of head see vectors of the same span.
PATCH_SECONDS = 3.0
#: Tracks whose vectors are computed together when several backbones are joined (their log-mel in memory).
JOINED_TRACKS = 32


def patch_starts(n_frames: int, window: int, patches: int) -> np.ndarray:
    """First frames of up to ``patches`` evenly spaced windows of ``window`` frames covering ``n_frames``.

    ``ceil(n_frames / window)`` windows, capped at ``patches``; the first starts
    at frame 0 and the last ends at the last frame. A track of at most one
    window is one window starting at 0 (:func:`stats_patches` takes what there is).
    """
    if n_frames <= window:
        return np.zeros(1, np.int64)
    n = min(int(np.ceil(n_frames / window)), int(patches))
    return np.round(np.linspace(0, n_frames - window, max(n, 1))).astype(np.int64)


def stats_window(spec: dict) -> int:
    """The statistics' patch: frames of the store's spec in :data:`PATCH_SECONDS` (at least 2)."""
    return max(2, int(round(PATCH_SECONDS * float(spec["sr"]) / int(spec["hop_length"]))))


def stats_patches(logmel: np.ndarray, mfcc: np.ndarray, window: int, patches: int) -> np.ndarray:
    """:func:`stats_vector` of each patch (:func:`patch_starts`) of a track: ``(k, dim)``."""
    starts = patch_starts(len(logmel), window, patches)
    return np.stack([stats_vector(logmel[s : s + window], mfcc[s : s + window]) for s in starts])


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


def resolve_featurizer(featurizer: str) -> str:
    """The featurizer's own name: ``musicnn`` stands for :data:`mgc.models.config.DEFAULT_BACKBONE`."""
    return DEFAULT_BACKBONE if featurizer == "musicnn" else featurizer


def check_featurizer(featurizer: str, spec: dict) -> None:
    """Refuse an unknown featurizer, or ``stats`` on a store without log-mel and MFCC."""
    if featurizer not in FEATURIZERS:
        raise ModelError(f"unknown featurizer {featurizer!r}; choose one of {', '.join(FEATURIZERS)}")
    if featurizer == "stats" and not {"logmel", "mfcc"} <= set(spec.get("features", [])):
        raise ModelError("the stats model needs a store with both logmel and mfcc (the default spec)")


def vector_dim(featurizer: str, spec: dict) -> int:
    """Length of a featurizer's vector for a store of ``spec``."""
    if featurizer == "stats":
        return 2 * (2 * int(spec["n_mfcc"]) + int(spec["n_mels"]))
    # From the weights files' shapes: no need to build the networks the vectors pass loads anyway.
    dim = 0
    for network, layer in BACKBONE_PARTS[featurizer]:
        with np.load(weights_path(network), allow_pickle=False) as weights:
            dim += int(weights["dense/kernel"].shape[1 if layer == "penultimate" else 0])
    return dim


def holds_backbone_input(store: Any) -> bool:
    """Whether ``store`` was extracted with the backbone's spec (``mgc extract --preset musicnn``)."""
    from mgc.engine import differences

    return not differences(MUSICNN_SPEC, store.spec.to_dict())


def _embeddings(results) -> Iterator[tuple]:
    for result in results:
        yield result.key, (result.error if result.error is not None else result.embedding)


def _backbone_results(featurizer: str, items, *, backbone: Path | None, patches: int | None) -> Iterator[tuple]:
    """``(key, vector or error)`` of ``(key, log-mel or error)`` items through ``featurizer``'s networks.

    Several networks (``musicnn-msd+mtt``) run over the same items :data:`JOINED_TRACKS`
    tracks at a time, and their vectors are joined crop by crop (the crops are the same).
    """
    parts = BACKBONE_PARTS[featurizer]
    options = {"batch_size": BACKBONE_BATCH, "max_crops": patches, "per_crop": patches is not None}
    if len(parts) == 1:
        network, layer = parts[0]
        model = BuiltinModel(network, path=backbone)
        yield from _embeddings(model.infer(items, layer=layer, **options))
        return
    models = [(BuiltinModel(network), layer) for network, layer in parts]
    items = iter(items)
    while chunk := list(itertools.islice(items, JOINED_TRACKS)):
        outputs = [list(_embeddings(model.infer(chunk, layer=layer, **options))) for model, layer in models]
        for joined in zip(*outputs):
            key, values = joined[0][0], [value for _key, value in joined]
            errors = [value for value in values if isinstance(value, BaseException)]
            yield key, errors[0] if errors else np.concatenate(values, axis=-1)


def store_vectors(
    store: Any,
    rows: np.ndarray,
    featurizer: str,
    *,
    workers=None,
    executor=None,
    backbone: Path | None = None,
    patches: int | None = None,
) -> Iterator[tuple]:
    """``((track_id, path, label), vector or error)`` for ``rows`` of ``store``, in order.

    ``backbone``: a fine-tuned backbone's weights file instead of the shipped weights.
    ``patches``: patch vectors ``(k, dim)``, at most ``patches`` per track, instead of one per track.
    A backbone reads the store's log-mel when the store holds its input
    (``mgc extract --preset musicnn``), and decodes each track's audio file otherwise.
    """
    ids, paths, labels = store.tracks.track_id, store.tracks.path, store.tracks.label_name
    if featurizer == "stats":
        pairs = zip(store.iter_tracks("logmel", rows=rows), store.iter_tracks("mfcc", rows=rows))
        window = stats_window(store.spec.to_dict())
        for (row, logmel), (_row, mfcc) in pairs:
            vector = stats_vector(logmel, mfcc) if patches is None else stats_patches(logmel, mfcc, window, patches)
            yield (ids[row], paths[row], labels[row]), vector
        return
    if holds_backbone_input(store):  # the backbone's own input is in the store: no audio is read
        stored = store.iter_tracks("logmel", rows=rows)
        items = (((ids[row], paths[row], labels[row]), logmel) for row, logmel in stored)
        yield from _backbone_results(featurizer, items, backbone=backbone, patches=patches)
        return
    keys = [(ids[row], paths[row], labels[row]) for row in rows]
    yield from backbone_vectors(
        keys, featurizer, workers=workers, executor=executor, backbone=backbone, patches=patches
    )


def backbone_vectors(
    keys: list, featurizer: str, *, workers=None, executor=None, backbone=None, patches: int | None = None
) -> Iterator[tuple]:
    """``(key, vector or error)`` of audio files (``key[1]`` is the path) through a backbone.

    ``backbone``: a fine-tuned backbone's weights file (default: the shipped weights of ``featurizer``).
    ``patches``: as for :func:`store_vectors`.
    """
    network = BACKBONE_PARTS[featurizer][0][0]
    items = decode_logmel(BuiltinModel(network).spec, list(keys), workers=workers, executor=executor)
    yield from _backbone_results(featurizer, items, backbone=backbone, patches=patches)


def audio_vectors(
    featurizer: str, spec: dict, keys: list, *, workers=None, executor=None, backbone=None, patches: int | None = None
) -> Iterator:
    """``(key, vector or error)`` of audio files for a featurizer (``spec``: the store's, for ``stats``).

    ``patches``: as for :func:`store_vectors`.
    """
    if featurizer != "stats":
        yield from backbone_vectors(
            keys, featurizer, workers=workers, executor=executor, backbone=backbone, patches=patches
        )
        return
    window = stats_window(spec)
    for key, value in decode_features(spec, keys, workers=workers, executor=executor):
        if isinstance(value, BaseException):
            yield key, value
        elif patches is None:
            yield key, stats_vector(value["logmel"], value["mfcc"])
        else:
            yield key, stats_patches(value["logmel"], value["mfcc"], window, patches)
