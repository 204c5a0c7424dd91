"""Faults of vector stores and their index (engine.vectors, engine.neighbours): real files, real processes.

Each case breaks what a long ``mgc embed`` meets (a full disk, a torn or edited
log, a damaged shard or index, user files in the folder, a reader while the
store is replaced) and checks the answer is right or a one-line StoreError, and
that nothing is lost: after a resume every track is in the store exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mgc.engine import StoreError
from mgc.engine.neighbours import build_index, exact_search, index_is_current, index_state, search
from mgc.engine.vectors import FORMAT, VERSION, VectorStore, VectorWriter, normalize, owned, source_key

ROOT = Path(__file__).resolve().parents[2]
DIM = 8


def _meta(dim: int = DIM) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": {"dir": None, "checkpoint": "best", "step": 0, "fingerprint": "x"},
        "dim": dim,
        "dtype": "float32",
        "label_names": ["a", "b"],
        "spec": {},
        "source": {"kind": "audio"},
    }


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return normalize(np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32))


def _write(writer: VectorWriter, ids: list[str], vectors: np.ndarray) -> None:
    labels = ["a" if int(i[1:]) % 2 else "b" for i in ids]
    writer.write(ids, [f"/music/{i}.wav" for i in ids], labels, vectors, [], sources=[(f"/m/{i}", 1, 2) for i in ids])


def _store(folder: Path, n: int = 30, per_shard: int = 5) -> np.ndarray:
    """A store of ``n`` tracks ``t0..`` (``per_shard`` a shard); returns their vectors."""
    vectors = _vectors(n)
    writer = VectorWriter(folder, _meta(), overwrite=False)
    for start in range(0, n, per_shard):
        ids = [f"t{i}" for i in range(start, min(n, start + per_shard))]
        _write(writer, ids, vectors[start : start + len(ids)])
    return vectors


def _resume(folder: Path, n: int = 30, per_shard: int = 5) -> VectorWriter:
    """What ``mgc embed`` does on a resume: open the writer, write the tracks it lacks."""
    vectors = _vectors(n)
    writer = VectorWriter(folder, _meta(), overwrite=False)
    todo = [i for i in range(n) if f"t{i}" not in writer.done]
    for start in range(0, len(todo), per_shard):
        chunk = todo[start : start + per_shard]
        _write(writer, [f"t{i}" for i in chunk], vectors[chunk])
    return writer


def _assert_whole(folder: Path, n: int = 30) -> None:
    """Every track once, with its own vector, and exact search finds each track's own vector first."""
    store = VectorStore(folder)
    ids = list(store.track_ids())
    assert sorted(ids) == sorted(f"t{i}" for i in range(n)) and len(ids) == n
    rows = store.rows([f"t{i}" for i in range(n)])
    np.testing.assert_allclose(store.vectors(rows), _vectors(n), atol=1e-6)
    found, scores = exact_search(store, _vectors(n), k=1)
    assert list(found[:, 0]) == list(rows) and np.all(np.abs(scores) <= 1)


def _shard_lines(folder: Path) -> list[bytes]:
    return (folder / "shards.jsonl").read_bytes().splitlines(keepends=True)


# --- case 2: the log -----------------------------------------------------------------------------------------


def test_a_torn_last_line_is_not_a_shard_and_a_resume_repairs_it(tmp_path):
    folder = tmp_path / "emb"
    _store(folder)
    # What a full disk left during an append (the line): a fragment, no newline.
    with open(folder / "shards.jsonl", "ab") as log:
        log.write(b'{"name": "shard-00006.h5", "tracks":')
    (folder / "shard-00006.h5").write_bytes(b"written before the log line was")
    assert len(VectorStore(folder)) == 30  # readers: the fragment is not a shard
    writer = _resume(folder, n=35)
    assert any("torn last line" in message for message in writer.repairs)
    assert all(line.endswith(b"\n") for line in _shard_lines(folder)) and len(_shard_lines(folder)) == 7
    _assert_whole(folder, n=35)


def test_a_fragment_followed_by_lines_is_damage_readers_refuse_and_a_resume_redoes(tmp_path):
    folder = tmp_path / "emb"
    _store(folder)
    lines = _shard_lines(folder)
    # What the old writer made of a fragment: the next run's line appended right after it.
    torn = lines[:3] + [b'{"name": "shard-00003.h5", "tracks":' + lines[3]] + lines[4:]
    (folder / "shards.jsonl").write_bytes(b"".join(torn))
    with pytest.raises(StoreError, match=r"damaged at line 4.*run `mgc embed` again with the same --out") as caught:
        VectorStore(folder)
    assert "\n" not in str(caught.value)
    writer = _resume(folder)
    assert writer.repairs and "line 4" in writer.repairs[0]
    assert len(writer.shards) == 6 and not any(b'tracks":{' in line for line in _shard_lines(folder))
    _assert_whole(folder)


@pytest.mark.parametrize("edit", ["cut", "truncated", "swapped"])
def test_a_log_edited_in_the_middle_never_loses_vectors_silently(tmp_path, edit):
    folder = tmp_path / "emb"
    _store(folder)
    lines = _shard_lines(folder)
    if edit == "cut":  # line 3 removed by hand
        lines = lines[:2] + lines[3:]
    elif edit == "truncated":  # line 3 cut short, its newline kept
        lines[2] = lines[2][:20] + b"\n"
    else:
        lines[2], lines[3] = lines[3], lines[2]
    (folder / "shards.jsonl").write_bytes(b"".join(lines))
    with pytest.raises(StoreError, match="damaged at line 3"):
        VectorStore(folder)
    writer = _resume(folder)
    assert len(writer.repairs) == 1 and len(VectorStore(folder).shards) == 6
    assert sorted(p.name for p in folder.glob("shard-*")) == [f"shard-{i:05d}.h5" for i in range(6)]
    _assert_whole(folder)


_FULL_DISK = r"""
import resource, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.engine.test_faults_vectors import _meta, _vectors, _write
from mgc.engine import StoreError
from mgc.engine.vectors import VectorWriter

folder = Path(sys.argv[1])
writer = VectorWriter(folder, _meta(), overwrite=False)
vectors = _vectors(200)
_write(writer, ["t0"], vectors[:1])
number = 1
# Shards of one vector until the log is larger than a shard, so the limit can fall inside a log line.
while (folder / "shards.jsonl").stat().st_size <= (folder / "shard-00000.h5").stat().st_size + 200:
    _write(writer, [f"t{number}"], vectors[number : number + 1])
    number += 1
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
limit = (folder / "shards.jsonl").stat().st_size + 40
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    _write(writer, [f"t{number}"], vectors[number : number + 1])
except StoreError as error:
    print(number)
    print(error)
    sys.exit(2)
"""


def test_a_full_disk_during_the_log_append_leaves_the_store_whole_and_resumable(tmp_path):
    folder = tmp_path / "emb"
    run = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(folder), str(ROOT)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 2, run.stderr[-2000:]
    written, message = run.stdout.splitlines()
    assert "File too large" in message and "run the same command again" in message and not run.stderr
    # The append that crossed the limit was undone: whole lines only, and no unlisted shard left behind.
    lines = _shard_lines(folder)
    assert len(lines) == int(written) and all(line.endswith(b"\n") for line in lines)
    assert sorted(p.name for p in folder.glob("shard-*")) == [f"shard-{i:05d}.h5" for i in range(int(written))]
    writer = _resume(folder, n=int(written) + 10)
    assert not writer.repairs
    _assert_whole(folder, n=int(written) + 10)


# --- identity ------------------------------------------------------------------------------------------------


def test_a_plain_file_is_its_resolved_path_and_a_manifest_track_its_id_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "music").mkdir()
    (tmp_path / "music" / "a.wav").write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "music")
    resolved = os.path.realpath("music/a.wav")
    spellings = ["music/a.wav", str(tmp_path / "music" / "a.wav"), "link/a.wav", resolved]
    # As given, made absolute, or resolved: the track id of a plain file is one of its spellings.
    keys = {source_key(s, s, resolved) for s in spellings} | {source_key(resolved, s, resolved) for s in spellings}
    assert keys == {resolved}
    assert source_key("blues.00042", "music/a.wav", resolved) == f"blues.00042\t{resolved}"
    assert source_key("blues.00042", "music/a.wav", resolved) != source_key("blues.00043", "music/a.wav", resolved)
    assert source_key("t1", "/old/path.wav", "") == "t1"  # a row of a store made before sources were recorded


def test_a_writer_refuses_vectors_of_another_source(tmp_path):
    folder = tmp_path / "emb"
    store_a = {"kind": "feature-store", "path": "/data/a", "spec_hash": "h"}
    writer = VectorWriter(folder, {**_meta(), "source": store_a}, overwrite=False)
    _write(writer, ["t0"], _vectors(1))
    for other in ({"kind": "feature-store", "path": "/data/copy-of-a", "spec_hash": "h"}, {"kind": "audio"}):
        with pytest.raises(StoreError, match="holds embeddings of the feature store /data/a, not of") as caught:
            VectorWriter(folder, {**_meta(), "source": other}, overwrite=False)
        assert "--overwrite" in str(caught.value)
    audio = tmp_path / "audio-emb"
    _write(VectorWriter(audio, _meta(), overwrite=False), ["t0"], _vectors(1))
    with pytest.raises(StoreError, match="holds embeddings of audio files, not of the feature store /data/a"):
        VectorWriter(audio, {**_meta(), "source": store_a}, overwrite=False)
    assert VectorWriter(folder, {**_meta(), "source": store_a}, overwrite=False).done == {"t0"}
    assert len(VectorWriter(folder, {**_meta(), "source": {"kind": "audio"}}, overwrite=True).shards) == 0


def test_a_store_written_before_ids_sources_and_checksums_still_reads_and_resumes(tmp_path):
    folder = tmp_path / "emb"
    _store(folder, n=10)
    # Made as the previous format: no id, no source, no source columns, no store_id, no sha256.
    meta = json.loads((folder / "embeddings.json").read_text())
    for key in ("id", "source"):
        meta.pop(key)
    (folder / "embeddings.json").write_text(json.dumps(meta))
    entries = []
    for entry in VectorStore(folder).shards:
        with h5py.File(folder / entry["name"], "r+") as h5:
            del h5.attrs["store_id"]
            for column in ("source_path", "source_bytes", "source_mtime_ns"):
                del h5[column], h5["failures"][column]
        entries.append({k: entry[k] for k in ("name", "tracks", "failures")})
        entries[-1]["bytes"] = (folder / entry["name"]).stat().st_size
    (folder / "shards.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    build_index(VectorStore(folder))
    index_meta = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({k: v for k, v in index_meta.items() if k != "sha256"}))
    store = VectorStore(folder)
    assert store.id is None and index_state(store)[0] == "stale"
    np.testing.assert_allclose(store.vectors(store.rows(["t3"])), _vectors(10)[3:4], atol=1e-6)
    writer = VectorWriter(folder, _meta(), overwrite=False)
    assert not writer.repairs and writer.done == {f"t{i}" for i in range(10)}
    assert list(writer.rows["source_path"]) == [os.path.realpath(f"/music/t{i}.wav") for i in range(10)]
    _resume(folder, n=15)
    _assert_whole(folder, n=15)


# --- integrity: shards ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [40.0, np.nan])
def test_a_shard_damaged_in_place_is_caught_by_its_checksum_and_redone(tmp_path, value):
    folder = tmp_path / "emb"
    _store(folder)
    with h5py.File(folder / "shard-00002.h5", "r+") as h5:  # same size, other values: only the checksum sees it
        h5["embedding"][0] = np.full(DIM, value, np.float32)
    assert (folder / "shard-00002.h5").stat().st_size == VectorStore(folder).shards[2]["bytes"]
    with pytest.raises(StoreError, match=r"gave the score .*unit vectors cannot"):
        exact_search(VectorStore(folder), _vectors(3), k=2)  # never a score of 14841
    if np.isnan(value):
        with pytest.raises(StoreError, match="shard-00002.h5 holds vectors that are not finite"):
            VectorStore(folder).vectors([10])  # a track query's own vector
    writer = _resume(folder)
    assert "SHA-256" in writer.repairs[0] and "shard-00002.h5" in writer.repairs[0]
    _assert_whole(folder)


def test_a_truncated_or_missing_shard_is_a_one_line_error_for_readers(tmp_path):
    folder = tmp_path / "emb"
    _store(folder)
    shard = folder / "shard-00004.h5"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(StoreError, match=r"shard-00004.h5 has \d+ bytes, shards.jsonl lists \d+; run `mgc embed`"):
        VectorStore(folder)
    shard.unlink()
    with pytest.raises(StoreError, match="shard-00004.h5 is missing"):
        VectorStore(folder)
    _resume(folder)
    _assert_whole(folder)


# --- integrity: the approximate index ------------------------------------------------------------------------


@pytest.fixture
def indexed(tmp_path):
    folder = tmp_path / "emb"
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((10, DIM)) * 2
    vectors = normalize((centres[rng.integers(0, 10, 2000)] + rng.standard_normal((2000, DIM))).astype(np.float32))
    writer = VectorWriter(folder, _meta(), overwrite=False)
    for start in range(0, 2000, 500):
        ids = [f"t{i}" for i in range(start, start + 500)]
        writer.write(ids, ids, ["a"] * 500, vectors[start : start + 500], [])
    build_index(VectorStore(folder))
    return folder, vectors


def _damage_index(folder: Path, how: str) -> None:
    path = folder / "index-usearch.bin"
    info = path.stat()
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # 2 KB overwritten in place; the modification time put back, as bit rot leaves it
        middle = len(data) // 2
        data[middle : middle + 2048] = np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))
        os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


@pytest.mark.parametrize("how", ["truncated", "overwritten"])
def test_a_damaged_index_is_detected_refused_and_rebuilt(indexed, how):
    folder, vectors = indexed
    _damage_index(folder, how)
    store = VectorStore(folder)
    assert not index_is_current(store) and index_state(store)[0] == "damaged"
    with pytest.raises(StoreError, match="approximate index is damaged.*run `mgc embed` again") as caught:
        search(store, vectors[:3], k=5)
    assert "\n" not in str(caught.value)
    rows, scores = search(store, vectors[:3], k=5, exact=True)  # the exact answer needs no index
    assert list(rows[:, 0]) == [0, 1, 2] and np.all(np.abs(scores) <= 1)
    build_index(store)
    fresh = VectorStore(folder)
    assert index_is_current(fresh)
    rows, scores = search(fresh, vectors[:50], k=5)
    assert (rows[:, 0] == np.arange(50)).mean() >= 0.9 and np.all(np.abs(scores) <= 1)


def test_an_index_damaged_before_its_checksum_gives_an_error_never_a_wild_score(indexed):
    """Damage the checksum cannot see (recorded after it): the result checks still refuse wild scores."""
    folder, vectors = indexed
    path = folder / "index-usearch.bin"
    data = bytearray(path.read_bytes())
    # A usearch file starts with its vectors (after an 8-byte header): 2 KB of them set to float16 1000.0.
    data[8 + 1600 : 8 + 1600 + 2048] = b"\xd0\x63" * 1024
    path.write_bytes(bytes(data))
    meta = json.loads((folder / "index.json").read_text())
    import hashlib

    meta["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (folder / "index.json").write_text(json.dumps(meta))
    store = VectorStore(folder)
    assert index_is_current(store)
    with pytest.raises(StoreError, match="gave the score"):
        search(store, vectors, k=10)


def test_an_index_of_an_earlier_generation_is_not_current(indexed):
    folder, _vectors_ = indexed
    meta = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({**meta, "store_id": "0" * 32}))
    assert index_state(VectorStore(folder))[0] == "stale"


# --- ownership ----------------------------------------------------------------------------------------------


USER_FILES = ("notes.tmp", "shard-foo.txt", "index.html", "shard-00001.h5.bak", "embeddings.json.orig")


@pytest.mark.parametrize("overwrite", [False, True])
def test_only_files_mgc_wrote_are_ever_deleted(tmp_path, overwrite):
    folder = tmp_path / "emb"
    _store(folder)
    build_index(VectorStore(folder))
    for name in USER_FILES:
        (folder / name).write_text("mine")
    ours = ("shard-00009.h5", "shard-00003.h5.tmp", "index.json.tmp", "embeddings.json.tmp", "shards.jsonl.tmp")
    for name in ours:  # what killed runs leave: an unlisted shard, temporaries
        (folder / name).write_bytes(b"left by a killed run")
    VectorWriter(folder, _meta(), overwrite=overwrite)
    for name in USER_FILES:
        assert (folder / name).read_text() == "mine"
    assert not any((folder / name).exists() for name in ours)
    left = {p.name for p in folder.iterdir()} - set(USER_FILES)
    if overwrite:
        assert left == {"embeddings.json"}
    else:
        assert left == {"embeddings.json", "shards.jsonl", "index.json", "index-usearch.bin"} | {
            f"shard-{i:05d}.h5" for i in range(6)
        }
    assert [owned(n) for n in USER_FILES] == [False] * len(USER_FILES)
    assert all(owned(n) for n in ours + ("index-usearch.bin.tmp", "shard-123456.h5"))


# --- concurrency: a reader while --overwrite replaces the store ----------------------------------------------


def test_a_reader_of_a_replaced_store_gets_a_one_line_error_not_a_mix(tmp_path):
    folder = tmp_path / "emb"
    _store(folder)
    reader = VectorStore(folder)
    reader.vectors([0])
    writer = VectorWriter(folder, _meta(), overwrite=True)  # a new generation: same names, same sizes
    _write(writer, [f"t{i}" for i in range(5)], _vectors(5, seed=9))
    assert (folder / "shard-00000.h5").stat().st_size == reader.shards[0]["bytes"]
    for read in (lambda: reader.vectors([1]), lambda: exact_search(reader, _vectors(1), k=3)):
        with pytest.raises(StoreError, match="was replaced while it was being read") as caught:
            read()
        assert "\n" not in str(caught.value)
    assert len(VectorStore(folder)) == 5


_OVERWRITER = r"""
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[2])
from tests.engine.test_faults_vectors import _meta, _vectors
from mgc.engine.vectors import VectorWriter

folder = Path(sys.argv[1])
for generation in range(1, 10_000):
    writer = VectorWriter(folder, _meta(), overwrite=True)
    vectors = _vectors(60, seed=generation)
    for start in range(0, 60, 5):
        ids = [f"g{generation}-t{i}" for i in range(start, start + 5)]
        writer.write(ids, ids, ["a"] * 5, vectors[start : start + 5], [])
"""


def test_readers_while_overwrites_run_get_a_whole_generation_or_a_one_line_error(tmp_path):
    folder = tmp_path / "emb"
    writer = VectorWriter(folder, _meta(), overwrite=False)
    writer.write([f"g0-t{i}" for i in range(60)], ["x"] * 60, ["a"] * 60, _vectors(60, seed=0), [])
    overwriter = subprocess.Popen([sys.executable, "-c", _OVERWRITER, str(folder), str(ROOT)], stderr=subprocess.PIPE)
    answers = errors = 0
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            try:
                store = VectorStore(folder)
                rows, scores = exact_search(store, _vectors(2, seed=5), k=4)
                info = store.info(rows[rows >= 0])
            except StoreError as error:
                assert "\n" not in str(error)
                errors += 1
                continue
            generations = {i.split("-")[0] for i in info["track_id"]}
            assert len(generations) <= 1 and np.all(np.abs(scores[rows >= 0]) <= 1)  # never a mix
            answers += 1
    finally:
        overwriter.send_signal(signal.SIGKILL)
        overwriter.wait(timeout=30)
    assert answers > 0, "the reader never got an answer"
    # Killed mid-overwrite, the store resumes to one whole generation.
    resumed = VectorWriter(folder, _meta(), overwrite=False)
    ids = list(VectorStore(folder).track_ids())
    assert len({i.split("-")[0] for i in ids}) <= 1 and len(ids) == len(set(ids)) and resumed.done >= set(ids)
