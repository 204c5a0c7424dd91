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

from mgc.engine import FeatureSpec, FeatureStore, StoreError, compute_features, extract, schema
from mgc.engine.tables import consolidate


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
        assert h5["features/logmel"].compression is None  # the default: uncompressed
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
    (folder / schema.TABLE_NAME).unlink(missing_ok=True)  # without it, the shards' tables are read and checked
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


# --- bounded handles, bulk reads, the consolidated table ---------------------------------------


def _shard_fds(store_path) -> int:
    """Open file descriptors of this process that point at the store's shard files."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(os.fspath(store_path)) and os.path.basename(target).startswith("shard-"):
            count += 1
    return count


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory) -> Path:
    """70 one-track shards (more than the 64 files of the rlimit test), consolidated."""
    from tests.engine.conftest import write_audio

    root = tmp_path_factory.mktemp("many")
    source = write_audio(root / "one.wav", 0.3)
    (root / "corpus").mkdir()
    for i in range(70):
        os.link(source, root / "corpus" / f"t{i:03d}.wav")
    extract(root / "corpus", root / "store", workers=1, shard_size=1)
    consolidate(root / "store")
    return root / "store"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_open_handles_stay_under_the_bound(many_shards: Path):
    store = FeatureStore(many_shards, max_open=2)
    assert len(store.shard_names) == 70
    peak = 0
    for row in range(len(store)):
        store.read(row)
        peak = max(peak, _shard_fds(many_shards))
    for _row, _frames in store.iter_tracks():
        peak = max(peak, _shard_fds(many_shards))
    store.read_rows(np.arange(len(store))[::-1])
    peak = max(peak, _shard_fds(many_shards))
    assert 0 < peak <= 2 and store.open_files <= 2
    store.close()
    assert _shard_fds(many_shards) == 0 and store.open_files == 0
    with FeatureStore(many_shards, max_open=3) as other:
        list(other.iter_tracks())
    assert _shard_fds(many_shards) == 0


_UNDER_RLIMIT = """
import resource, sys
import numpy as np
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from mgc.engine import FeatureStore
store = FeatureStore(sys.argv[1])
total = 0
for row in range(len(store)):
    total += store.read(row).shape[0]
streamed = sum(frames.shape[0] for _row, frames in store.iter_tracks())
assert total == streamed == int(store.tracks.n_frames.sum())
print("ok", len(store))
"""


def test_reading_every_track_under_a_64_file_limit(many_shards: Path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_RLIMIT, str(many_shards)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", "70"]


def test_iter_tracks_and_read_rows_equal_read(store: FeatureStore):
    for feature in ("logmel", "mfcc"):
        seen = []
        for row, frames in store.iter_tracks(feature):
            assert frames.dtype == np.float32
            np.testing.assert_array_equal(frames, store.read(row, feature))
            seen.append(row)
        assert seen == list(range(len(store)))
        rows = [5, 0, 3, 3, -1]
        for row, frames in zip(rows, store.read_rows(rows, feature=feature)):
            np.testing.assert_array_equal(frames, store.read(row, feature))
    assert [row for row, _ in store.iter_tracks(rows=[4, 1, 1])] == [1, 4]
    for span in (1, 40):  # spans cut at every track, or a few tracks per read
        for row, frames in store.iter_tracks(span_frames=span):
            np.testing.assert_array_equal(frames, store.read(row))
    with pytest.raises(IndexError):
        list(store.iter_tracks(rows=[6]))


def _read_all(store):
    return [frames for _row, frames in store.iter_tracks()]


def test_pickled_store_reads_in_spawned_and_forked_workers(store: FeatureStore):
    expected = [store.read(row) for row in range(len(store))]
    assert store.open_files > 0
    for method in ("spawn", "fork"):
        with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method)) as pool:
            for got, want in zip(pool.submit(_read_all, store).result(), expected):
                np.testing.assert_array_equal(got, want)
    clone = pickle.loads(pickle.dumps(store))
    assert clone.open_files == 0 and clone.max_open == store.max_open
