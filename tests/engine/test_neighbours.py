"""engine.vectors and engine.neighbours: vector stores, exact search against NumPy, the approximate index."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from mgc.engine.neighbours import build_index, exact_search, genre_precision_at_k, index_is_current, search
from mgc.engine.vectors import FORMAT, VERSION, VectorStore, VectorWriter, normalize


def _random_store(folder: Path, vectors: np.ndarray, labels, shard_tracks: int) -> Path:
    """A vector store of given vectors, written by the store's own writer."""
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"dir": None, "checkpoint": "best", "step": 0, "fingerprint": "x"},
        "dim": vectors.shape[1],
        "dtype": "float32",
        "label_names": sorted(set(labels)),
        "spec": {},
    }
    folder.mkdir(parents=True)
    writer = VectorWriter(folder, meta, overwrite=False)
    vectors = normalize(vectors)
    for start in range(0, len(vectors), shard_tracks):
        ids = [f"t{i}" for i in range(start, min(start + shard_tracks, len(vectors)))]
        block = slice(start, start + len(ids))
        writer.write(ids, [f"/music/{i}.wav" for i in ids], list(labels[block]), vectors[block], [])
    return folder


def test_exact_search_equals_numpy_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((203, 16)).astype(np.float32)
    labels = np.array(["a", "b", "c"])[rng.integers(0, 3, 203)]
    store = VectorStore(_random_store(tmp_path / "emb", vectors, labels, shard_tracks=50))
    assert len(store.shards) == 5 and len(store) == 203
    queries = normalize(rng.standard_normal((7, 16)).astype(np.float32))
    exclude = np.array([-1, 0, 49, 50, 202, 120, -1])
    rows, scores = exact_search(store, queries, k=12, exclude=exclude)
    all_scores = queries @ normalize(vectors).T
    for q in range(len(queries)):
        if exclude[q] >= 0:
            all_scores[q, exclude[q]] = -np.inf
        expected = np.argsort(-all_scores[q], kind="stable")[:12]
        assert list(rows[q]) == list(expected)
        np.testing.assert_allclose(scores[q], all_scores[q, expected], rtol=1e-5, atol=1e-6)
    # Fewer rows than k: padded with -1.
    rows, scores = search(store, queries[:1], k=250)
    assert (rows[0, :203] >= 0).all() and (rows[0, 203:] == -1).all() and np.isneginf(scores[0, 203:]).all()


def test_approximate_index_recall_and_staleness(tmp_path):
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((10, 32)) * 2
    labels = rng.integers(0, 10, 4000)
    vectors = (centres[labels] + rng.standard_normal((4000, 32))).astype(np.float32)
    folder = _random_store(tmp_path / "emb", vectors, np.array([str(x) for x in labels]), shard_tracks=1000)
    store = VectorStore(folder)
    with pytest.raises(Exception, match="no current approximate index"):
        search(store, vectors[:1], exact=False)
    build_index(store)
    assert index_is_current(store)
    queries = normalize(vectors[:300] + 0.3 * rng.standard_normal((300, 32)).astype(np.float32))
    approx, approx_scores = search(store, queries, k=10)
    exact, exact_scores = exact_search(store, queries, k=10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.95, recall
    same = approx[:, 0] == exact[:, 0]
    assert same.mean() >= 0.95
    # The index holds float16 vectors: scores agree to about 1e-3.
    np.testing.assert_allclose(approx_scores[same, 0], exact_scores[same, 0], atol=2e-3)
    # A store that grows after the index was built: the index is stale and search is exact again.
    meta = store.meta
    writer = VectorWriter(folder, meta, overwrite=False)
    writer.write(["new"], ["/new.wav"], ["0"], normalize(vectors[:1]), [])
    grown = VectorStore(folder)
    assert not index_is_current(grown)
    rows, _ = search(grown, normalize(vectors[:1]), k=1)
    assert rows[0, 0] in (0, 4000)


def test_genre_precision_at_k():
    vectors = np.array([[1, 0], [0.9, 0.1], [0.7, 0.3], [0, 1], [0.1, 0.9], [0.6, 0.4]], np.float32)
    labels = np.array(["a", "a", "a", "b", "b", "b"])
    result = genre_precision_at_k(vectors, labels, k=2)
    # By angle (0, 6.3, 23.2, 90, 83.7, 33.7 degrees): 0->{1,2} 1->{0,2} 2->{5,1} 3->{4,5} 4->{3,5} 5->{2,1}:
    # hits 2, 2, 1, 2, 2, 0 of 2.
    assert result["precision"] == pytest.approx(9 / 12)
    assert result["per_label"] == {"a": pytest.approx(5 / 6), "b": pytest.approx(4 / 6)}
    assert result["chance"] == pytest.approx(2 * 3 * 2 / 30)


def test_a_killed_writer_leaves_whole_shards_and_a_resume_drops_the_rest(tmp_path):
    rng = np.random.default_rng(2)
    folder = _random_store(tmp_path / "emb", rng.standard_normal((30, 8)).astype(np.float32), np.array(["a"] * 30), 10)
    meta = VectorStore(folder).meta
    # What a kill leaves: a temporary file, an unlisted shard, a torn log line.
    (folder / "shard-00003.h5.tmp").write_bytes(b"partial")
    (folder / "shard-00003.h5").write_bytes(b"unlisted")
    with open(folder / "shards.jsonl", "ab") as log:
        log.write(b'{"name": "shard-000')
    store = VectorStore(folder)
    assert len(store) == 30 and [s["name"] for s in store.shards] == [f"shard-0000{i}.h5" for i in range(3)]
    writer = VectorWriter(folder, meta, overwrite=False)
    assert writer.done == {f"t{i}" for i in range(30)}
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("shard-")) == [
        f"shard-0000{i}.h5" for i in range(3)
    ]
    # A damaged listed shard: it and every shard after it leave the store (rows are positions).
    (folder / "shard-00001.h5").write_bytes(b"torn")
    writer = VectorWriter(folder, meta, overwrite=False)
    assert writer.done == {f"t{i}" for i in range(10)} and len(VectorStore(folder)) == 10
    with h5py.File(folder / "shard-00000.h5", "r") as h5:
        assert h5["embedding"].shape == (10, 8) and h5["failures/track_id"].shape == (0,)
    # Another model's vectors are refused.
    with pytest.raises(Exception, match="another model or dtype"):
        VectorWriter(folder, {**meta, "dtype": "float16"}, overwrite=False)


def test_a_folder_that_is_not_a_vector_store_is_never_touched(tmp_path):
    from mgc.engine.vectors import check_folder

    folder = tmp_path / "store"
    folder.mkdir()
    (folder / "shard-00000.h5").write_bytes(b"a feature store's shard")
    meta = {"format": FORMAT, "version": VERSION, "model": {"fingerprint": "x"}, "dim": 2, "dtype": "float32"}
    for overwrite in (False, True):
        with pytest.raises(Exception, match="not an embedding store"):
            VectorWriter(folder, {**meta, "label_names": []}, overwrite=overwrite)
    assert (folder / "shard-00000.h5").read_bytes() == b"a feature store's shard"
    with pytest.raises(Exception, match="is a file"):
        check_folder(folder / "shard-00000.h5")
