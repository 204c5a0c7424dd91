"""Crops, normalisation, augmentation, determinism and streaming."""

from __future__ import annotations

import numpy as np

from models.config import TrainConfig
from models.input_pipeline import Normalizer, TrackSource, TrainLoader, eval_crops


def _tracks(rng, n=10, n_mels=16):
    return [rng.normal(-30, 10, size=(int(rng.integers(10, 80)), n_mels)).astype(np.float32) for _ in range(n)]


def _loader(tracks, seed=0, **overrides):
    config = TrainConfig(batch_size=4, seed=seed, **overrides)
    source = TrackSource.from_arrays(tracks)
    normalizer = Normalizer.fit(lambda: iter(source))
    return TrainLoader(source, np.arange(len(tracks)) % 3, 3, normalizer, 32, config)


def test_normalizer_fits_the_training_frames(rng):
    tracks = _tracks(rng)
    normalizer = Normalizer.fit(lambda: iter(tracks))
    frames = np.concatenate(tracks)
    np.testing.assert_allclose(normalizer.mean, frames.mean(0), rtol=1e-5)
    np.testing.assert_allclose(normalizer.std, frames.std(0), rtol=1e-4)
    z = normalizer(frames)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
    assert Normalizer.from_dict(normalizer.to_dict()).mean.tolist() == normalizer.mean.tolist()
    constant = Normalizer.fit(lambda: iter([np.ones((5, 4), np.float32)]))
    assert np.all(np.isfinite(constant(np.ones((2, 4), np.float32))))


def test_batches_are_deterministic_for_a_seed(rng):
    tracks = _tracks(rng)
    a, b, c = _loader(tracks), _loader(tracks), _loader(tracks, seed=1)
    first, second, other = a.batch(2, 1), b.batch(2, 1), c.batch(2, 1)
    np.testing.assert_array_equal(first["x"], second["x"])
    np.testing.assert_array_equal(first["y"], second["y"])
    assert not np.array_equal(first["x"], other["x"])
    assert not np.array_equal(a.batch(0, 0)["x"], a.batch(1, 0)["x"])
    resumed = list(a.batches(1, 1, 2))
    full = [item for item in a.batches(0, 0, 2) if (item[0], item[1]) >= (1, 1)]
    assert [(e, i) for e, i, _ in resumed] == [(e, i) for e, i, _ in full]
    for (_, _, x), (_, _, y) in zip(resumed, full):
        np.testing.assert_array_equal(x["x"], y["x"])


def test_batch_shapes_masks_and_mixup(rng):
    tracks = _tracks(rng)
    plain = _loader(tracks, mixup_alpha=0.0, time_masks=0, freq_masks=0)
    batch = plain.batch(0, 0)
    assert batch["x"].shape == (4, 32, 16) and batch["x"].dtype == np.float32
    assert set(np.unique(batch["y"])) <= {0.0, 1.0}
    assert plain.steps_per_epoch == 2  # 10 tracks, batches of 4, last partial batch dropped
    masked = _loader(tracks, mixup_alpha=0.0, time_masks=2, freq_masks=2, max_time_mask=8, max_freq_mask=4)
    assert (masked.batch(0, 0)["x"] == 0).sum() > (batch["x"] == 0).sum()
    mixed = _loader(tracks, mixup_alpha=0.4).batch(0, 0)
    np.testing.assert_allclose(mixed["y"].sum(1), 1.0, rtol=1e-6)
    assert np.any((mixed["y"] > 0) & (mixed["y"] < 1))


def test_epoch_visits_every_track_once_in_memory_and_streaming(rng):
    tracks = _tracks(rng, n=12)
    config = TrainConfig(batch_size=4)
    streamed = TrackSource(
        lambda i: tracks[i], range(12), [len(t) for t in tracks], 16, memory_limit_mb=0, block_tracks=5
    )
    assert not streamed.in_memory
    loader = TrainLoader(
        streamed, np.zeros(12, int), 3, Normalizer(np.zeros(16, np.float32), np.ones(16, np.float32)), 8, config
    )
    order = loader.epoch_order(0)
    assert sorted(order.tolist()) == list(range(12))
    blocks = streamed.blocks[order]
    assert np.sum(blocks[1:] != blocks[:-1]) == 2  # each of the 3 blocks is read once
    loader.batch(0, 0)
    assert len(streamed._cache) <= 5  # only the current block is held
    in_memory = TrackSource.from_arrays(tracks)
    assert in_memory.in_memory and sorted(
        TrainLoader(in_memory, np.zeros(12, int), 3, loader.normalizer, 8, config).epoch_order(0).tolist()
    ) == list(range(12))


def test_fewer_tracks_than_a_batch_still_make_one(rng):
    loader = _loader(_tracks(rng, n=3))
    assert loader.steps_per_epoch == 1 and loader.batch(0, 0)["x"].shape[0] == 4


def test_eval_crops_cover_the_track():
    x = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    crops = eval_crops(x, 30)
    assert crops.shape == (4, 30, 4)
    assert crops[0, 0, 0] == 0 and crops[-1, -1, 0] == 99
    assert eval_crops(x, 30, max_crops=2).shape[0] == 2
    short = eval_crops(x[:10], 30)
    assert short.shape == (1, 30, 4) and short[0, 10, 0] == 0  # repeated from the start
