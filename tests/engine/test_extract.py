from __future__ import annotations

import concurrent.futures as cf
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mgc.engine import (
    ExtractFailed,
    FeatureSpec,
    FeatureStore,
    SpecError,
    SpecMismatchError,
    StoreError,
    StoreLockedError,
    extract,
    load_corpus,
)

from .conftest import EXPECTED_KIND, make_bad_files, write_audio


def assert_same_store(a: Path, b: Path) -> None:
    """Same tracks in the same order, same fields, same features bit for bit, same failures."""
    left, right = FeatureStore(a), FeatureStore(b)
    assert left.spec == right.spec and left.label_names == right.label_names
    for column in ("track_id", "path", "label", "split", "artist", "n_frames", "duration", "source_sr"):
        np.testing.assert_array_equal(left.tracks[column], right.tracks[column])
    for row in range(len(left)):
        for feature in left.spec.features:
            np.testing.assert_array_equal(left.read(row, feature), right.read(row, feature))
    assert sorted(zip(left.failures.track_id, left.failures.kind)) == sorted(
        zip(right.failures.track_id, right.failures.kind)
    )


def test_every_bad_file_lands_in_the_failures_table(tmp_path: Path):
    bad = make_bad_files(tmp_path / "audio")
    write_audio(tmp_path / "audio" / "good é.wav", 1.0)
    rows = ["path,label"] + [f"audio/{p.name},bad" for p in bad.values()] + ["audio/good é.wav,good"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    seen = []
    result = extract(load_corpus(tmp_path / "m.csv"), tmp_path / "store", workers=1, progress=seen.append)
    assert result.stored_tracks == 1 and result.failed_tracks == len(bad)
    store = FeatureStore(tmp_path / "store")
    assert list(store.tracks.track_id) == ["audio/good é.wav"]
    kinds = dict(zip(store.failures.track_id, store.failures.kind))
    # song.m4a (an ftyp box, then zeros) goes to FFmpeg, which finds no moov atom: a cut MP4, not "unsupported".
    expected = {**EXPECTED_KIND, "unsupported": "truncated"}
    assert kinds == {f"audio/{path.name}": expected[name] for name, path in bad.items()}
    assert all(message for message in store.failures.message)
    assert [e.kind for e in seen] == ["start"] + ["update"] * (len(seen) - 2) + ["end"]
    assert all(e.task == "extract" and e.unit == "tracks" and e.total == len(bad) + 1 for e in seen)
    assert seen[0].done == 0 and seen[-1].done == len(bad) + 1
    assert seen[-1].info["failed"] == len(bad) and seen[-1].info["audio_seconds"] > 0
    with pytest.raises(ExtractFailed, match="strict") as info:
        extract(tmp_path / "m.csv", tmp_path / "store", workers=1, strict=True)
    assert info.value.result.processed_tracks == 0  # nothing redone; strict looks at the whole store


def test_no_usable_track_is_an_error(tmp_path: Path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.wav").write_text("text")
    with pytest.raises(ExtractFailed, match="no track could be used"):
        extract(tmp_path / "c", tmp_path / "store", workers=1)


def test_rerun_skips_complete_shards_and_extends_with_new_tracks(genre_folder: Path, tmp_path: Path):
    store = tmp_path / "store"
    first = extract(genre_folder, store, workers=1, shard_size=2)
    assert (first.processed_tracks, first.shards_written) == (6, 3)
    again = extract(genre_folder, store, workers=1)
    assert (again.processed_tracks, again.skipped_tracks, again.shards_written) == (0, 6, 0)
    write_audio(genre_folder / "jazz" / "jazz.00000.wav", 1.0)
    grown = extract(genre_folder, store, workers=1)
    assert (grown.processed_tracks, grown.shards_written, grown.stored_tracks) == (1, 1, 7)
    reader = FeatureStore(store)
    assert reader.label_names == ["blues", "jazz", "rock"]
    assert dict(zip(reader.tracks.track_id, reader.tracks.label))["jazz/jazz.00000.wav"] == 1


def test_other_spec_or_window_needs_overwrite(genre_folder: Path, tmp_path: Path):
    store = tmp_path / "store"
    extract(genre_folder, store, workers=1)
    with pytest.raises(SpecMismatchError, match=r"n_mels: store 128 vs now 64.*--overwrite"):
        extract(genre_folder, store, FeatureSpec(n_mels=64), workers=1)
    with pytest.raises(SpecMismatchError, match="duration"):
        extract(genre_folder, store, workers=1, duration=1.0)
    result = extract(genre_folder, store, FeatureSpec(n_mels=64), workers=1, overwrite=True)
    assert result.processed_tracks == 6
    assert FeatureStore(store).read(0).shape[1] == 64


def test_refuses_a_folder_that_is_not_a_store(genre_folder: Path):
    with pytest.raises(StoreError, match="not a feature store"):
        extract(genre_folder, genre_folder / "blues", workers=1)


@pytest.mark.parametrize("kwargs", [{"offset": -1.0}, {"duration": 0.0}, {"workers": 0}, {"shard_size": 0}])
def test_bad_arguments(genre_folder: Path, tmp_path: Path, kwargs):
    with pytest.raises(SpecError):
        extract(genre_folder, tmp_path / "store", **kwargs)


_HOLD_LOCK = """
import sys, time
from mgc.engine.lock import StoreLock
with StoreLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_second_extraction_into_the_same_store_refuses(genre_folder: Path, tmp_path: Path):
    store = tmp_path / "store"
    store.mkdir()
    root = str(Path(__file__).resolve().parents[2])
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(store)], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLockedError, match=f"pid {holder.pid}"):
            extract(genre_folder, store, workers=1)
    finally:
        holder.kill()
        holder.wait()
    assert extract(genre_folder, store, workers=1).stored_tracks == 6  # a dead holder frees the lock


def test_process_pool_and_injected_executor_equal_the_serial_run(genre_folder: Path, tmp_path: Path):
    extract(genre_folder, tmp_path / "serial", workers=1, shard_size=2)
    extract(genre_folder, tmp_path / "pool", workers=2, shard_size=2)
    with cf.ThreadPoolExecutor(2) as executor:
        extract(genre_folder, tmp_path / "threads", executor=executor, shard_size=4)
    assert_same_store(tmp_path / "serial", tmp_path / "pool")
    assert_same_store(tmp_path / "serial", tmp_path / "threads")


def test_offset_duration_and_manifest_fields(tmp_path: Path):
    write_audio(tmp_path / "a dir" / "ü.flac", 4.0, sr=44100, channels=2)
    write_audio(tmp_path / "b.wav", 1.0)
    (tmp_path / "m.csv").write_text("path,label,split,artist\na dir/ü.flac,x,train,Zoë\nb.wav,y,test,\n")
    extract(load_corpus(tmp_path, tmp_path / "m.csv"), tmp_path / "store", workers=1, offset=0.5, duration=2.0)
    store = FeatureStore(tmp_path / "store")
    assert list(store.tracks.split) == ["train", "test"] and list(store.tracks.artist) == ["Zoë", ""]
    np.testing.assert_allclose(store.tracks.duration, [2.0, 0.5], atol=1e-3)
    assert store.index["run"] == {"offset": 0.5, "duration": 2.0, "on_corrupt": "skip"}


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_compression_choices_give_the_same_numbers(genre_folder: Path, tmp_path: Path, compression):
    extract(genre_folder, tmp_path / "default", workers=1)
    extract(genre_folder, tmp_path / compression, workers=1, compression=compression)
    assert_same_store(tmp_path / "default", tmp_path / compression)
    with h5py.File(next((tmp_path / compression).glob("shard-*.h5")), "r") as h5:
        assert h5["features/logmel"].compression == compression
    with pytest.raises(SpecError, match="compression"):
        extract(genre_folder, tmp_path / "x", workers=1, compression="zstd")


def test_a_run_in_this_process_leaves_its_thread_settings_alone(genre_folder: Path, tmp_path: Path):
    """Changing NUMBA_NUM_THREADS after Numba started its threads breaks every later compile."""
    import os

    from mgc import kernels

    names = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    before = {name: os.environ.get(name) for name in names}
    kernels.melspectrogram(np.zeros((2, 4096), np.float32), sr=22050, parallel=True)  # starts Numba's threads
    extract(genre_folder, tmp_path / "store", FeatureSpec(), workers=1)
    extract(genre_folder, tmp_path / "store-pool", FeatureSpec(), workers=2)
    assert {name: os.environ.get(name) for name in names} == before
