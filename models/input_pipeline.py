"""Batches of random log-mel crops, normalised and augmented, built ahead of the step.

Every batch is a pure function of ``(seed, epoch, batch index)``: the epoch's
track order comes from ``default_rng([seed, epoch])`` and each batch's crops,
masks and mixup from ``default_rng([seed, epoch, index])``. A run resumed at
``(epoch, index)`` therefore sees exactly the batches an uninterrupted run
would have seen. The training loop assembles batches ahead of the step in
:func:`engine.background.background` (numpy releases the GIL for the copies).

Tracks come from a :class:`TrackSource`: the whole store's training tracks held
in memory when they fit under a budget, otherwise read block by block (a shard
at a time when the store's table says which shard a track lives in) with the
epoch order shuffled between blocks and within each block.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.config import ModelError, TrainConfig

__all__ = ["Normalizer", "TrackSource", "TrainLoader", "crop_frames_for", "eval_crops"]


def crop_frames_for(seconds: float, frames_per_second: float) -> int:
    """Frames in a crop of ``seconds``, at least 8 so that a few pooling blocks fit."""
    return max(int(round(seconds * frames_per_second)), 8)


@dataclass(frozen=True)
class Normalizer:
    """Per-band standardisation with statistics of the training split.

    ``mean`` and ``std`` are float32 ``(n_mels,)``.
    """

    mean: np.ndarray
    std: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(np.float32, copy=False)

    @classmethod
    def fit(cls, tracks: Callable[[], Iterator[np.ndarray]]) -> Normalizer:
        """Statistics over every frame of every track yielded by ``tracks()`` (float64 sums)."""
        count, total, total_sq = 0, None, None
        for x in tracks():
            x = np.asarray(x, dtype=np.float64)
            if total is None:
                total, total_sq = np.zeros(x.shape[1]), np.zeros(x.shape[1])
            count += x.shape[0]
            total += x.sum(axis=0)
            total_sq += np.square(x).sum(axis=0)
        if not count:
            raise ModelError("cannot fit the normalisation: no training frames")
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
        # A silent band (constant, e.g. above the audio's bandwidth) must not blow up.
        return cls(mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32))

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalizer:
        return cls(np.asarray(data["mean"], np.float32), np.asarray(data["std"], np.float32))


class TrackSource:
    """Log-mel of a fixed list of tracks, by position ``0 .. len - 1``.

    Parameters
    ----------
    read : callable
        ``read(key) -> (n_frames, n_mels)`` array; e.g. ``store.read``.
    keys : sequence
        What to pass to ``read`` for each position (store row indices).
    n_frames : sequence of int
        Frames per track, to size the memory budget without reading.
    n_mels : int
        Bands per frame.
    memory_limit_mb : float
        Hold every track in memory (float32) when they fit; stream otherwise.
    blocks : sequence of int, optional
        Block id per position (e.g. the store shard); streaming reads a block at
        a time. Default: runs of ``block_tracks`` consecutive positions.
    """

    def __init__(
        self,
        read: Callable[[Any], np.ndarray],
        keys: Sequence[Any],
        n_frames: Sequence[int],
        n_mels: int,
        *,
        memory_limit_mb: float = 4096.0,
        blocks: Sequence[int] | None = None,
        block_tracks: int = 256,
    ):
        self._read, self.keys = read, list(keys)
        self.n_frames = np.asarray(n_frames, np.int64)
        nbytes = int(self.n_frames.sum()) * n_mels * 4
        self.in_memory = nbytes <= memory_limit_mb * 2**20
        if blocks is None:
            blocks = np.arange(len(self.keys)) // block_tracks
        self.blocks = np.asarray(blocks)
        self._cache: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        if self.in_memory:
            self._cache = {i: self._load(i) for i in range(len(self.keys))}

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray]) -> TrackSource:
        """A source over in-memory arrays (tests, benchmarks)."""
        return cls(lambda i: arrays[i], range(len(arrays)), [a.shape[0] for a in arrays], arrays[0].shape[1])

    def _load(self, i: int) -> np.ndarray:
        return np.asarray(self._read(self.keys[i]), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> np.ndarray:
        if self.in_memory:
            return self._cache[i]
        with self._lock:
            if i not in self._cache:
                # Keep only the current block: memory stays bounded by one block.
                block = self.blocks[i]
                self._cache = {j: self._load(j) for j in np.flatnonzero(self.blocks == block)}
            return self._cache[i]

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i] if self.in_memory else self._load(i)


def _pad_to(x: np.ndarray, n: int) -> np.ndarray:
    # Tracks shorter than a crop repeat from the start rather than pad with
    # silence, which would be a strong cue of "short track" to the network.
    return x if x.shape[0] >= n else np.pad(x, ((0, n - x.shape[0]), (0, 0)), mode="wrap")


def eval_crops(x: np.ndarray, crop_frames: int, max_crops: int | None = None) -> np.ndarray:
    """Evenly spaced crops ``(n_crops, crop_frames, n_mels)`` covering a track ``(n_frames, n_mels)``.

    ``n_crops = ceil(n_frames / crop_frames)``, capped at ``max_crops``; the
    first starts at frame 0 and the last ends at the last frame.
    """
    x = _pad_to(x, crop_frames)
    n = int(np.ceil(x.shape[0] / crop_frames))
    if max_crops:
        n = min(n, max_crops)
    starts = np.round(np.linspace(0, x.shape[0] - crop_frames, max(n, 1))).astype(np.int64)
    return np.stack([x[s : s + crop_frames] for s in starts])


class TrainLoader:
    """Deterministic training batches over a :class:`TrackSource`.

    Parameters
    ----------
    source : TrackSource
        The training tracks.
    labels : array of int
        Label index per source position.
    n_classes : int
        Width of the one-hot targets.
    normalizer : Normalizer
        Training-split statistics.
    crop_frames : int
        Frames per crop.
    config : TrainConfig
        Batch size, seed and augmentation switches.

    Notes
    -----
    A batch is ``{"x": float32 (batch, crop_frames, n_mels), "y": float32 (batch, n_classes)}``.
    The last partial batch of an epoch is dropped so every batch splits evenly
    over devices; with fewer tracks than a batch, the epoch repeats tracks.
    """

    def __init__(
        self,
        source: TrackSource,
        labels: np.ndarray,
        n_classes: int,
        normalizer: Normalizer,
        crop_frames: int,
        config: TrainConfig,
        *,
        batch_size: int | None = None,
    ):
        self.source, self.labels = source, np.asarray(labels, np.int64)
        self.n_classes, self.normalizer, self.crop_frames, self.config = n_classes, normalizer, crop_frames, config
        self.batch_size = batch_size or config.batch_size
        self.steps_per_epoch = max(len(source) // self.batch_size, 1)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Source positions in the order epoch ``epoch`` visits them."""
        rng = np.random.default_rng([self.config.seed, epoch])
        need = self.steps_per_epoch * self.batch_size
        if self.source.in_memory:
            order = np.concatenate([rng.permutation(len(self.source)) for _ in range(-(-need // len(self.source)))])
        else:
            # Blocks in random order, tracks shuffled within a block: one block read at a time.
            blocks = self.source.blocks
            order = np.concatenate(
                [rng.permutation(np.flatnonzero(blocks == b)) for b in rng.permutation(np.unique(blocks))]
            )
            order = np.resize(order, max(need, order.size))
        return order[:need]

    def batch(self, epoch: int, index: int, order: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Batch ``index`` of epoch ``epoch``."""
        order = self.epoch_order(epoch) if order is None else order
        positions = order[index * self.batch_size : (index + 1) * self.batch_size]
        rng = np.random.default_rng([self.config.seed, epoch, index])
        c, cfg = self.crop_frames, self.config
        x = np.empty((len(positions), c, self.normalizer.mean.size), np.float32)
        for row, pos in enumerate(positions):
            track = _pad_to(self.source[int(pos)], c)
            start = rng.integers(0, track.shape[0] - c + 1)
            x[row] = track[start : start + c]
        x = self.normalizer(x)
        y = np.eye(self.n_classes, dtype=np.float32)[self.labels[positions]]
        for row in range(len(positions)):
            # Masked regions are set to 0, the training mean after normalisation.
            for _ in range(cfg.time_masks):
                width = rng.integers(0, min(cfg.max_time_mask, c // 4) + 1)
                start = rng.integers(0, c - width + 1)
                x[row, start : start + width, :] = 0.0
            for _ in range(cfg.freq_masks):
                width = rng.integers(0, min(cfg.max_freq_mask, x.shape[2] // 4) + 1)
                start = rng.integers(0, x.shape[2] - width + 1)
                x[row, :, start : start + width] = 0.0
        if cfg.mixup_alpha > 0:
            lam = rng.beta(cfg.mixup_alpha, cfg.mixup_alpha, size=len(positions)).astype(np.float32)
            partner = rng.permutation(len(positions))
            x = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[partner]
            y = lam[:, None] * y + (1 - lam[:, None]) * y[partner]
        return {"x": x.astype(np.float32, copy=False), "y": y.astype(np.float32, copy=False)}

    def batches(self, start_epoch: int, start_index: int, end_epoch: int) -> Iterator[tuple[int, int, dict]]:
        """``(epoch, index, batch)`` from position ``(start_epoch, start_index)`` to the end of ``end_epoch - 1``."""
        for epoch in range(start_epoch, end_epoch):
            order = self.epoch_order(epoch)
            for index in range(start_index if epoch == start_epoch else 0, self.steps_per_epoch):
                yield epoch, index, self.batch(epoch, index, order)
