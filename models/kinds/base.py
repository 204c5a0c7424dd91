"""One notion of a model: what every kind offers to prediction, evaluation, embedding and search.

A *model* is what :func:`mgc.models.load_model` returns: a CNN trained by
``mgc train`` (:class:`~mgc.models.kinds.cnn.CnnModel`), a built-in pretrained
tagger (:class:`~mgc.models.kinds.builtin.BuiltinModel`), or a head on one
vector per track (:class:`~mgc.models.kinds.head.HeadModel`, its backbone
frozen or fine-tuned). The tasks (predict, evaluate, embed, similar, report)
use only this interface; which kind they hold is asked once, by
:func:`mgc.models.kinds.loader.load_model`, from the folder's recorded kind.

Results come as :class:`mgc.models.inference.Inferred` values, one per track
in input order: class (or tag) probabilities ``(n_classes,)`` and an embedding
``(embedding_dim,)``, or the error that stopped that track.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mgc.models.data.stores import check_spec
from mgc.models.inference import Inferred

__all__ = ["Model"]


class Model(abc.ABC):
    """The interface of every model kind.

    Attributes
    ----------
    kind : str
        ``cnn``, ``head`` (as recorded in the model folder) or ``builtin``.
    source : str
        Where the model came from: its folder's absolute path, or a built-in name.
    label_names : list of str
        Class (or tag) names, in the order of the probabilities.
    spec : dict
        The FeatureSpec (``engine.FeatureSpec.to_dict()``) of the features it reads.
    embedding_dim : int
        Length of the per-track embedding.
    multilabel : bool
        True when the probabilities are independent tag sigmoids, not a softmax.
    step : int or None
        The training step of the weights, where there is one.
    """

    kind: str
    source: str
    label_names: list[str]
    spec: dict[str, Any]
    embedding_dim: int
    multilabel: bool = False
    step: int | None = None

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """SHA-256 hex digest of everything that decides the model's outputs (its weights)."""

    @abc.abstractmethod
    def audio_results(
        self,
        entries: Sequence[tuple],
        *,
        workers: int | None = None,
        executor: Any = None,
        batch_size: int | None = None,
        max_crops: int | None = None,
    ) -> Iterator[Inferred]:
        """Results of audio files: ``entries`` are ``(track_id, path, label)``; the key of each result is its entry.

        Files are decoded on ``workers`` processes (or on ``executor``); ``batch_size``
        and ``max_crops`` size the network calls of the kinds that crop.
        """

    @abc.abstractmethod
    def store_results(
        self, store: Any, rows: np.ndarray, *, batch_size: int | None = None, max_crops: int | None = None
    ) -> Iterator[Inferred]:
        """Results of ``rows`` of a feature store whose spec is the model's (see :meth:`check_store`), in order.

        The key of each result is ``(track_id, path, label name)``.
        """

    def store_outputs(
        self, store: Any, rows: np.ndarray, *, max_crops: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Probabilities ``(n, n_classes)``, embeddings ``(n, dim)`` and a mask ``(n,)`` of the rows that have them.

        What evaluation reads; kinds override it where a faster path exists.
        """
        n = len(rows)
        probs = np.zeros((n, len(self.label_names)), np.float32)
        embeddings = np.zeros((n, self.embedding_dim), np.float32)
        available = np.zeros(n, bool)
        for i, result in enumerate(self.store_results(store, np.asarray(rows), max_crops=max_crops)):
            if result.error is None:
                probs[i], embeddings[i], available[i] = result.probabilities, result.embedding, True
        return probs, embeddings, available

    def check_store(self, store: Any, *, where: str = "the model") -> None:
        """Raise :class:`ModelError` unless ``store`` was extracted with the model's FeatureSpec."""
        check_spec(self.spec, store.spec, where=where, store_path=getattr(store, "path", store))
