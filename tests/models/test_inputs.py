"""``entries``: predict and embed list and label inputs exactly as ``mgc extract`` does (issue 23).

Real files, nothing trained: a folder-per-genre corpus gets the labels and the
paths ``load_corpus`` gives it (a stray file, a directory named like audio and
a dangling symlink included), track ids stay what they were, and a manifest
needs no label column.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from mgc.engine import CorpusError, MgcWarning, load_corpus
from mgc.models.data.inputs import entries
from mgc.models.errors import ModelError
from tests.engine.conftest import write_audio


def _genre_corpus(root: Path) -> Path:
    for label in ("blues", "rock"):
        for i in range(2):
            write_audio(root / label / f"{label}.{i}.wav", 0.3, seed=i)
    write_audio(root / "blues" / "live" / "x.wav", 0.3)
    (root / "rock" / "dir.wav").mkdir()
    os.symlink("nowhere.wav", root / "rock" / "dead.wav")
    (root / "rock" / "notes.txt").write_text("not audio")
    (root / "rock" / "clip.webm").write_bytes(b"")
    return root


def test_a_genre_folder_gets_the_labels_and_paths_load_corpus_gives(tmp_path: Path):
    corpus = _genre_corpus(tmp_path / "corpus")
    listed = entries([corpus])
    tracks = load_corpus(corpus)
    assert {(os.path.realpath(p), label) for _id, p, label in listed} == {
        (os.path.realpath(t.path), t.label) for t in tracks
    }
    assert [label for _id, _p, label in listed] == [t.label for t in tracks]
    assert ("blues/live/x.wav", "blues") in [(t.track_id, t.label) for t in tracks]
    ids = [track_id for track_id, _p, _label in listed]
    assert str(corpus / "rock" / "dir.wav") in ids and str(corpus / "rock" / "dead.wav") in ids  # fail when decoded
    assert str(corpus / "rock" / "clip.webm") in ids and str(corpus / "rock" / "notes.txt") not in ids


def test_track_ids_are_as_before(tmp_path: Path, monkeypatch):
    corpus = _genre_corpus(tmp_path / "corpus")
    os.symlink(corpus, tmp_path / "alias")
    monkeypatch.chdir(tmp_path)
    as_given = entries(["alias", "alias/blues/blues.0.wav"])
    assert as_given[0] == ("alias/blues/blues.0.wav", "alias/blues/blues.0.wav", "blues")
    assert as_given[-1] == ("alias/blues/blues.0.wav", "alias/blues/blues.0.wav", "")  # a plain file: no label
    resolved = entries(["alias", "./alias/blues/blues.0.wav"], resolve=True)
    real = str(corpus / "blues" / "blues.0.wav")
    assert resolved[0] == (real, "alias/blues/blues.0.wav", "blues")
    assert resolved[-1] == (real, "alias/blues/blues.0.wav", "")
    assert [e[0] for e in entries(["alias"], skip={"alias/blues/blues.0.wav"})][0] == "alias/blues/blues.1.wav"
    assert entries(["nosuch.wav"]) == [("nosuch.wav", "nosuch.wav", "")]  # listed: it fails as missing


def test_a_stray_file_is_named_and_left_unlabelled(tmp_path: Path):
    corpus = _genre_corpus(tmp_path / "corpus")
    write_audio(corpus / "notes.wav", 0.3)
    with pytest.warns(MgcWarning, match=r"1 audio file sits at the top, outside the label folders, .*: notes\.wav$"):
        listed = entries([corpus])
    labels = {Path(p).relative_to(corpus).as_posix(): label for _id, p, label in listed}
    assert labels["notes.wav"] == "" and labels["blues/blues.0.wav"] == "blues"


def test_a_plain_folder_stays_unlabelled_without_a_word(tmp_path: Path):
    write_audio(tmp_path / "a.wav", 0.3)
    write_audio(tmp_path / "b.flac", 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MgcWarning)
        assert [e[2] for e in entries([tmp_path])] == ["", ""]


def test_manifests_need_no_label_column_but_are_parsed_strictly(tmp_path: Path):
    write_audio(tmp_path / "a.wav", 0.3)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path\na.wav\nb.wav\n")
    assert entries([manifest]) == [("a.wav", str(tmp_path / "a.wav"), ""), ("b.wav", str(tmp_path / "b.wav"), "")]
    manifest.write_text("path,label\na.wav,folk,extra\n")
    with pytest.raises(CorpusError, match=r"line 2 has 3 fields, the header names 2"):
        entries([manifest])
    manifest.write_text("track,genre\na.wav,folk\n")
    with pytest.raises(CorpusError, match=r"lacks the column\(s\) path"):
        entries([manifest])


def test_no_audio_at_all_is_an_error(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no audio files found"):
        entries([tmp_path / "empty"])


def test_predict_reads_every_ffmpeg_format(tone_model, tmp_path):
    """A folder of M4A (AAC, ALAC), ADTS, WMA, WebM/Opus, MP2 and video files: every track predicted, none failed."""
    from mgc.models import predict
    from tests.engine.test_ffmpeg import FORMATS, encode

    folder = tmp_path / "formats"
    folder.mkdir()
    for name, (codec, fmt, sr, video) in FORMATS.items():
        encode(folder / name, codec, sr, fmt=fmt, video=video, seconds=2.0)
    results = predict(tone_model, [folder], top_k=1)
    assert sorted(Path(r["path"]).name for r in results) == sorted(FORMATS)
    assert [r["error"] for r in results if r["error"]] == [] and all(len(r["top"]) == 1 for r in results)
