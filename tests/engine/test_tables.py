"""The consolidated track table: string columns, consolidate(), old and stale stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mgc.engine import FeatureStore, extract, schema
from mgc.engine.tables import StringColumn, consolidate


def _assert_same_tables(left: FeatureStore, right: FeatureStore) -> None:
    assert left.tracks.keys() == right.tracks.keys()
    for column in left.tracks.keys():
        np.testing.assert_array_equal(np.asarray(left.tracks[column]), np.asarray(right.tracks[column]))
    for column in ("track_id", "path", "kind", "message"):
        assert list(getattr(left.failures, column)) == list(getattr(right.failures, column))


def test_store_without_table_opens_and_equals_the_consolidated_one(genre_folder: Path, tmp_path: Path):
    (genre_folder / "blues" / "blues.bad.wav").write_text("not audio")
    extract(genre_folder, tmp_path / "store", workers=1, shard_size=2)
    table = tmp_path / "store" / schema.TABLE_NAME
    if table.exists():  # written by extract itself: remove it to get a store as written before it existed
        table.unlink()
    old = FeatureStore(tmp_path / "store")
    assert old.shards_read_on_open == len(old.shard_names) == 4 and len(old.failures) == 1
    consolidate(tmp_path / "store")
    new = FeatureStore(tmp_path / "store")
    assert new.shards_read_on_open == 0
    _assert_same_tables(old, new)
    assert list(new.tracks.label) == [0, 0, 0, 1, 1, 1] and new.failures.kind[0] == "unreadable"
    for row in range(len(new)):
        np.testing.assert_array_equal(new.read(row), old.read(row))
        assert new.row(new.tracks.track_id[row]) == row


def test_stale_table_is_completed_from_the_shards(genre_folder: Path, tmp_path: Path):
    extract(genre_folder, tmp_path / "store", workers=1, shard_size=2)
    folder = tmp_path / "store"
    full = FeatureStore(folder)
    index = json.loads((folder / "index.json").read_text())
    # A table covering shards 0 and 2 only (as if written while shard 1 was missing).
    partial = dict(index, shards=[index["shards"][0], index["shards"][2]])
    (folder / "index.json").write_text(json.dumps(partial))
    consolidate(folder)
    (folder / "index.json").write_text(json.dumps(index))
    stale = FeatureStore(folder)
    assert stale.shards_read_on_open == 1
    _assert_same_tables(full, stale)
    # A table naming a shard the index does not have is ignored as a whole.
    consolidate(folder)
    (folder / "index.json").write_text(json.dumps(partial))
    ignored = FeatureStore(folder)
    assert ignored.shards_read_on_open == 2 and len(ignored) == 4


def test_string_columns_are_vectorised():
    column = StringColumn.from_strings(["b", "", "Zoë", "abc", "b", None])
    assert len(column) == 6 and column[2] == "Zoë" and column[-1] == ""
    assert list(column) == ["b", "", "Zoë", "abc", "b", ""]
    assert (column == "b").tolist() == [True, False, False, False, True, False]
    assert (column != "").tolist() == [True, False, True, True, True, False]
    assert column.isin(["abc", "Zoë"]).tolist() == [False, False, True, True, False, False]
    names, codes = column.codes()
    assert names == ["", "Zoë", "abc", "b"] == sorted(set(column)) and [names[c] for c in codes] == list(column)
    assert column.lookup(["b", "nope", "abcd", "Zoë", ""]).tolist() == [0, -1, -1, 2, 1]
    assert column.take([3, 0, 2]).tolist() == ["abc", "b", "Zoë"] and column[1:3].tolist() == ["", "Zoë"]
    both = StringColumn.concat([column.slice(2, 4), column.take([0])])
    assert both.tolist() == ["Zoë", "abc", "b"]
    assert np.asarray(column).dtype == object


def test_damaged_shard_behind_a_table_is_caught_when_read(genre_folder: Path, tmp_path: Path):
    import h5py
    import pytest

    from mgc.engine import StoreError

    extract(genre_folder, tmp_path / "store", workers=1, shard_size=2)
    consolidate(tmp_path / "store")
    store = FeatureStore(tmp_path / "store")
    with h5py.File(tmp_path / "store" / store.shard_names[1], "a") as h5:
        h5["features/logmel"].resize(3, axis=0)
    store.read(0)  # other shards still read
    with pytest.raises(StoreError, match="features/logmel has shape"):
        store.read(2)


def test_summary_is_the_same_with_or_without_the_table(genre_folder: Path, tmp_path: Path):
    from mgc.engine import summarize_store

    (genre_folder / "rock" / "bad.wav").write_text("text")
    extract(genre_folder, tmp_path / "store", workers=1, shard_size=2)
    table = tmp_path / "store" / schema.TABLE_NAME
    if table.exists():
        table.unlink()
    before = summarize_store(tmp_path / "store")
    consolidate(tmp_path / "store")
    after = summarize_store(tmp_path / "store")
    # Everything but the size on disk, which now counts the table file too.
    assert after["bytes_on_disk"] == before["bytes_on_disk"] + table.stat().st_size
    assert {**before, "bytes_on_disk": 0} == {**after, "bytes_on_disk": 0}
    assert after["labels"]["rock"]["tracks"] == 3 and after["failures"]["by_kind"] == {"unreadable": 1}
    assert after["tracks"] == 6 and after["frames"] == int(FeatureStore(tmp_path / "store").tracks.n_frames.sum())
