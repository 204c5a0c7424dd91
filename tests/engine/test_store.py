from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from engine import FeatureSpec, FeatureStore, StoreError, compute_features, extract
from engine import schema


@pytest.fixture
def store(genre_folder: Path, tmp_path: Path) -> FeatureStore:
    extract(genre_folder, tmp_path / "store", workers=1, shard_size=4)
    return FeatureStore(tmp_path / "store")


def test_reader_api(store: FeatureStore, genre_folder: Path):
    assert len(store) == 6 and store.label_names == ["blues", "rock"]
    assert store.spec == FeatureSpec()
    tracks = store.tracks
    assert list(tracks.track_id) == sorted(tracks.track_id)
    assert list(tracks.label) == [0, 0, 0, 1, 1, 1]
    assert set(tracks.source_sr) == {22050, 44100} and set(tracks.source_channels) == {1, 2}
    np.testing.assert_allclose(tracks.duration, 1.5, atol=1e-3)
    for row in range(len(store)):
        logmel = store.read(row)
        assert logmel.dtype == np.float32 and logmel.shape == (tracks.n_frames[row], 128)
        assert store.read(row, feature="mfcc").shape == (tracks.n_frames[row], 20)
    path = tracks.path[4]
    expected = compute_features(path)
    np.testing.assert_array_equal(store.read(tracks.track_id[4]), expected["logmel"])
    np.testing.assert_array_equal(store.read(4, "mfcc"), expected["mfcc"])
    np.testing.assert_array_equal(store.read(-1), store.read(5))
    with pytest.raises(KeyError):
        store.read("nope.wav")
    with pytest.raises(StoreError, match="not 'chroma'"):
        store.read(0, "chroma")


def test_plain_h5py_reads_what_the_readme_says(store: FeatureStore):
    index = json.loads((Path(store.path) / "index.json").read_text())
    name = index["shards"][1]["name"]
    with h5py.File(Path(store.path) / name, "r") as h5:
        ids = h5["tracks/track_id"].asstr()[()]
        first = h5["tracks/first_frame"][()]
        count = h5["tracks/n_frames"][()]
        logmel = h5["features/logmel"][first[0] : first[0] + count[0]]
        assert h5["features/logmel"].dtype == np.float16 and h5["features/mfcc"].dtype == np.float32
        assert h5["features/logmel"].compression == "lzf"
        assert h5["features/logmel"].chunks == (schema.CHUNK_FRAMES, 128)
        assert json.loads(h5.attrs["spec"]) == index["spec"]
    np.testing.assert_array_equal(logmel.astype(np.float32), store.read(str(ids[0])))


def _read_in_worker(args):
    store, row = args
    return store.read(row)


def test_reading_from_several_processes(store: FeatureStore):
    store.read(0)  # an open handle in this process must not travel
    assert pickle.loads(pickle.dumps(store))._handles == {}
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_read_in_worker, [(store, row) for row in range(len(store))]))
    for row, result in enumerate(results):
        np.testing.assert_array_equal(result, store.read(row))


def test_validate_on_open_catches_damage(store: FeatureStore):
    folder = Path(store.path)
    store.close()
    shard = folder / store.shard_names[0]
    with h5py.File(shard, "a") as h5:
        del h5["tracks/duration"]
    with pytest.raises(StoreError, match="tracks/duration"):
        FeatureStore(folder)
    index = json.loads((folder / "index.json").read_text())
    index["schema_version"] = 99
    (folder / "index.json").write_text(json.dumps(index))
    with pytest.raises(StoreError, match="schema version 99"):
        FeatureStore(folder)


def test_not_a_store(tmp_path: Path):
    with pytest.raises(StoreError, match="not a feature store"):
        FeatureStore(tmp_path)


def test_only_shards_named_by_the_index_are_read(store: FeatureStore):
    folder = Path(store.path)
    (folder / "shard-00099.h5").write_bytes(b"half written")
    (folder / "shard-00001.h5.123.tmp").write_bytes(b"half written")
    assert len(FeatureStore(folder)) == 6
