"""A user's mistake about a model folder, a store path or a split file is one clear line that says what to run.

Each case runs the CLI in process (typer's CliRunner) and asserts exit 2, one ``error:`` line holding the
expected words, and no traceback; a few check the library's :class:`MgcError` directly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mgc.cli import app
from mgc.engine import MgcError
from mgc.models import ModelError, load_model
from mgc.models.data.splits import make_splits
from mgc.models.folder import ModelFolder
from tests.models.conftest import write_tone_corpus

runner = CliRunner()


def one_line(args: list, *phrases: str) -> str:
    """Run ``mgc ARGS``: exit 2, one ``error:`` line holding every phrase, no traceback; that line."""
    result = runner.invoke(app, [str(a) for a in args])
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output and (result.exception is None or isinstance(result.exception, SystemExit)), output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output  # a progress bar started before the refusal may show too
    for phrase in phrases:
        assert phrase in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A scratch folder as the working directory, with ``afile.txt`` (a plain file) in it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile.txt").write_text("hi\n")
    return tmp_path


@pytest.fixture(scope="module")
def stats_store(tmp_path_factory):
    """3 tones x 3 tracks with log-mel and MFCC, as a head needs (extracted in about a second)."""
    from mgc.engine import FeatureSpec, extract

    root = tmp_path_factory.mktemp("mistakes")
    corpus = write_tone_corpus(root / "corpus", n_per_class=3, seconds=1.0)
    extract(corpus, root / "store", FeatureSpec(sr=8000, n_fft=256, hop_length=128, n_mels=16, n_mfcc=8), workers=1)
    return root / "store"


def head_folder(root: Path, store: Path) -> Path:
    """A head model folder written through the schema (no training): generation 1 of a stats head."""
    from mgc.engine import FeatureStore

    store = FeatureStore(store)
    dim, classes = 4, len(store.label_names)
    arrays = {
        "mean": np.zeros(dim),
        "std": np.ones(dim),
        "weights": np.zeros((dim, classes)),
        "bias": np.zeros(classes),
    }
    meta = {"kind": "head", "featurizer": "stats", "head": "linear", "fine_tuned": False, "vectors": None,
            "label_names": list(store.label_names), "spec": store.spec.to_dict()}  # fmt: skip
    splits = {"method": "split files", "train": [], "valid": [], "test": []}
    folder = ModelFolder(root)
    folder.write_head({k: v.astype(np.float32) for k, v in arrays.items()}, meta, splits=splits, backbone=None)
    return root


# 1. --out a file -------------------------------------------------------------------------------------------


def test_train_into_a_file_is_refused_for_the_cnn_and_the_head(place, tone_store, stats_store):
    one_line(
        ["train", tone_store, "--out", "afile.txt"], "afile.txt is a file, not a model folder; choose another --out"
    )
    one_line(
        ["train", stats_store, "--out", "afile.txt", "--model", "stats"], "afile.txt is a file, not a model folder"
    )
    one_line(["train", tone_store, "--out", "afile.txt/sub"], "afile.txt is a file", "choose another --out")
    assert (place / "afile.txt").read_text() == "hi\n"


# 2. split files ---------------------------------------------------------------------------------------------


def test_every_split_file_mistake_is_one_line(place, tone_store):
    from mgc.engine import FeatureStore

    tracks = FeatureStore(tone_store).tracks
    (place / "somedir").mkdir()
    (place / "empty.txt").write_text("# only a comment\n\n")
    (place / "latin.txt").write_bytes("tone0/caf\xe9.wav\n".encode("latin-1"))
    cases = {
        "train=nosuch.txt": "split file nosuch.txt (--split-file train=nosuch.txt) does not exist",
        "train=somedir": "split file somedir (--split-file train=somedir) is a folder, not a file of track ids",
        "training=afile.txt": (
            "--split-file training=afile.txt: unknown split 'training'; the splits are train, valid, test"
        ),
        "train=empty.txt": "split file empty.txt (--split-file train=empty.txt) is empty",
        "train=latin.txt": "is not UTF-8 text (byte 0xe9 at offset 9)",
    }
    for item, message in cases.items():
        with pytest.raises(ModelError) as caught:
            make_splits(tracks, split_files=[item])
        assert message in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ModelError, match="the train split is given twice"):
        make_splits(tracks, split_files=["train=afile.txt", "train=empty.txt"])
    with pytest.raises(ModelError, match="unknown split 'Train'"):
        make_splits(tracks, split_files={"Train": "afile.txt"})
    # The CLI says the same, before any training starts.
    one_line(["train", tone_store, "--out", "m", "--split-file", "train=nosuch.txt"], cases["train=nosuch.txt"])
    one_line(["train", tone_store, "--out", "m", "--split-file", "training=afile.txt"], "unknown split 'training'")


# 3. damaged model folders -----------------------------------------------------------------------------------


def test_a_damaged_head_folder_is_one_line_that_says_how_to_train_it_again(place, stats_store):
    corpus = stats_store.parent / "corpus"
    folder = head_folder(place / "head", stats_store)
    head = folder / "head-1.npz"
    data = head.read_bytes()
    head.write_bytes(data[: len(data) // 2])
    retrain = f"train it again with `mgc train STORE --out {folder} --model stats ...`"
    one_line(["predict", folder, corpus], f"{head} is damaged (not a valid .npz", retrain)
    head.unlink()
    one_line(["predict", folder, corpus], f"{head} is missing; the model folder is incomplete", retrain)
    one_line(["evaluate", folder, stats_store], f"{head} is missing")
    model_json = folder / "model.json"
    model_json.write_text("{not json")
    one_line(["predict", folder, corpus], "model.json is damaged (not valid JSON", "train it again")
    model_json.write_text('{"kind": "head"}')
    one_line(["predict", folder, corpus], "lacks featurizer, label_names, spec", "train it again")
    model_json.write_text("[1, 2]")
    one_line(["predict", folder, corpus], "is not a model description (a JSON object)", "train it again")


def test_a_damaged_cnn_checkpoint_is_one_line(place, tone_model, tone_store):
    folder = place / "cnn"
    shutil.copytree(tone_model.folder, folder)
    corpus = tone_store.parent / "corpus"
    for path in folder.glob("checkpoints/*/*/state/**/d/*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(ModelError, match=r"checkpoint .*checkpoints/(best|latest)/\d+ is damaged") as caught:
        load_model(folder)
    assert "\n" not in str(caught.value) and f"`mgc train STORE --out {folder} ...`" in str(caught.value)
    for meta in folder.glob("checkpoints/*/*/meta/metadata"):
        meta.write_text("garbage")
    one_line(["predict", folder, corpus], "checkpoint", "is damaged", "train it again")


# 4. store paths ---------------------------------------------------------------------------------------------


def test_a_missing_store_or_a_file_says_so_in_every_command(place, tone_model, tone_store):
    one_line(["inspect", "nosuch"], "nosuch does not exist; create a store with `mgc extract CORPUS nosuch`")
    one_line(["inspect", "afile.txt"], "afile.txt is a file, not a feature store (a folder made by `mgc extract`)")
    (place / "folder").mkdir()
    one_line(["inspect", "folder"], "folder is not a feature store (no index.json)")
    one_line(["train", "nosuch", "--out", "m"], "nosuch does not exist; create a store")
    one_line(["evaluate", tone_model.folder, "afile.txt"], "afile.txt is a file, not a feature store")
    one_line(["report", "nosuch"], "nosuch does not exist")
    one_line(["predict", tone_model.folder, "--store", "nosuch"], "nosuch does not exist")
    from mgc.engine import FeatureStore, StoreError

    with pytest.raises(StoreError, match="does not exist"):
        FeatureStore(place / "nosuch")


# 5. and 6. model paths and built-in models ------------------------------------------------------------------


def test_a_model_path_that_is_missing_a_file_or_not_a_built_in_says_what_to_use(place, tone_store):
    corpus = tone_store.parent / "corpus"
    one_line(
        ["predict", "nosuch", corpus],
        "model nosuch does not exist; train one with `mgc train STORE --out nosuch`, "
        "or use a built-in model: musicnn-msd, musicnn-mtt",
    )
    one_line(
        ["predict", "musicnn-xyz", corpus], "unknown built-in model musicnn-xyz; the built-in models are musicnn-msd"
    )
    one_line(["predict", "afile.txt", corpus], "afile.txt is a file, not a model folder")
    assert not (place / "nosuch").exists() and not (place / "musicnn-xyz").exists()
    with pytest.raises(MgcError, match="does not exist"):
        load_model(place / "gone")


def test_a_built_in_model_on_a_store_of_another_spec_points_at_the_musicnn_preset(tone_store):
    one_line(
        ["predict", "musicnn-msd", "--store", tone_store],
        "musicnn-msd needs a store with the musicnn spec",
        "`mgc extract CORPUS STORE2 --preset musicnn`",
        "audio files instead of --store",
    )


def test_the_retrain_command_names_the_heads_featurizer(tmp_path):
    from mgc.models.folder import retrain_command

    assert retrain_command("m", {"kind": "head", "featurizer": "musicnn-mtt"}) == (
        "`mgc train STORE --out m --backbone musicnn-mtt ...`"
    )
    assert retrain_command("m", json.loads('{"kind": "cnn"}')) == "`mgc train STORE --out m ...`"
