from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from mgc.engine import CorpusError, MgcWarning, load_corpus
from mgc.engine.corpus import (
    AUDIO_EXTENSIONS,
    FFMPEG_EXTENSIONS,
    SPLIT_NAMES,
    UNSUPPORTED_EXTENSIONS,
    find_audio_files,
    folder_tracks,
    is_audio_name,
)

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
    with pytest.warns(
        MgcWarning, match=r"read as a plain, unlabelled folder: 1 of its 2 audio files sits at the top.*\(a\.wav\)"
    ):
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
    with pytest.warns(MgcWarning, match=r"1 row has an empty label \(line 4\)"):
        corpus = load_corpus(tmp_path, manifest)
    assert corpus.kind == "manifest" and corpus.label_names == ("jazz", "rock")
    t1, t2, t3 = corpus.tracks
    assert (t1.track_id, t1.label, t1.split, t1.artist) == ("t1", "rock", "train", "Ann")
    assert t1.path == str(tmp_path / "a b" / "é.wav") and t2.path == str(absolute)
    assert t3.label is None and t3.split is None
    with pytest.warns(MgcWarning):
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
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "nope")
    with pytest.raises(CorpusError, match="no audio files"):
        load_corpus(tmp_path)
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path, tmp_path / "nope.csv")


# --- issue 23: folders labelled the same everywhere, stray files named -----------------------------------------


def _no_warning(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", MgcWarning)
        return call(*args, **kwargs)


def test_a_stray_top_level_file_stays_unlabelled_and_is_named(genre_folder: Path):
    write_audio(genre_folder / "notes.wav", 0.5)
    write_audio(genre_folder / "blues" / "live" / "x.wav", 0.5)  # a nested label tree keeps its top folder
    message = (
        r"corpus .*corpus: 1 audio file sits at the top, outside the label folders, and is unlabelled: notes\.wav$"
    )
    with pytest.warns(MgcWarning, match=message):
        corpus = load_corpus(genre_folder)
    assert corpus.kind == "folders" and corpus.label_names == ("blues", "rock")
    labels = {t.track_id: t.label for t in corpus}
    assert labels["notes.wav"] is None and labels["blues/live/x.wav"] == "blues"
    assert sum(label is not None for label in labels.values()) == 7


def test_many_strays_are_named_five_at_most(genre_folder: Path):
    for i in range(7):
        (genre_folder / f"s{i}.mp3").write_bytes(b"")
    for label in ("blues", "rock"):
        for i in range(5):
            (genre_folder / label / f"more{i}.wav").write_bytes(b"")
    message = r"7 audio files sit at the top, outside the label folders, and are unlabelled: s0\.mp3, s1\.mp3, "
    with pytest.warns(MgcWarning, match=message + r"s2\.mp3, s3\.mp3, s4\.mp3 and 2 more$"):
        load_corpus(genre_folder)
    with pytest.warns(MgcWarning, match="7 audio files sit at the top"):
        assert load_corpus(genre_folder, labels="folders").label_names == ("blues", "rock")
    assert _no_warning(load_corpus, genre_folder, labels="none").label_names == ()


def test_a_plain_folder_of_top_level_files_is_plain_without_a_word(tmp_path: Path):
    write_audio(tmp_path / "a.wav", 0.5)
    write_audio(tmp_path / "b.wav", 0.5, seed=1)
    corpus = _no_warning(load_corpus, tmp_path)
    assert corpus.kind == "plain" and [t.label for t in corpus] == [None, None]
    assert _no_warning(folder_tracks, tmp_path) == [("a.wav", None), ("b.wav", None)]


def test_folder_tracks_lists_what_load_corpus_lists_failures_included(genre_folder: Path):
    (genre_folder / "rock" / "dir.wav").mkdir()
    os.symlink("nowhere.wav", genre_folder / "rock" / "dead.wav")
    corpus = load_corpus(genre_folder)
    listed = folder_tracks(genre_folder)
    assert listed == [(t.track_id, t.label) for t in corpus]
    assert ("rock/dir.wav", "rock") in listed and ("rock/dead.wav", "rock") in listed
    with pytest.raises(CorpusError, match="labels must be"):
        folder_tracks(genre_folder, "genre")


def test_webm_mp2_and_other_containers_are_listed(tmp_path: Path):
    for ext in ("webm", "mp2", "mkv", "mov", "m4b", "3gp", "amr", "opus"):
        (tmp_path / "x" / f"a.{ext}").parent.mkdir(exist_ok=True)
        (tmp_path / "x" / f"a.{ext}").write_bytes(b"")
    assert [t.track_id for t in load_corpus(tmp_path)] == sorted(
        f"x/a.{e}" for e in ("webm", "mp2", "mkv", "mov", "m4b", "3gp", "amr", "opus")
    )
    assert {"webm", "mkv", "mov", "m4b", "3gp", "amr"} <= FFMPEG_EXTENSIONS
    assert {"mp2", "opus"} <= AUDIO_EXTENSIONS and not AUDIO_EXTENSIONS & (UNSUPPORTED_EXTENSIONS | FFMPEG_EXTENSIONS)
    assert is_audio_name("Clip.WEBM") and not is_audio_name("notes.txt")


def test_other_files_are_listed_only_with_all_files(tmp_path: Path):
    write_audio(tmp_path / "a.wav", 0.5)
    (tmp_path / "noext").write_bytes((tmp_path / "a.wav").read_bytes())
    (tmp_path / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(20))
    (tmp_path / ".hidden.wav").write_bytes((tmp_path / "a.wav").read_bytes())
    (tmp_path / "sub").mkdir()  # a folder not named like audio is searched, never listed
    assert [t.track_id for t in load_corpus(tmp_path)] == ["a.wav"]
    assert folder_tracks(tmp_path) == [("a.wav", None)]
    assert [t.track_id for t in load_corpus(tmp_path, all_files=True)] == ["a.wav", "cover.jpg", "noext"]
    assert [rel for rel, _ in folder_tracks(tmp_path, all_files=True)] == ["a.wav", "cover.jpg", "noext"]
    assert find_audio_files([tmp_path]) == [tmp_path / "a.wav"]


def test_an_mp2_file_decodes_and_a_webm_is_unsupported(tmp_path: Path):
    from mgc.engine import AudioError
    from mgc.engine.audio import AudioStream

    # 40 silent MPEG-1 layer II frames (44.1 kHz mono, 128 kbit/s): a header, then all-zero allocations.
    (tmp_path / "a.mp2").write_bytes((bytes([0xFF, 0xFD, 0x80, 0xC0]) + bytes(413)) * 40)
    stream = AudioStream(tmp_path / "a.mp2", 22050)
    assert stream.source_sr == 44100 and stream.source_frames > 0
    stream.close()
    (tmp_path / "a.webm").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(100))  # an EBML (Matroska/WebM) header
    with pytest.raises(AudioError) as caught:
        AudioStream(tmp_path / "a.webm", 22050)
    assert caught.value.kind == "unsupported"


# --- issue 23: manifests parsed strictly ------------------------------------------------------------------------


def _manifest(tmp_path: Path, text: str) -> Path:
    manifest = tmp_path / "m.csv"
    manifest.write_text(text, encoding="utf-8")
    return manifest


@pytest.mark.parametrize(
    "text, message",
    [
        ("path,label\na.wav,folk\nb.wav,folk,extra\n", r"m\.csv, line 3 has 3 fields, the header names 2; quote"),
        ('path,label\na.wav,"folk\nb.wav,rock\nc.wav,pop\n', r"line 2: a quote \(\"\) opened on this line is never"),
        (
            'path,label\n"a.wav,folk\nb.wav",rock\n',
            r"line 2: a quoted value runs on to line 3; check for an unbalanced",
        ),
        ('path,label\n"a"b.wav,folk\n', r"line 2 is not valid CSV"),
        (
            "path,label,split\na.wav,folk,training\n",
            r"line 2: unknown split 'training' \(did you mean 'train'\?\); the split column takes train, valid, test",
        ),
        ("path,label,split\na.wav,folk,train\nb.wav,folk,dev\n", r"line 3: unknown split 'dev'; the split"),
        ("label,path\npop\n", r"line 2: empty 'path'"),
        ("path,label,label\na.wav,x,y\n", "names the column.s. label more than once"),
        ("path,label\na.wav,fo\x00lk\n", "line 2 holds a NUL character"),
        ("", "is empty; its first line must be a header"),
        ("\n\n", "is empty"),
    ],
)
def test_malformed_manifests_are_refused_with_the_line(tmp_path: Path, text: str, message: str):
    with pytest.raises(CorpusError, match=message):
        load_corpus(_manifest(tmp_path, text))


def test_manifests_in_other_encodings_name_the_line(tmp_path: Path):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("path,label\na.wav,folk\nb.wav,café\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"line 3: byte 0xe9 is not UTF-8; save the manifest as UTF-8 CSV"):
        load_corpus(manifest)
    manifest.write_bytes("path,label\na.wav,folk\n".encode("utf-16"))
    with pytest.raises(CorpusError, match="is UTF-16 text"):
        load_corpus(manifest)
    manifest.write_bytes("path,label\r\na.wav,folk\r\n".encode("utf-8-sig"))
    assert [(t.track_id, t.label) for t in load_corpus(manifest)] == [("a.wav", "folk")]


def test_short_rows_blank_rows_and_the_split_names(tmp_path: Path):
    text = "path,label,split,artist\na.wav,folk,train\n\n,,,\nb.wav,rock,valid,Bo\nc.wav,rock,test,\nd.wav,rock\n"
    corpus = _no_warning(load_corpus, _manifest(tmp_path, text))
    assert [(t.track_id, t.split, t.artist) for t in corpus] == [
        ("a.wav", "train", None),
        ("b.wav", "valid", "Bo"),
        ("c.wav", "test", None),
        ("d.wav", None, None),
    ]
    assert SPLIT_NAMES == ("train", "valid", "test")


def test_empty_labels_warn_once_naming_the_lines(tmp_path: Path):
    rows = ["a.wav,folk", "b.wav,", "c.wav,rock", "d.wav, ", *(f"x{i}.wav," for i in range(5))]
    manifest = _manifest(tmp_path, "path,label\n" + "\n".join(rows) + "\n")
    message = r"m\.csv: 7 rows have an empty label \(lines 3, 5, 6, 7, 8, \.\.\.\); they are unlabelled: extracted"
    with pytest.warns(MgcWarning, match=message) as caught:
        corpus = load_corpus(manifest)
    assert len([w for w in caught if issubclass(w.category, MgcWarning)]) == 1
    assert corpus.label_names == ("folk", "rock") and corpus.tracks[1].label is None
    manifest.write_text("path,label\na.wav,folk\nb.wav,\n")
    with pytest.warns(MgcWarning, match=r"1 row has an empty label \(line 3\); it is unlabelled"):
        load_corpus(manifest)


def test_a_path_only_manifest_needs_labels_required_false(tmp_path: Path):
    manifest = _manifest(tmp_path, "path\na.wav\nb.wav\n")
    with pytest.raises(CorpusError, match=r"lacks the column\(s\) label; its header must name at least 'path,label'"):
        load_corpus(manifest)
    corpus = _no_warning(load_corpus, manifest, labels_required=False)
    assert [(t.track_id, t.label) for t in corpus] == [("a.wav", None), ("b.wav", None)]
    manifest.write_text("file,genre\na.wav,rock\n")
    with pytest.raises(CorpusError, match=r"lacks the column\(s\) path; its header must name at least 'path'"):
        load_corpus(manifest, labels_required=False)


def test_corpus_and_manifest_must_agree(tmp_path: Path, monkeypatch):
    (tmp_path / "music").mkdir()
    manifest = _manifest(tmp_path / "music", "path,label\na.wav,folk\n")
    ids = ["a.wav"]
    assert [t.track_id for t in load_corpus(manifest, manifest)] == ids
    assert [t.track_id for t in load_corpus(tmp_path / "music", manifest)] == ids
    assert [t.track_id for t in load_corpus(None, manifest)] == ids
    monkeypatch.chdir(tmp_path / "music")
    assert [t.track_id for t in load_corpus(".", "m.csv")] == ids
    with pytest.raises(CorpusError, match=r"CORPUS \.\. and --manifest m\.csv disagree: give the manifest as CORPUS "):
        load_corpus("..", "m.csv")
    with pytest.raises(CorpusError, match=r"\(mgc extract m\.csv STORE\) or CORPUS as the manifest's folder"):
        load_corpus("other.csv", "m.csv")
