"""Batch inference: crops of many tracks packed into full batches, results per track in input order.

:func:`infer_with` turns a stream of ``(key, logmel or error)`` into one
:class:`Inferred` per track: the mean softmax (or tag sigmoid) over evenly
spaced crops that cover the track, and the mean penultimate-layer vector over
the same crops. Crops from consecutive tracks share batches, so the network
runs on full batches of one compiled shape; only the very last batch, when the
input is finished, is smaller: padded to the next power of 4 (:func:`padded_size`),
so that one file costs a batch of its own size, not ``batch_size``. A track's
numbers may differ in their last float32 bits with the size of the batch it ran in. A model runs it through
:meth:`mgc.models.kinds.network.NetworkModel.infer`.

:func:`counting_tracks` lets a caller count the tracks that every
:func:`infer_with` started inside it finishes (the progress of a pass that a
model runs on its own, such as ``store_outputs`` for ``mgc evaluate``).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from mgc.models.data.pipeline import eval_crops
from mgc.models.nets.steps import infer_step

__all__ = ["Inferred", "counting_tracks", "infer_with", "padded_size"]

_infer = jax.jit(infer_step, static_argnames=("graphdef", "multilabel", "layer"))
#: Called with the number of tracks finished so far by an :func:`infer_with` started in :func:`counting_tracks`.
_finished_hook: contextvars.ContextVar[Callable[[int], None] | None] = contextvars.ContextVar(
    "mgc_inferred_tracks", default=None
)


@contextlib.contextmanager
def counting_tracks(callback: Callable[[int], None]) -> Iterator[None]:
    """Within the block, each :func:`infer_with` started calls ``callback(n)`` as its ``n``-th track is finished.

    For progress of a pass whose loop a caller does not own (a model's
    ``store_outputs``); ``callback`` runs once per track, so it should be cheap
    (an ``engine.progress.ThrottledReporter``). The hook is a context variable:
    other threads and contexts are not counted.
    """
    token = _finished_hook.set(callback)
    try:
        yield
    finally:
        _finished_hook.reset(token)


def padded_size(crops: int, batch_size: int) -> int:
    """The batch that ``crops`` queued crops run in: ``batch_size`` when full, else the next power of 4.

    The last batch of a run (one file's few crops) is padded only to 1, 4, 16, 64, ... crops, not to
    ``batch_size``: memory and work follow the input, and at most ``log4(batch_size) + 1`` shapes compile.
    """
    size = 1
    while size < crops:
        size *= 4
    return min(size, batch_size)


@dataclass
class Inferred:
    """One track's result: ``probabilities`` ``(n_classes,)`` and ``embedding`` ``(dim,)``, or ``error``."""

    key: Any
    probabilities: np.ndarray | None = None
    embedding: np.ndarray | None = None
    error: BaseException | None = None


def infer_with(
    params: Any,
    batch_stats: Any,
    graphdef: Any,
    items: Iterable[tuple[Any, Any]],
    *,
    normalizer: Any,
    crop_frames: int,
    batch_size: int | None = None,
    max_crops: int | None = None,
    multilabel: bool = False,
    layer: str = "penultimate",
    per_crop: bool = False,
) -> Iterator[Inferred]:
    """Results of ``(key, log-mel (n_frames, n_mels) or error)`` items under a network's parts, in order.

    Parameters
    ----------
    params, batch_stats, graphdef :
        The network (``nnx.split``).
    items : iterable of (key, value)
        ``value`` is a track's log-mel (not normalised), or an exception saying
        why there is none (passed through as ``error``).
    normalizer : Normalizer
        Applied to each track before cropping.
    crop_frames : int
        Frames per crop.
    batch_size : int, optional
        Crops per network call (default: the backend's, see
        :func:`mgc.models.devices.inference_batch`: 256 on a CPU, 2048 on a GPU or TPU).
    max_crops : int, optional
        Cap on crops per track (default: enough to cover the track).
    multilabel : bool
        Tag sigmoids instead of a softmax.
    layer : {"penultimate", "pool"}
        The embedding's layer (see :func:`mgc.models.nets.steps.infer_step`).
    per_crop : bool
        Keep every crop's embedding: ``embedding`` is then ``(n_crops, dim)``,
        one row per crop in the track's order, instead of their mean.

    Yields
    ------
    Inferred
        ``embedding`` is the mean of the crops' embeddings (not normalised), or all of them with ``per_crop``.
    """
    from mgc.models.devices import inference_batch

    batch_size = inference_batch(batch_size)
    hook, count = _finished_hook.get(), 0
    pending: deque = deque()  # [Inferred, crops left, probability sum, embedding sum, the crops' embeddings]
    crops: list[np.ndarray] = []
    owners: list[list] = []
    held = 0

    def run(final: bool) -> None:
        nonlocal crops, owners, held
        x = np.concatenate(crops) if crops else np.zeros((0, crop_frames, normalizer.mean.size), np.float32)
        owner = [entry for part in owners for entry in part]
        done = 0
        while len(x) - done >= batch_size or (final and done < len(x)):
            take = min(batch_size, len(x) - done)
            chunk = np.zeros((padded_size(take, batch_size),) + x.shape[1:], np.float32)
            chunk[:take] = x[done : done + take]
            probs, embedding = _infer(params, batch_stats, chunk, graphdef=graphdef, multilabel=multilabel, layer=layer)
            probs, embedding = np.asarray(probs, np.float64)[:take], np.asarray(embedding, np.float64)[:take]
            for row, entry in enumerate(owner[done : done + take]):
                entry[2] = entry[2] + probs[row]
                if per_crop:
                    entry[4].append(embedding[row])
                else:
                    entry[3] = entry[3] + embedding[row]
                entry[1] -= 1
            done += take
        crops, owners, held = [x[done:]], [owner[done:]], len(x) - done

    def finished() -> Iterator[Inferred]:
        nonlocal count
        while pending and pending[0][1] == 0:
            result, _, probs, embedding, every = pending.popleft()
            if result.error is None:
                n = result.probabilities  # the crop count, stashed there while pending
                result.probabilities = (probs / n).astype(np.float32)
                result.embedding = (
                    np.stack(every).astype(np.float32) if per_crop else (embedding / n).astype(np.float32)
                )
            if hook is not None:
                count += 1
                hook(count)
            yield result

    for key, value in items:
        if isinstance(value, BaseException):
            pending.append([Inferred(key, error=value), 0, 0.0, 0.0, []])
        else:
            track_crops = eval_crops(normalizer(np.asarray(value, np.float32)), crop_frames, max_crops)
            entry = [Inferred(key, probabilities=len(track_crops)), len(track_crops), 0.0, 0.0, []]
            pending.append(entry)
            crops.append(track_crops)
            owners.append([entry] * len(track_crops))
            held += len(track_crops)
            if held >= batch_size:
                run(final=False)
        yield from finished()
    run(final=True)
    yield from finished()
