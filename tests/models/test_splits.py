"""Track-level splits: stratified, manifest column, artist-disjoint, split files; never leaking."""

from __future__ import annotations

import numpy as np
import pytest

from models.config import ModelError
from models.splits import make_splits, track_columns


def _table(n_per_class=10, n_classes=3, **extra):
    labels = np.repeat(np.arange(n_classes), n_per_class)
    ids = np.array([f"genre{l}/genre{l}.{i:05d}.wav" for i, l in enumerate(labels)], dtype=object)
    return {"track_id": ids, "path": ids.copy(), "label": labels, **extra}


def _assert_partition(splits, table):
    sets = [set(splits[s]) for s in ("train", "valid", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    labeled = {t for t, l in zip(table["track_id"], table["label"]) if l >= 0}
    assert set().union(*sets) <= labeled


def test_stratified_split_keeps_every_label_in_every_split():
    table = _table()
    splits = make_splits(table, seed=1, val_fraction=0.2, test_fraction=0.2)
    _assert_partition(splits, table)
    assert splits["method"] == "stratified"
    label_of = dict(zip(table["track_id"], table["label"]))
    for name, expected in (("train", 6), ("valid", 2), ("test", 2)):
        counts = np.bincount([label_of[t] for t in splits[name]], minlength=3)
        assert counts.tolist() == [expected] * 3
    assert make_splits(table, seed=1, val_fraction=0.2, test_fraction=0.2) == splits
    assert make_splits(table, seed=2, val_fraction=0.2, test_fraction=0.2) != splits


def test_unlabeled_tracks_are_in_no_split():
    table = _table()
    table["label"] = table["label"].copy()
    table["label"][:4] = -1
    splits = make_splits(table, seed=0)
    _assert_partition(splits, table)
    assert not set(table["track_id"][:4]) & set(splits["train"] + splits["valid"] + splits["test"])


def test_manifest_split_column_wins():
    split = np.array((["train"] * 6 + ["validation"] * 2 + ["test"] * 2) * 3, dtype=object)
    table = _table(split=split)
    splits = make_splits(table, seed=0, val_fraction=0.5, test_fraction=0.1)
    assert splits["method"] == "manifest split column"
    assert set(splits["test"]) == set(table["track_id"][split == "test"])
    assert set(splits["valid"]) == set(table["track_id"][split == "validation"])
    with pytest.raises(ModelError, match="unknown split"):
        make_splits(_table(split=np.array(["holdout"] * 30, dtype=object)))


def test_artist_disjoint_split():
    artists = np.array([f"artist{i // 2}" for i in range(30)], dtype=object)  # two tracks per artist
    table = _table(artist=artists)
    splits = make_splits(table, seed=3, val_fraction=0.2, test_fraction=0.2)
    _assert_partition(splits, table)
    assert splits["method"] == "artist-disjoint stratified"
    artist_of = dict(zip(table["track_id"], artists))
    by_split = [{artist_of[t] for t in splits[s]} for s in ("train", "valid", "test")]
    assert not (by_split[0] & by_split[1]) and not (by_split[0] & by_split[2]) and not (by_split[1] & by_split[2])
    assert all(splits[s] for s in ("train", "valid", "test"))


def test_split_files_gtzan_style(tmp_path):
    table = _table()
    table["track_id"] = np.array([t.replace(".wav", "") for t in table["track_id"]], dtype=object)
    (tmp_path / "train_filtered.txt").write_text("genre0/genre0.00000.wav\ngenre1/genre1.00010.wav\n")
    (tmp_path / "valid_filtered.txt").write_text("genre2/genre2.00020.wav\n")
    (tmp_path / "test_filtered.txt").write_text("genre0/genre0.00001.wav\n\n")
    files = {s: tmp_path / f"{s}_filtered.txt" for s in ("train", "valid", "test")}
    # Split files win even over a split column.
    table["split"] = np.array(["test"] * 30, dtype=object)
    splits = make_splits(table, split_files=files)
    assert splits["method"] == "split files"
    assert splits["train"] == ["genre0/genre0.00000", "genre1/genre1.00010"]
    assert splits["valid"] == ["genre2/genre2.00020"] and splits["test"] == ["genre0/genre0.00001"]
    (tmp_path / "bad.txt").write_text("nowhere/none.wav\n")
    with pytest.raises(ModelError, match="none of the 1 track ids"):
        make_splits(table, split_files={"train": tmp_path / "bad.txt"})


def test_track_columns_accepts_rows_and_bytes():
    rows = [{"track_id": b"a", "label": 0, "split": None}, {"track_id": b"b", "label": 1, "split": "test"}]
    cols = track_columns(rows)
    assert cols["track_id"].tolist() == ["a", "b"] and cols["split"].tolist() == ["", "test"]
    assert cols["label"].dtype == np.int64
