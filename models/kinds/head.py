"""A head on one vector per track: standardisation, then a linear softmax layer (or an MLP).

The vector is a featurizer's (:mod:`mgc.models.kinds.featurizers`): the
store's statistics, or a backbone's penultimate layer (the shipped weights,
or the folder's fine-tuned ``backbone.npz``). The probabilities of a vector
``v``: ``z = (v - mean) / std``; for an MLP ``z = max(z @ hidden_weights +
hidden_bias, 0)``; ``softmax(z @ weights + bias)``. The embedding of a track
is ``z`` before the layers (what the head sees). The folder's files are
described in :mod:`mgc.models.folder`.
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

__all__ = ["HeadModel", "read_cached", "track_keys"]


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

    kind = "head"

    @classmethod
    def load(cls, folder: ModelFolder | str | Path) -> HeadModel:
        """The head of ``folder``, its files checked (see :meth:`ModelFolder.read_head`)."""
        folder = folder if isinstance(folder, ModelFolder) else ModelFolder(folder)
        meta, arrays, backbone = folder.read_head()
        return cls(
            folder.root, meta["featurizer"], list(meta["label_names"]), meta["spec"], meta=meta, backbone=backbone,
            **arrays,
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
        """SHA-256 of the featurizer, the layers, the standardisation and a fine-tuned backbone's file."""
        digest = hashlib.sha256()
        digest.update(self.featurizer.encode())
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

    def _results(self, items) -> Iterator[Inferred]:
        for key, value in items:
            if isinstance(value, BaseException):
                yield Inferred(key, error=value)
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
        """As :meth:`Model.audio_results`; one vector per track (``batch_size`` and ``max_crops`` do not apply)."""
        vectors = audio_vectors(
            self.featurizer, self.spec, list(entries), workers=workers, executor=executor, backbone=self.backbone
        )
        return self._results(vectors)

    def store_results(
        self, store: Any, rows: np.ndarray, *, batch_size: int | None = None, max_crops: int | None = None
    ) -> Iterator[Inferred]:
        """As :meth:`Model.store_results`; the vectors are computed (the cache is for :meth:`store_outputs`)."""
        return self._results(store_vectors(store, np.asarray(rows), self.featurizer, backbone=self.backbone))

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

    def store_outputs(
        self, store: Any, rows: np.ndarray, *, max_crops: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`Model.store_outputs`, through :meth:`store_vectors` (the training's cache)."""
        vectors, available = self.store_vectors(store, rows)
        return self.probabilities(vectors), self.standardise(vectors), available
