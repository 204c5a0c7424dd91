"""Faults of model folders and head caches (issue 22, cases 1, 3, 6 and 7), through the real CLI and real processes.

Each test asserts the right answer or a one-line refusal (exit 2, no traceback) and that nothing was lost.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models.conftest import write_tone_corpus

SPEC = ["--sr", "8000", "--n-fft", "256", "--hop-length", "128", "--n-mels", "16", "--n-mfcc", "8", "--workers", "1"]
REPO = Path(__file__).resolve().parents[2]


def mgc(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mgc.cli", *map(str, args)], capture_output=True, text=True)


def refused(result, match: str) -> None:
    """Exit 2, one line starting with error:, no traceback."""
    output = result.stderr if hasattr(result, "stderr") and result.stderr is not None else result.output
    assert result.returncode == 2 if hasattr(result, "returncode") else result.exit_code == 2, output
    assert "Traceback" not in output and output.strip().startswith("error:") and match in output, output


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """``s1`` (3 tones x 8) and ``s1b``: the same track ids, each holding another class's audio."""
    root = tmp_path_factory.mktemp("faults-models")
    a = write_tone_corpus(root / "a")
    b = root / "b"
    for c in range(3):
        (b / f"tone{c}").mkdir(parents=True)
        for source in sorted((a / f"tone{(c + 1) % 3}").glob("*.wav")):
            i = source.name.split(".")[1]
            shutil.copy(source, b / f"tone{c}" / f"tone{c}.{i}.wav")
    for name, corpus in (("s1", a), ("s1b", b)):
        done = mgc("extract", corpus, root / name, *SPEC)
        assert done.returncode == 0, done.stderr
    return root


def test_1_a_heads_cache_never_answers_for_another_stores_audio(stores, tmp_path):
    s1, s1b = stores / "s1", stores / "s1b"
    assert mgc("train", s1, "--out", tmp_path / "h1", "--model", "stats").returncode == 0
    shutil.copytree(tmp_path / "h1", tmp_path / "h1-no-cache", ignore=shutil.ignore_patterns("vectors"))
    scores = []
    for model in ("h1", "h1-no-cache"):
        done = mgc("evaluate", tmp_path / model, s1b, "--split", "all", "--json", "--out", tmp_path / f"e-{model}")
        assert done.returncode == 0, done.stderr
        scores.append(json.loads(done.stdout)["accuracy"])
    # s1b's tone0 files sound like s1's tone1: from s1b's own audio the model is (nearly) always wrong.
    assert scores[0] == scores[1] and scores[0] < 0.2
    # A shared cache across the two stores keeps both stores' vectors apart.
    shared = tmp_path / "shared"
    for store, out in ((s1, "a"), (s1b, "b")):
        done = mgc("train", store, "--out", tmp_path / out, "--model", "stats", "--vectors", shared, "--json")
        assert done.returncode == 0, done.stderr
    from mgc.engine import VectorStore

    assert len(VectorStore(shared)) == 48  # 24 tracks of each store, none reused across them
    done = mgc("evaluate", tmp_path / "b", s1b, "--split", "all", "--json", "--out", tmp_path / "e-b")
    assert json.loads(done.stdout)["accuracy"] >= 0.9  # trained on s1b's own vectors


def test_3_a_shared_cache_is_filled_by_one_training_at_a_time(stores, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    hold = (
        "import sys, time\nfrom mgc.engine import FolderLock\n"
        "with FolderLock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(shared)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        done = mgc("train", stores / "s1", "--out", tmp_path / "h", "--model", "stats", "--vectors", shared)
        refused(done, "another training filling this vector cache")
        assert sorted(p.name for p in shared.iterdir()) == [".lock"]  # nothing written beside the holder
    finally:
        holder.kill()
        holder.wait()
    done = mgc("train", stores / "s1", "--out", tmp_path / "h", "--model", "stats", "--vectors", shared)
    assert done.returncode == 0, done.stderr


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_7_folders_of_another_kind_or_of_someone_else_are_refused_untouched(stores, tone_model, tmp_path):
    s1 = stores / "s1"
    head, cnn = tmp_path / "head", tone_model.folder  # a CNN trained once for the session
    assert mgc("train", s1, "--out", head, "--model", "stats").returncode == 0
    before = _snapshot(head)
    done = mgc("train", s1, "--out", head, "--epochs", "1", "--batch-size", "4", "--crop-seconds", "0.5")
    refused(done, "holds a head model; train the cnn into another --out")
    assert _snapshot(head) == before
    before = _snapshot(cnn)
    refused(mgc("train", s1, "--out", cnn, "--model", "stats"), "holds a cnn model; train the head into another")
    assert _snapshot(cnn) == before
    # A folder of someone else's: refused before anything is written into it.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.json").write_text('{"name": "my own model"}')
    (mine / "backbone.npz").write_bytes(b"not mgc's")
    before = _snapshot(mine)
    refused(mgc("train", s1, "--out", mine, "--model", "stats"), "holds no mgc model; choose another --out")
    assert _snapshot(mine) == before
    # A report or an evaluation into a user's site: refused untouched; into its own earlier folder: fine.
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>my site</h1>")
    (site / "report.json").write_text('{"visitors": 3}')
    before = _snapshot(site)
    refused(mgc("report", s1, "--out", site, "--sample", "6"), "not an mgc report")
    refused(mgc("evaluate", head, s1, "--out", site), "not an mgc evaluation")
    assert _snapshot(site) == before
    for _ in range(2):
        assert mgc("report", s1, "--out", tmp_path / "report", "--sample", "6").returncode == 0
    assert json.loads((tmp_path / "report" / "report.json").read_text())["format"] == "mgc-report"


def test_6_retraining_a_head_commits_one_generation(stores, tmp_path):
    """A new generation's files, then model.json: a head retrained with other labels never mixes with the old."""
    from mgc.models import load_model
    from mgc.models.folder import ModelFolder

    out = tmp_path / "h"
    assert mgc("train", stores / "s1", "--out", out, "--model", "stats").returncode == 0
    first = json.loads((out / "model.json").read_text())
    assert first["generation"] == 1 and (out / first["files"]["head"]).is_file()
    splits = ModelFolder(out).read_splits()
    # Retrained on two of the classes only (split files): another head, another splits file.
    ids = [t for t in splits["train"] + splits["valid"] + splits["test"] if not t.startswith("tone2/")]
    (tmp_path / "train.txt").write_text("\n".join(ids[:-4]))
    (tmp_path / "test.txt").write_text("\n".join(ids[-4:]))
    split_files = ["--split-file", f"train={tmp_path / 'train.txt'}", "--split-file", f"test={tmp_path / 'test.txt'}"]
    assert mgc("train", stores / "s1", "--out", out, "--model", "stats", *split_files).returncode == 0
    second = json.loads((out / "model.json").read_text())
    assert second["generation"] == 2
    files = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != ".lock")
    assert files == sorted(["model.json", *second["files"].values()])
    assert ModelFolder(out).read_splits()["test"] == sorted(ids[-4:])
    assert load_model(out).label_names == first["label_names"]  # the store's labels; the head saw two of them


def test_11_a_read_only_place_is_one_line(stores):
    """/proc refuses new folders even to root: the OSError is a one-line error, not a traceback."""
    refused(mgc("report", stores / "s1", "--out", "/proc/mgc-report", "--sample", "6"), "/proc/mgc-report")


def test_7_a_demo_into_someone_elses_folder_is_refused_untouched(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    refused(
        mgc("demo", "--out", mine, "--quick"), "holds files that are not an mgc demo (notes.txt); choose another --out"
    )
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"] and (mine / "notes.txt").read_text() == "my notes"
