from __future__ import annotations

from pathlib import Path

import pytest

from mgc.engine import CorpusError, load_corpus

from .conftest import write_audio


def test_label_folders_give_labels_stable_ids_and_sorted_order(genre_folder: Path):
    corpus = load_corpus(genre_folder)
    assert corpus.kind == "folders"
    assert corpus.label_names == ("blues", "rock")
    ids = [t.track_id for t in corpus]
    assert ids == sorted(ids) and ids[0] == "blues/blues.00000.wav"
    assert [t.label for t in corpus] == ["blues"] * 3 + ["rock"] * 3
    assert all(Path(t.path).is_absolute() for t in corpus)
    assert [t.track_id for t in load_corpus(genre_folder)] == ids


def test_plain_folder_is_unlabelled(tmp_path: Path):
    write_audio(tmp_path / "a.wav", 0.5)
    write_audio(tmp_path / "sub" / "b.flac", 0.5)
    corpus = load_corpus(tmp_path)
    assert corpus.kind == "plain" and corpus.label_names == ()
    assert [(t.track_id, t.label) for t in corpus] == [("a.wav", None), ("sub/b.flac", None)]


def test_recursive_search_and_odd_entries_are_listed(tmp_path: Path):
    write_audio(tmp_path / "jazz" / "deep" / "x.wav", 0.5)
    (tmp_path / "jazz" / "notes.txt").write_text("not audio")
    (tmp_path / "jazz" / "dir.ogg").mkdir()
    (tmp_path / "jazz" / "song.m4a").write_bytes(b"x")
    ids = [t.track_id for t in load_corpus(tmp_path)]
    assert ids == ["jazz/deep/x.wav", "jazz/dir.ogg", "jazz/song.m4a"]


def test_manifest_relative_absolute_and_optional_columns(tmp_path: Path):
    write_audio(tmp_path / "a b" / "é.wav", 0.5)
    absolute = write_audio(tmp_path / "elsewhere" / "c.wav", 0.5)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label,track_id,split,artist\n"
        "a b/é.wav,rock,t1,train,Ann\n"
        f"{absolute},jazz,t2,test,Bob\n"
        "missing.wav,,t3,,\n",
        encoding="utf-8",
    )
    corpus = load_corpus(tmp_path / "ignored", manifest)
    assert corpus.kind == "manifest" and corpus.label_names == ("jazz", "rock")
    t1, t2, t3 = corpus.tracks
    assert (t1.track_id, t1.label, t1.split, t1.artist) == ("t1", "rock", "train", "Ann")
    assert t1.path == str(tmp_path / "a b" / "é.wav") and t2.path == str(absolute)
    assert t3.label is None and t3.split is None
    assert [t.track_id for t in load_corpus(manifest)] == ["t1", "t2", "t3"]


def test_manifest_without_track_id_uses_the_path(tmp_path: Path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("label,path\npop,x/y.wav\n")
    assert load_corpus(manifest).tracks[0].track_id == "x/y.wav"


@pytest.mark.parametrize(
    "text, message",
    [
        ("path\nx.wav\n", "lacks the column"),
        ("path,label\nx.wav,a\nx.wav,b\n", "repeats line 2"),
        ("path,label\n", "no rows"),
        ("path,label\n,a\n", "empty 'path'"),
    ],
)
def test_bad_manifests_raise_corpus_error(tmp_path: Path, text: str, message: str):
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(CorpusError, match=message):
        load_corpus(manifest)


def test_missing_or_empty_corpus(tmp_path: Path):
    with pytest.raises(CorpusError, match="not a folder"):
        load_corpus(tmp_path / "nope")
    with pytest.raises(CorpusError, match="no audio files"):
        load_corpus(tmp_path)
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path, tmp_path / "nope.csv")
