"""Track-level splits: stratified, manifest column, artist-disjoint, split files; never leaking."""

from __future__ import annotations

import numpy as np
import pytest

from mgc.models.config import ModelError
from mgc.models.data.splits import _ALIASES, SPLITS, _from_files, make_splits, track_columns


def _table(n_per_class=10, n_classes=3, **extra):
    labels = np.repeat(np.arange(n_classes), n_per_class)
    ids = np.array([f"genre{k}/genre{k}.{i:05d}.wav" for i, k in enumerate(labels)], dtype=object)
    return {"track_id": ids, "path": ids.copy(), "label": labels, **extra}


def _assert_partition(splits, table):
    sets = [set(splits[s]) for s in ("train", "valid", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    labeled = {t for t, k in zip(table["track_id"], table["label"]) if k >= 0}
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


@pytest.mark.parametrize("hash_seed", ["0", "1", "2", "3"])
def test_split_files_of_dotted_ids_name_exactly_their_tracks(tmp_path, hash_seed):
    """GTZAN-style ids (``blues.00001``): the ``.00001`` is no extension, so ``blues`` names no track.

    Before the fix, a split file's ``blues.00001`` could land on ``blues.00000`` (whichever of its names a
    set gave first), so trainings with the same split file differed from run to run; the shorter names are
    now tried in a fixed order and a name shared by several tracks names none. Run in fresh processes under
    several hash seeds, because the old failure depended on string hashing.
    """
    import subprocess
    import sys

    script = f"""
import numpy as np
from pathlib import Path
from mgc.models.data.splits import make_splits
ids = np.array([f"{{g}}.{{i:05d}}" for g in ("blues", "rock") for i in range(10)], dtype=object)
table = {{"track_id": ids, "path": np.array([f"/music/{{t.split('.')[0]}}/{{t}}.wav" for t in ids], object),
          "label": np.repeat([0, 1], 10)}}
folder = Path({str(tmp_path)!r})
(folder / "train.txt").write_text("blues.00001\\nblues.00003\\nrock/rock.00007.wav\\nrock.00002.wav\\n")
(folder / "test.txt").write_text("blues.00009\\n")
splits = make_splits(table, split_files={{"train": folder / "train.txt", "test": folder / "test.txt"}})
assert splits["train"] == ["blues.00001", "blues.00003", "rock.00002", "rock.00007"], splits["train"]
assert splits["test"] == ["blues.00009"] and splits["valid"] == []
(folder / "vague.txt").write_text("blues\\n")
try:
    make_splits(table, split_files={{"train": folder / "vague.txt"}})
except Exception as error:
    assert "none of the 1 track ids" in str(error), error
else:
    raise AssertionError("'blues' named a track")
"""
    env = {**__import__("os").environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_track_columns_accepts_bytes_and_missing_splits():
    table = {"track_id": np.array([b"a", b"b"], object), "label": [0, 1], "split": np.array([None, "test"], object)}
    cols = track_columns(table)
    assert cols["track_id"].tolist() == ["a", "b"] and cols["split"].tolist() == ["", "test"]
    assert cols["label"].dtype == np.int64
    with pytest.raises(ModelError, match="dict of columns"):
        track_columns([{"track_id": "a", "label": 0}])


# --- the vectorised splits equal the per-track implementation they replaced --------------------
# The reference below is models/splits.py as it was before the vectorisation (git history),
# kept verbatim apart from names so that the new code can be compared with it forever.


def _old_stratified(ids, labels, rng, val, test):
    out = {s: [] for s in SPLITS}
    for label in np.unique(labels):
        members = ids[labels == label]
        members = members[rng.permutation(members.size)]
        n_test, n_val = _old_counts(members.size, val, test)
        out["test"] += list(members[:n_test])
        out["valid"] += list(members[n_test : n_test + n_val])
        out["train"] += list(members[n_test + n_val :])
    return out


def _old_counts(n, val, test):
    # At least one held-out track per class once a class has enough tracks, so
    # that every class is scored.
    n_test = max(int(round(n * test)), 1 if test > 0 and n >= 3 else 0)
    n_val = max(int(round(n * val)), 1 if val > 0 and n - n_test >= 2 else 0)
    return n_test, n_val


def _old_artist_disjoint(ids, labels, artists, rng, val, test):
    out = {s: [] for s in SPLITS}
    unique_artists = np.unique(artists)
    # Each artist goes, with all of their tracks, to one split; artists are
    # dealt out per majority label so that every split keeps the label mix.
    majority = {a: np.bincount(labels[artists == a]).argmax() for a in unique_artists}
    for label in np.unique(labels):
        group = [a for a in unique_artists if majority[a] == label]
        group = [group[i] for i in rng.permutation(len(group))]
        n_tracks = sum(int(np.sum(artists == a)) for a in group)
        n_test, n_val = _old_counts(n_tracks, val, test)
        taken = {"test": 0, "valid": 0}
        for a in group:
            members = list(ids[artists == a])
            if taken["test"] < n_test and len(group) >= 3:
                split = "test"
            elif taken["valid"] < n_val and len(group) >= 2:
                split = "valid"
            else:
                split = "train"
            taken[split] = taken.get(split, 0) + len(members)
            out[split] += members
    return out


def _old_make_splits(
    tracks,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_files=None,
):
    cols = track_columns(tracks)
    labeled = cols["label"] >= 0
    ids, labels = cols["track_id"][labeled], cols["label"][labeled]
    rng = np.random.default_rng(seed)
    if split_files:
        method = "split files"
        labeled_ids = set(ids)
        out = {k: [t for t in v if t in labeled_ids] for k, v in _from_files(cols, split_files).items()}
    elif "split" in cols and np.any(cols["split"][labeled] != ""):
        method = "manifest split column"
        splits = cols["split"][labeled]
        unknown = sorted({s for s in splits if s and s.lower() not in _ALIASES})
        if unknown:
            raise ModelError(f"unknown split names {unknown} in the manifest; use train, valid or test")
        out = {s: [t for t, v in zip(ids, splits) if v and _ALIASES[v.lower()] == s] for s in SPLITS}
        missing = splits == ""
        if np.any(missing):  # rows the manifest left blank are split at random
            extra = _old_stratified(ids[missing], labels[missing], rng, val_fraction, test_fraction)
            for s in SPLITS:
                out[s] += extra[s]
    elif "artist" in cols and np.any(cols["artist"][labeled] != ""):
        method = "artist-disjoint stratified"
        artists = cols["artist"][labeled].copy()
        # Tracks without an artist are their own artist.
        artists[artists == ""] = np.array(["\0" + t for t in ids[artists == ""]], dtype=object)
        out = _old_artist_disjoint(ids, labels, artists, rng, val_fraction, test_fraction)
    else:
        method = "stratified"
        out = _old_stratified(ids, labels, rng, val_fraction, test_fraction)
    out = {s: sorted(str(t) for t in out[s]) for s in SPLITS}
    seen = set()
    for s in SPLITS:
        if seen & set(out[s]):
            raise ModelError(f"tracks in more than one split, e.g. {sorted(seen & set(out[s]))[:3]}")
        seen |= set(out[s])
    if not out["train"]:
        raise ModelError(f"no labeled training tracks ({method}); the store needs labels to train")
    return {"method": method, **out}


def _random_table(rng, n, n_labels=4, n_artists=None, blank_artists=0.0, split=None, unlabeled=0.1):
    labels = rng.integers(0, n_labels, n)
    labels[rng.random(n) < unlabeled] = -1
    ids = np.array([f"g{k}/t{i:04d}.wav" for i, k in enumerate(labels)], dtype=object)[rng.permutation(n)]
    table = {"track_id": ids, "path": ids.copy(), "label": labels}
    if n_artists:
        artists = np.array([f"Art{rng.integers(n_artists)}é" for _ in range(n)], dtype=object)
        artists[rng.random(n) < blank_artists] = ""
        table["artist"] = artists
    if split is not None:
        table["split"] = split
    return table


def _as_engine_table(table):
    """The same table with string columns as the engine's StringColumn (what FeatureStore gives)."""
    from mgc.engine.tables import StringColumn

    return {k: StringColumn.from_strings(v) if np.asarray(v).dtype == object else v for k, v in table.items()}


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_splits_equal_the_old_implementation(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    tables = [
        _random_table(rng, n),
        _random_table(rng, n, n_artists=max(n // 7, 1)),
        _random_table(rng, n, n_artists=max(n // 3, 1), blank_artists=0.3),
        _random_table(rng, n, n_artists=5, blank_artists=0.9),
        _random_table(rng, n, split=rng.choice(np.array(["train", "valid", "Test", "dev", ""], dtype=object), n)),
    ]
    for table in tables:
        for val, test in ((0.1, 0.1), (0.2, 0.3), (0.0, 0.5)):
            old = _old_make_splits(table, seed=seed, val_fraction=val, test_fraction=test)
            assert make_splits(table, seed=seed, val_fraction=val, test_fraction=test) == old
            assert make_splits(_as_engine_table(table), seed=seed, val_fraction=val, test_fraction=test) == old


def test_splits_of_a_real_store(tmp_path):
    from mgc.engine import FeatureStore, extract
    from tests.engine.conftest import make_genre_folder

    extract(make_genre_folder(tmp_path / "corpus", per_label=4), tmp_path / "store", workers=1, shard_size=2)
    store = FeatureStore(tmp_path / "store")
    cols = track_columns(store.tracks)
    assert hasattr(cols["track_id"], "lookup")  # kept as the engine's column, no object per row
    plain = {k: np.asarray(v) for k, v in cols.items()}
    assert make_splits(store.tracks, seed=4) == _old_make_splits(plain, seed=4) == make_splits(plain, seed=4)


def test_store_rows_and_bulk_sources(tmp_path):
    from mgc.engine import FeatureStore, extract
    from mgc.models.data.stores import StoreTracks, split_source
    from tests.engine.conftest import make_genre_folder

    extract(make_genre_folder(tmp_path / "corpus", per_label=4), tmp_path / "store", workers=1, shard_size=3)
    tracks = StoreTracks.of(FeatureStore(tmp_path / "store", max_open=2))
    ids = list(tracks.columns["track_id"])
    wanted = [ids[5], ids[0], ids[7], ids[5]]
    assert tracks.rows_of(wanted).tolist() == [5, 0, 7, 5]
    plain = StoreTracks(tracks.store, {k: np.asarray(v) for k, v in tracks.columns.items()})
    assert plain.rows_of(wanted).tolist() == [5, 0, 7, 5]
    for table in (tracks, plain):
        with pytest.raises(ModelError, match="1 track ids"):
            table.rows_of([ids[0], "nowhere.wav"])
    rows = np.array([6, 1, 2, 7, 0, 3])  # positions interleave shards
    for limit in (1e6, 0.0):  # held in memory, then streamed a shard at a time
        source = split_source(tracks, rows, memory_limit_mb=limit)
        assert source.in_memory == (limit > 0)
        for position, row in enumerate(rows):
            np.testing.assert_array_equal(source[position], tracks.store.read(int(row)))
        for position, frames in enumerate(source):
            np.testing.assert_array_equal(frames, tracks.store.read(int(rows[position])))
    assert tracks.store.open_files <= 2
