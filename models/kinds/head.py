"""A head on a featurizer's vectors: standardisation, then a linear softmax layer (or an MLP).

The vectors are a featurizer's (:mod:`mgc.models.kinds.featurizers`): the
store's statistics, or a backbone's layer (the shipped weights, or the
folder's fine-tuned ``backbone.npz``). The probabilities of a vector ``v``:
``z = (v - mean) / std``; for an MLP ``z = max(z @ hidden_weights +
hidden_bias, 0)``; ``softmax(z @ weights + bias)``.

A head of ``level`` ``"track"`` sees one vector per track; its embedding is
that ``z``. A head of level ``"patch"`` (``model.json``'s ``level``, with
``patches``) was fitted on patch vectors, every 3 s patch of a training
track an example labelled with its track's genre: a track's probabilities
are the mean of its patches' (up to ``patches`` evenly spaced), and its
embedding the mean of their ``z``. A folder written before levels existed is
a track-level head. The folder's files are described in :mod:`mgc.models.folder`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mgc.models.folder import VECTORS, ModelFolder
from mgc.models.inference import Inferred
from mgc.models.kinds.base import Model
from mgc.models.kinds.featurizers import audio_vectors, store_vectors
from mgc.models.nets.heads import head_logits

__all__ = ["HeadModel", "patch_keys", "read_cached", "read_cached_patches", "track_keys"]


def track_keys(store: Any, rows: np.ndarray) -> list[str]:
    """Each row's key in a head's vector cache: its track id and what identifies its audio.

    ``track_id``, the audio file's path, size and modification time (the store records them at
    extraction), tab-separated: another store with the same track ids, or a store re-extracted from
    changed files, gives other keys, so a cache never answers for audio it was not computed from, and a
    file that failed is tried again once it changes.
    """
    tracks, rows = store.tracks, np.asarray(rows, np.int64)
    ids, paths = tracks.track_id.take(rows).tolist(), tracks.path.take(rows).tolist()  # whole columns, then strings
    sizes, mtimes = tracks.source_bytes[rows].tolist(), tracks.source_mtime_ns[rows].tolist()
    return [f"{i}\t{p}\t{b}\t{m}" for i, p, b, m in zip(ids, paths, sizes, mtimes)]


def patch_keys(keys: list[str], patches: int) -> list[str]:
    """The cache keys of the patches of tracks ``keys``: ``KEY<TAB>i`` for ``i < patches``, track by track."""
    return [f"{key}\t{i}" for key in keys for i in range(patches)]


def read_cached_patches(
    folder: Path | None, keys: list[str], dim: int, patches: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cached patch vectors of tracks ``keys``: ``(m, dim)``, their tracks (into ``keys``), which tracks have them.

    A track's patches are written together (:mod:`mgc.models.training.vectors`), so
    a track has all of its patches or none; only the vectors present are read.
    """
    from mgc.engine import VectorStore

    owner = np.zeros(0, np.int64)
    vectors = np.zeros((0, dim), np.float32)
    available = np.zeros(len(keys), bool)
    if folder is not None and (folder / "embeddings.json").exists() and len(keys):
        cached = VectorStore(folder)
        where = cached.rows(patch_keys(keys, patches))
        present = where >= 0
        owner = np.repeat(np.arange(len(keys)), patches)[present]
        vectors = cached.vectors(where[present])
        available[owner] = True
    return vectors, owner, available


def read_cached(folder: Path | None, keys: list[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Cached vectors of ``keys`` (:func:`track_keys`) ``(n, dim)`` and which the cache holds (none without one)."""
    from mgc.engine import VectorStore

    vectors = np.zeros((len(keys), dim), np.float32)
    available = np.zeros(len(keys), bool)
    if folder is not None and (folder / "embeddings.json").exists():
        cached = VectorStore(folder)
        where = cached.rows(list(keys))
        available = where >= 0
        vectors[available] = cached.vectors(where[available])
    return vectors, available


@dataclasses.dataclass
class HeadModel(Model):
    """A trained head (see the module docstring); ``meta`` is its ``model.json``."""

    folder: Path
    featurizer: str
    label_names: list[str]
    spec: dict
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    meta: dict
    hidden_weights: np.ndarray | None = None
    hidden_bias: np.ndarray | None = None
    #: A fine-tuned backbone's weights file (None: the shipped, frozen weights).
    backbone: Path | None = None
    #: ``"patch"`` or ``"track"`` (see the module docstring), and the patches per track of a patch head.
    level: str = "track"
    patches: int | None = None

    kind = "head"

    @classmethod
    def load(cls, folder: ModelFolder | str | Path) -> HeadModel:
        """The head of ``folder``, its files checked (see :meth:`ModelFolder.read_head`)."""
        folder = folder if isinstance(folder, ModelFolder) else ModelFolder(folder)
        meta, arrays, backbone = folder.read_head()
        level = meta.get("level", "track")  # folders written before levels are track-level heads
        patches = int(meta["patches"]) if level == "patch" else None
        return cls(
            folder.root, meta["featurizer"], list(meta["label_names"]), meta["spec"], meta=meta, backbone=backbone,
            level=level, patches=patches, **arrays,
        )  # fmt: skip

    @property
    def source(self) -> str:
        return str(Path(self.folder).resolve())

    @property
    def embedding_dim(self) -> int:
        return int(self.mean.size)

    @property
    def vectors_dir(self) -> Path:
        """The cache of per-track vectors the training filled (``--vectors``; default ``MODEL_DIR/vectors``)."""
        return Path(self.meta["vectors"]) if self.meta.get("vectors") else Path(self.folder) / VECTORS

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The layers' arrays, as :func:`mgc.models.nets.heads.head_logits` takes them."""
        names = ("weights", "bias", "hidden_weights", "hidden_bias")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def fingerprint(self) -> str:
        """SHA-256 of the featurizer, the level, the layers, the standardisation and a fine-tuned backbone's file."""
        digest = hashlib.sha256()
        digest.update(self.featurizer.encode())
        if self.level == "patch":  # a track head's digest is unchanged from before levels
            digest.update(f"patch {self.patches}".encode())
        for name, array in sorted(self.params.items()) + [("mean", self.mean), ("std", self.std)]:
            digest.update(name.encode() + np.ascontiguousarray(array, np.float32).tobytes())
        if self.backbone is not None:  # a fine-tuned backbone makes the vectors
            digest.update(Path(self.backbone).read_bytes())
        return digest.hexdigest()

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` of vectors ``(n, dim)``."""
        logits = head_logits(self.params, self.standardise(vectors))
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def standardise(self, vectors: np.ndarray) -> np.ndarray:
        """``(v - mean) / std``: the head's input, and the track's embedding."""
        return (np.asarray(vectors, np.float32) - self.mean) / self.std

    def track_outputs(self, vectors: np.ndarray, owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``(n, n_classes)`` and embeddings ``(n, dim)`` of ``n`` tracks from their patch vectors.

        ``vectors`` ``(m, dim)`` belong to tracks ``owner`` ``(m,)`` (0..n-1): each track's
        probabilities are the mean of its patches', its embedding the mean of their ``z``
        (zeros for a track without patches).
        """
        counts = np.maximum(np.bincount(owner, minlength=n), 1)[:, None]
        probabilities = np.zeros((n, len(self.label_names)), np.float64)
        embeddings = np.zeros((n, self.embedding_dim), np.float64)
        for start in range(0, len(vectors), 65536):  # bounded temporaries whatever the store's size
            part = slice(start, start + 65536)
            np.add.at(probabilities, owner[part], self.probabilities(vectors[part]))
            np.add.at(embeddings, owner[part], self.standardise(vectors[part]))
        return (probabilities / counts).astype(np.float32), (embeddings / counts).astype(np.float32)

    def _results(self, items) -> Iterator[Inferred]:
        for key, value in items:
            if isinstance(value, BaseException):
                yield Inferred(key, error=value)
            elif self.level == "patch":  # (k, dim): the mean over the track's patches
                probabilities, embedding = self.track_outputs(value, np.zeros(len(value), np.int64), 1)
                yield Inferred(key, probabilities=probabilities[0], embedding=embedding[0])
            else:
                yield Inferred(key, probabilities=self.probabilities(value[None])[0], embedding=self.standardise(value))

    def audio_results(
        self,
        entries: Sequence[tuple],
        *,
        workers: int | None = None,
        executor: Any = None,
        batch_size: int | None = None,
        max_crops: int | None = None,
    ) -> Iterator[Inferred]:
        """As :meth:`Model.audio_results`; ``batch_size`` and ``max_crops`` do not apply (see ``patches``)."""
        vectors = audio_vectors(
            self.featurizer,
            self.spec,
            list(entries),
            workers=workers,
            executor=executor,
            backbone=self.backbone,
            patches=self.patches,
        )
        return self._results(vectors)

    def store_results(
        self, store: Any, rows: np.ndarray, *, batch_size: int | None = None, max_crops: int | None = None
    ) -> Iterator[Inferred]:
        """As :meth:`Model.store_results`; the vectors are computed (the cache is for :meth:`store_outputs`)."""
        vectors = store_vectors(store, np.asarray(rows), self.featurizer, backbone=self.backbone, patches=self.patches)
        return self._results(vectors)

    def store_vectors(self, store: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of ``rows`` of ``store`` ``(n, dim)`` and a mask of those that have one.

        Read from the training's cache where it holds the track id, computed
        otherwise (always, for a fine-tuned backbone: the cache holds the
        frozen backbone's vectors).
        """
        cache = self.vectors_dir if self.backbone is None else None
        rows = np.asarray(rows)
        vectors, available = read_cached(cache, track_keys(store, rows), self.embedding_dim)
        missing = np.flatnonzero(~available)
        computed = store_vectors(store, rows[missing], self.featurizer, backbone=self.backbone)
        for position, (_key, value) in zip(missing, computed):
            if not isinstance(value, BaseException):
                vectors[position], available[position] = value, True
        return vectors, available

    def store_patch_vectors(self, store: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patch vectors of ``rows`` of ``store``: ``(m, dim)``, their rows (into ``rows``), which rows have them.

        As :meth:`store_vectors`, for a patch-level head: read from the training's
        cache where it holds the track, computed otherwise.
        """
        cache = self.vectors_dir if self.backbone is None else None
        rows = np.asarray(rows)
        vectors, owner, available = read_cached_patches(
            cache, track_keys(store, rows), self.embedding_dim, self.patches
        )
        missing = np.flatnonzero(~available)
        parts, owners = [vectors], [owner]
        computed = store_vectors(store, rows[missing], self.featurizer, backbone=self.backbone, patches=self.patches)
        for position, (_key, value) in zip(missing, computed):
            if not isinstance(value, BaseException):
                parts.append(np.asarray(value, np.float32))
                owners.append(np.full(len(value), position, np.int64))
                available[position] = True
        return np.concatenate(parts), np.concatenate(owners), available

    def store_outputs(
        self, store: Any, rows: np.ndarray, *, max_crops: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`Model.store_outputs`, through the training's cache (:meth:`store_vectors`)."""
        if self.level == "patch":
            vectors, owner, available = self.store_patch_vectors(store, rows)
            probabilities, embeddings = self.track_outputs(vectors, owner, len(available))
            return probabilities, embeddings, available
        vectors, available = self.store_vectors(store, rows)
        return self.probabilities(vectors), self.standardise(vectors), available
