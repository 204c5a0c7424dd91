"""Models that run a network over crops of a track's log-mel: the trained CNN and the built-in taggers."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from mgc.models.data.inputs import decode_logmel
from mgc.models.inference import Inferred, infer_with
from mgc.models.kinds.base import Model

__all__ = ["NetworkModel"]


class NetworkModel(Model):
    """A network over crops: ``params``, ``batch_stats``, ``graphdef``, ``normalizer`` and ``crop_frames``.

    Probabilities are the mean over evenly spaced crops covering the track (a
    softmax, or tag sigmoids when ``multilabel``); the embedding is the mean
    penultimate-layer vector over the same crops.
    """

    params: Any
    batch_stats: Any
    graphdef: Any
    normalizer: Any
    crop_frames: int

    def fingerprint(self) -> str:
        """SHA-256 of the parameters and batch statistics: names, shapes, dtypes and bytes."""
        import jax

        digest = hashlib.sha256()
        for tree in (self.params, self.batch_stats):
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
                array = np.ascontiguousarray(np.asarray(leaf))
                digest.update(f"{jax.tree_util.keystr(path)}:{array.dtype}:{array.shape};".encode())
                digest.update(array.tobytes())
        return digest.hexdigest()

    def infer(
        self,
        items: Iterable[tuple[Any, Any]],
        *,
        batch_size: int | None = None,
        max_crops: int | None = None,
        layer: str = "penultimate",
        per_crop: bool = False,
    ) -> Iterator[Inferred]:
        """Results of ``(key, log-mel (n_frames, n_mels) or error)`` items, crops of many tracks packed in batches.

        ``layer`` and ``per_crop``: as :func:`mgc.models.inference.infer_with` takes them.
        """
        yield from infer_with(
            self.params,
            self.batch_stats,
            self.graphdef,
            items,
            normalizer=self.normalizer,
            crop_frames=self.crop_frames,
            batch_size=batch_size,
            max_crops=max_crops,
            multilabel=self.multilabel,
            layer=layer,
            per_crop=per_crop,
        )

    def audio_results(
        self,
        entries: Sequence[tuple],
        *,
        workers: int | None = None,
        executor: Any = None,
        batch_size: int | None = None,
        max_crops: int | None = None,
    ) -> Iterator[Inferred]:
        items = decode_logmel(self.spec, entries, workers=workers, executor=executor)
        return self.infer(items, batch_size=batch_size, max_crops=max_crops)

    def store_results(
        self, store: Any, rows: np.ndarray, *, batch_size: int | None = None, max_crops: int | None = None
    ) -> Iterator[Inferred]:
        tracks = store.tracks
        items = (
            ((tracks.track_id[row], tracks.path[row], tracks.label_name[row]), logmel)
            for row, logmel in store.iter_tracks(rows=np.asarray(rows))
        )
        return self.infer(items, batch_size=batch_size, max_crops=max_crops)
