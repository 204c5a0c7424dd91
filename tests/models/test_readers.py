"""Batches built by reader processes in shared memory: the same batches as one process, for any count."""

from __future__ import annotations

import numpy as np
import pytest

from mgc.engine import FeatureStore
from mgc.models.config import TrainConfig
from mgc.models.data.pipeline import TrainStream, crop_frames_for, fit_normalizer
from mgc.models.data.readers import ReaderPool
from mgc.models.errors import ModelError


def _stream(store_path, **config):
    store = FeatureStore(store_path)
    rows = np.arange(len(store))
    settings = TrainConfig(**{"batch_size": 8, "crops_per_track": 2, "seed": 5, **config})
    normalizer = fit_normalizer(store, rows, seed=5)
    crop = crop_frames_for(0.5, store.spec.frames_per_second)
    return TrainStream(store, rows, store.tracks.label, len(store.label_names), normalizer, crop, settings)


@pytest.mark.parametrize("memory_limit_mb", [4096.0, 0.05])  # the split in memory, and streamed in windows
def test_reader_processes_give_the_batches_of_one_process(tone_store, memory_limit_mb):
    stream = _stream(tone_store, memory_limit_mb=memory_limit_mb)
    expected = list(stream.batches(0, 9))
    for readers in (1, 2):
        got = list(ReaderPool(stream, readers).batches(0, 9))
        assert [step for step, _ in got] == list(range(9))
        for (_, a), (_, b) in zip(expected, got):
            np.testing.assert_array_equal(a["x"], b["x"])
            np.testing.assert_array_equal(a["y"], b["y"])
    # Resuming at step 5 with 2 readers gives the batches 5.. of the run from the start.
    resumed = list(ReaderPool(stream, 2).batches(5, 9))
    for (_, a), (_, b) in zip(expected[5:], resumed):
        np.testing.assert_array_equal(a["x"], b["x"])


def test_the_ranks_of_a_process_are_built_by_readers_too(tone_store):
    store = FeatureStore(tone_store)
    rows = np.arange(len(store))
    config = TrainConfig(batch_size=8, crops_per_track=2)
    normalizer = fit_normalizer(store, rows, seed=0)
    stream = TrainStream(
        store, rows, store.tracks.label, len(store.label_names), normalizer, 20, config, ranks=4, local_ranks=[2, 3]
    )
    expected = list(stream.batches(0, 4))
    got = list(ReaderPool(stream, 2).batches(0, 4))
    assert got[0][1]["x"].shape == (4, 20, store.spec.n_mels)  # 2 of the 4 ranks' parts of a global batch of 8
    for (_, a), (_, b) in zip(expected, got):
        np.testing.assert_array_equal(a["x"], b["x"])


def test_a_reader_that_dies_is_a_clear_error(tone_store):
    import os
    import signal

    stream = _stream(tone_store)
    batches = ReaderPool(stream, 2).batches(0, 10_000)
    next(batches)
    import multiprocessing

    for child in multiprocessing.active_children():
        if child.name.startswith("mgc-reader"):
            os.kill(child.pid, signal.SIGKILL)
    with pytest.raises(ModelError, match="died"):
        for _ in batches:
            pass
