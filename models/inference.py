"""Batch inference: crops of many tracks packed into full batches, results per track in input order.

:func:`infer` turns a stream of ``(key, logmel or error)`` into one
:class:`Inferred` per track: the mean softmax over evenly spaced crops that
cover the track, and the mean penultimate-layer vector over the same crops.
Crops from consecutive tracks share batches (only the very last batch is
padded), so the network always runs on full batches of one compiled shape.

:class:`ResultsFile` is the resumable output of ``mgc predict --out``: one line
per track (JSON lines, or CSV when the name ends in ``.csv``), appended and
fsynced batch by batch; a run killed at any moment leaves whole lines (a torn
last line is ignored and that track is redone), and the next run skips the
tracks already written.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mgc.models.input_pipeline import eval_crops
from mgc.models.steps import infer_step

__all__ = ["Inferred", "ResultsFile", "infer", "infer_with"]

_infer = jax.jit(infer_step, static_argnames=("graphdef", "multilabel"))


@dataclass
class Inferred:
    """One track's result: ``probabilities`` ``(n_classes,)`` and ``embedding`` ``(dim,)``, or ``error``."""

    key: Any
    probabilities: np.ndarray | None = None
    embedding: np.ndarray | None = None
    error: BaseException | None = None


def infer(
    model: Any,
    items: Iterable[tuple[Any, Any]],
    *,
    batch_size: int = 256,
    max_crops: int | None = None,
) -> Iterator[Inferred]:
    """Results of ``model`` for each ``(key, value)`` of ``items``, in order.

    Parameters
    ----------
    model : TrainedModel
        From :func:`models.load_model`.
    items : iterable of (key, value)
        ``value`` is a track's log-mel ``(n_frames, n_mels)`` (not normalised), or an
        exception saying why there is none (passed through as ``error``).
    batch_size : int
        Crops per network call.
    max_crops : int, optional
        Cap on crops per track (default: enough to cover the track).

    Yields
    ------
    Inferred
        ``embedding`` is the mean of the crops' penultimate-layer vectors (not
        normalised).
    """
    from mgc.models.steps import make_graphdef

    # A built-in model (models.pretrained) carries its own graph; a trained one is a ShortChunkCNN.
    graphdef = getattr(model, "graphdef", None) or make_graphdef(model.model_config)
    yield from infer_with(
        model.params,
        model.batch_stats,
        graphdef,
        items,
        normalizer=model.normalizer,
        crop_frames=model.crop_frames,
        batch_size=batch_size,
        max_crops=max_crops,
        multilabel=getattr(model, "multilabel", False),
    )


def infer_with(
    params: Any,
    batch_stats: Any,
    graphdef: Any,
    items: Iterable[tuple[Any, Any]],
    *,
    normalizer: Any,
    crop_frames: int,
    batch_size: int = 256,
    max_crops: int | None = None,
    multilabel: bool = False,
) -> Iterator[Inferred]:
    """:func:`infer` from the network's parts (what training validates with, before a model folder exists)."""
    pending: deque = deque()  # [Inferred, crops left, probability sum, embedding sum]
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
            chunk = np.zeros((batch_size,) + x.shape[1:], np.float32)
            chunk[:take] = x[done : done + take]
            probs, embedding = _infer(params, batch_stats, chunk, graphdef=graphdef, multilabel=multilabel)
            probs, embedding = np.asarray(probs, np.float64)[:take], np.asarray(embedding, np.float64)[:take]
            for row, entry in enumerate(owner[done : done + take]):
                entry[2] = entry[2] + probs[row]
                entry[3] = entry[3] + embedding[row]
                entry[1] -= 1
            done += take
        crops, owners, held = [x[done:]], [owner[done:]], len(x) - done

    def finished() -> Iterator[Inferred]:
        while pending and pending[0][1] == 0:
            result, _, probs, embedding = pending.popleft()
            if result.error is None:
                n = result.probabilities  # the crop count, stashed there while pending
                result.probabilities = (probs / n).astype(np.float32)
                result.embedding = (embedding / n).astype(np.float32)
            yield result

    for key, value in items:
        if isinstance(value, BaseException):
            pending.append([Inferred(key, error=value), 0, 0.0, 0.0])
        else:
            track_crops = eval_crops(normalizer(np.asarray(value, np.float32)), crop_frames, max_crops)
            entry = [Inferred(key, probabilities=len(track_crops)), len(track_crops), 0.0, 0.0]
            pending.append(entry)
            crops.append(track_crops)
            owners.append([entry] * len(track_crops))
            held += len(track_crops)
            if held >= batch_size:
                run(final=False)
        yield from finished()
    run(final=True)
    yield from finished()


class ResultsFile:
    """The resumable per-track output of a batch run (JSON lines, or CSV for a ``.csv`` name).

    Parameters
    ----------
    path : str or Path
        The file; created with its folder, appended to when it exists.
    columns : sequence of str
        CSV header (JSON lines write each record's keys as given).
    key : str
        The field that identifies a track (``track_id``); :attr:`done` holds the
        keys already in the file.
    """

    def __init__(self, path, columns, key: str = "track_id") -> None:
        self.path, self.columns, self.key = Path(path), list(columns), key
        self.csv = self.path.suffix.lower() == ".csv"
        self.done: set = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        valid = self._read_existing()
        # Drop a torn last line (a kill mid-write) before appending after it.
        with open(self.path, "ab") as handle:
            handle.truncate(valid)
        self._handle = open(self.path, "a", encoding="utf-8", newline="", errors="surrogateescape")
        if self.csv and valid == 0:
            csv.writer(self._handle).writerow(self.columns)
        self._buffer: list[str] = []

    def _read_existing(self) -> int:
        """Collect the keys of whole lines; return the byte length of the whole lines."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n") + 1  # whole lines only
        text = data[:end].decode("utf-8", "surrogateescape")
        if self.csv:
            rows = list(csv.reader(io.StringIO(text)))
            if rows and rows[0] != self.columns:
                from mgc.models.config import ModelError

                raise ModelError(f"{self.path} has the columns {rows[0]}, not {self.columns}; choose another --out")
            index = self.columns.index(self.key)
            self.done = {row[index] for row in rows[1:] if len(row) == len(self.columns)}
        else:
            for line in text.splitlines():
                try:
                    self.done.add(json.loads(line)[self.key])
                except (ValueError, KeyError, TypeError):
                    continue
        return end

    def write(self, record: dict) -> None:
        """Queue one track's record (written by :meth:`flush`)."""
        if self.csv:
            out = io.StringIO()
            csv.writer(out).writerow([_cell(record.get(c)) for c in self.columns])
            self._buffer.append(out.getvalue())
        else:
            self._buffer.append(json.dumps(record, ensure_ascii=True) + "\n")
        self.done.add(record[self.key])

    def flush(self) -> None:
        """Append the queued lines and fsync: after this, a kill loses none of them."""
        if self._buffer:
            self._handle.write("".join(self._buffer))
            self._buffer.clear()
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self.flush()
        self._handle.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
