"""Crops, normalisation, augmentation, determinism and streaming."""

from __future__ import annotations

import numpy as np
import pytest

from mgc.models.config import TrainConfig
from mgc.models.data.pipeline import Normalizer, TrainStream, auto_crops_per_track, eval_crops, fit_normalizer


def _tracks(rng, n=10, n_mels=16):
    return [rng.normal(-30, 10, size=(int(rng.integers(10, 80)), n_mels)).astype(np.float32) for _ in range(n)]


def _stream(store_path, seed=0, crop=16, **overrides):
    from mgc.engine import FeatureStore

    store = FeatureStore(store_path)
    config = TrainConfig(**{"batch_size": 4, "seed": seed, **overrides})
    rows = np.arange(len(store))
    normalizer = fit_normalizer(store, rows, seed=seed)
    return TrainStream(store, rows, store.tracks.label, len(store.label_names), normalizer, crop, config)


def _expected_x(stream, step):
    """Batch ``step``'s crops rebuilt from the plan with ``store.read`` (no masks, no mixup)."""
    per_pass = stream.examples_per_pass
    wanted = range(step * stream.batch_size, (step + 1) * stream.batch_size)
    out = []
    for example in wanted:
        pass_index, offset = divmod(example, per_pass)
        for w, positions in enumerate(stream.windows(pass_index)):
            count = len(positions) * stream.crops_per_track
            if offset < count:
                pos, starts = stream.window_examples(pass_index, w, positions)
                track = stream.store.read(int(stream.rows[pos[offset]]))
                frames = (int(starts[offset]) + np.arange(stream.crop_frames)) % len(track)
                out.append(stream.normalizer(track[frames]))
                break
            offset -= count
    return np.stack(out)


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


def test_normalizer_of_a_sample_is_seeded_and_close(tone_store):
    from mgc.engine import FeatureStore

    store = FeatureStore(tone_store)
    rows = np.arange(len(store))
    full = fit_normalizer(store, rows, seed=0)
    sample = fit_normalizer(store, rows, seed=0, max_tracks=12)
    assert sample.mean.tolist() == fit_normalizer(store, rows, seed=0, max_tracks=12).mean.tolist()
    assert sample.mean.tolist() != full.mean.tolist()
    np.testing.assert_allclose(sample.mean, full.mean, atol=0.5 * float(full.std.mean()))


def test_batches_are_a_function_of_seed_and_step(tone_store):
    a, b, c = _stream(tone_store), _stream(tone_store), _stream(tone_store, seed=1)
    np.testing.assert_array_equal(a.batch(5)["x"], b.batch(5)["x"])
    np.testing.assert_array_equal(a.batch(5)["y"], b.batch(5)["y"])
    assert not np.array_equal(a.batch(5)["x"], c.batch(5)["x"])
    full = list(a.batches(0, 14))
    resumed = list(b.batches(9, 14))
    assert [s for s, _ in full] == list(range(14)) and [s for s, _ in resumed] == list(range(9, 14))
    for (_, x), (_, y) in zip(full[9:], resumed):
        np.testing.assert_array_equal(x["x"], y["x"])


@pytest.mark.parametrize("limit_mb", [1000.0, 0.05])
def test_crops_are_the_planned_frames_of_the_store(tone_store, limit_mb):
    plain = dict(mixup_alpha=0.0, time_masks=0, freq_masks=0)
    stream = _stream(tone_store, crops_per_track=3, memory_limit_mb=limit_mb, **plain)
    assert stream.cached == (limit_mb > 1)
    windows = stream.windows(0)
    assert (len(windows) == 1) == stream.cached
    if not stream.cached:
        assert all(stream.track_bytes[w].sum() <= stream.window_bytes or len(w) <= 8 for w in windows)
    # Every pass holds each track crops_per_track times.
    seen = np.concatenate([stream.window_examples(1, w, p)[0] for w, p in enumerate(stream.windows(1))])
    assert np.bincount(seen).tolist() == [3] * len(stream.rows)
    for step, batch in stream.batches(0, 40):  # 24 tracks x 3 crops = 72 examples: 18 steps a pass
        if step in (0, 17, 18, 39):
            np.testing.assert_allclose(batch["x"], _expected_x(stream, step), rtol=1e-6, atol=1e-6)


def test_the_cached_and_the_windowed_stream_cover_the_same_examples(tone_store):
    cached = _stream(tone_store, crops_per_track=2, mixup_alpha=0.0)
    windowed = _stream(tone_store, crops_per_track=2, memory_limit_mb=0.05, mixup_alpha=0.0)
    assert cached.cached and not windowed.cached
    count = cached.examples_per_pass // cached.batch_size
    labels = [np.sort(b["y"].argmax(1)) for _, b in cached.batches(0, count)]
    other = [np.sort(b["y"].argmax(1)) for _, b in windowed.batches(0, count)]
    assert np.array_equal(np.sort(np.concatenate(labels)), np.sort(np.concatenate(other)))


def test_batch_shapes_masks_and_mixup(tone_store):
    plain = _stream(tone_store, crop=32, crops_per_track=1, mixup_alpha=0.0, time_masks=0, freq_masks=0)
    batch = plain.batch(0)
    assert batch["x"].shape == (4, 32, 16) and batch["x"].dtype == np.float32
    assert set(np.unique(batch["y"])) <= {0.0, 1.0}
    assert plain.steps_per_epoch == 6  # 24 tracks, one crop each, batches of 4
    masked = _stream(tone_store, crop=32, mixup_alpha=0.0, time_masks=2, freq_masks=2, max_time_mask=8, max_freq_mask=4)
    x = masked.batch(0)["x"]
    assert (x == 0).sum() > (batch["x"] == 0).sum()
    assert np.all((x == 0).all(axis=2).sum(axis=1) <= 16) and np.any((x == 0).all(axis=1).any(axis=1))
    mixed = _stream(tone_store, crop=32, mixup_alpha=0.4).batch(0)
    np.testing.assert_allclose(mixed["y"].sum(1), 1.0, rtol=1e-6)
    assert np.any((mixed["y"] > 0) & (mixed["y"] < 1))


def test_epochs_in_examples_and_small_sets(tone_store):
    stream = _stream(tone_store, crops_per_track=8, epoch_examples=20)
    assert stream.steps_per_epoch == 5 and stream.examples_per_pass == 192
    tiny = _stream(tone_store, batch_size=64, crops_per_track=1)  # more examples per batch than tracks
    assert tiny.steps_per_epoch == 1 and tiny.batch(3)["x"].shape[0] == 64  # passes run on
    auto = _stream(tone_store)  # crops_per_track=0: ceil(4096 / 24 tracks), at most 8
    assert auto.crops_per_track == 8 and auto.examples_per_pass == 192
    assert auto_crops_per_track(4096) == 1 and auto_crops_per_track(1000) == 5 and auto_crops_per_track(1) == 8


def test_memory_is_bounded_by_the_window_not_the_store(tmp_path):
    import tracemalloc

    from mgc import engine
    from tests.models.conftest import small_spec, write_tone_corpus

    corpus = write_tone_corpus(tmp_path / "corpus", n_per_class=20, seconds=20.0)
    engine.extract(corpus, tmp_path / "store", small_spec(), workers=1)
    stream = _stream(tmp_path / "store", crops_per_track=2, memory_limit_mb=0.2, batch_size=8)
    store_bytes = int(stream.track_bytes.sum())
    assert store_bytes > 20 * stream.window_bytes  # the store is far beyond the budget
    tracemalloc.start()
    try:
        for _ in stream.batches(0, 2 * stream.examples_per_pass // 8):  # two passes
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # A window is whole shards: at least one. Two windows, the slice being copied, a few batches
    # and the plan of a pass; far below the store.
    window = max(stream.window_bytes, max(int(stream.track_bytes[g].sum()) for g in stream.groups))
    assert peak < 3 * window + 256 * 1024 < store_bytes / 2, (peak, window, store_bytes)


def test_eval_crops_cover_the_track():
    x = np.arange(100, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    crops = eval_crops(x, 30)
    assert crops.shape == (4, 30, 4)
    assert crops[0, 0, 0] == 0 and crops[-1, -1, 0] == 99
    assert eval_crops(x, 30, max_crops=2).shape[0] == 2
    short = eval_crops(x[:10], 30)
    assert short.shape == (1, 30, 4) and short[0, 10, 0] == 0  # repeated from the start
