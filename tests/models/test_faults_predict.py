"""``mgc predict --out FILE`` never destroys nor mixes files (issue 22, cases 4, 5 and 8).

Through the real CLI (typer's CliRunner, or ``python -m mgc.cli`` processes where
two runs meet), on real files: a file mgc did not make, a link, a folder or a
read-only place is refused before anything is written; two runs into one file
cannot meet; a results file is kept to one model, store and ``--top-k``; and an
input is known by its resolved path, size and mtime, so a changed file (or a
fixed one that had failed) is predicted again and its new line is the one a
reader takes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mgc.cli import app
from tests.models.conftest import linked_corpus, write_tone_corpus

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def refused(result, *words: str) -> str:
    """The one line of a refusal (exit 2, ``error: ...``, no traceback), checked to name ``words``."""
    if isinstance(result, subprocess.CompletedProcess):
        code, output = result.returncode, result.stdout + result.stderr
    else:
        code, output = result.exit_code, result.output
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in output, output
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict:
    """Every entry under ``folder``: a link's target, a file's bytes (what a refusal must leave as it was)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[path] = ("link", os.readlink(path))
        elif path.is_file():
            found[path] = ("file", path.read_bytes())
        else:
            found[path] = ("folder", None)
    return found


def last_lines(path: Path) -> dict:
    """What a reader of the results file takes: the last line of each track (JSON lines or CSV)."""
    text = path.read_text()
    rows = csv.DictReader(io.StringIO(text)) if path.suffix == ".csv" else map(json.loads, text.splitlines())
    return {row["track_id"]: row for row in rows}


def track_ids(path: Path) -> list:
    return [json.loads(line)["track_id"] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def model(tone_model):
    return tone_model


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """Two 2 s tone files per class, never changed: tests copy what they change."""
    root = write_tone_corpus(tmp_path_factory.mktemp("tones") / "tones", n_per_class=2, seconds=2.0)
    return sorted(root.rglob("*.wav"))


@pytest.fixture
def corpus(tones, tmp_path):
    """A fresh copy of ``tones`` in ``tmp_path/corpus`` (a test may change its files)."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for path in tones:
        shutil.copy2(path, folder / path.name)
    return folder


def predict_into(model, out, *inputs, exit_code=0):
    """``mgc predict MODEL INPUTS --out OUT --json`` in this process; the summary."""
    result = invoke("predict", model.folder, *inputs, "--out", out, "--workers", "1", "--json")
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


# --- case 4: files mgc did not make ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", b"first line\nlast line without a newline"),
        ("blob.jsonl", bytes(range(256)) * 8),
        ("table.csv", b"a,b,c\n"),
        ("old.jsonl", b'{"track_id": "a.wav", "path": "a.wav", "label": "", "top": [], "error": null}\n'),
    ],
    ids=["text-without-final-newline", "binary", "one-line-csv", "results-without-a-marker"],
)
def test_a_file_mgc_did_not_make_is_refused_and_left_whole(model, corpus, tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    before = snapshot(tmp_path)
    refused(invoke("predict", model.folder, corpus, "--out", tmp_path / name), name, "not an mgc results file")
    assert snapshot(tmp_path) == before  # not a byte changed, and no marker nor lock file beside it


def test_a_symbolic_link_is_refused_and_its_target_left_whole(model, corpus, tmp_path):
    target = tmp_path / "precious.jsonl"
    target.write_bytes(b'{"mine": 1}\n{"mine": 2')  # looks like JSON lines, torn last line and all
    (tmp_path / "link.jsonl").symlink_to(target)
    (tmp_path / "dangling.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    before = snapshot(tmp_path)
    refused(invoke("predict", model.folder, corpus, "--out", tmp_path / "link.jsonl"), "symbolic link")
    refused(invoke("predict", model.folder, corpus, "--out", tmp_path / "dangling.jsonl"), "symbolic link")
    assert snapshot(tmp_path) == before and not (tmp_path / "nowhere.jsonl").exists()


def test_a_folder_is_refused(model, corpus, tmp_path):
    (tmp_path / "results").mkdir()
    before = snapshot(tmp_path)
    refused(invoke("predict", model.folder, corpus, "--out", tmp_path / "results"), "is a folder")
    assert snapshot(tmp_path) == before


def test_a_read_only_place_is_refused(model, corpus, tmp_path):
    place = tmp_path / "read-only"
    place.mkdir()
    place.chmod(0o555)
    if not _unwritable(place):  # root writes where mode bits forbid: take a folder even root cannot write into
        place = Path("/sys")
        if not place.is_dir() or not _unwritable(place):
            pytest.skip("no folder here that this user cannot write into")
    refused(invoke("predict", model.folder, corpus, "--out", place / "out.jsonl"), "out.jsonl")
    assert not (place / "out.jsonl").exists()


def _unwritable(folder: Path) -> bool:
    try:
        os.close(os.open(folder / "mgc-probe", os.O_WRONLY | os.O_CREAT, 0o644))
    except OSError:
        return True
    os.unlink(folder / "mgc-probe")
    return False


def test_a_foreign_marker_or_lock_file_is_refused_and_left_whole(model, corpus, tmp_path):
    (tmp_path / "a.jsonl.mgc.json").write_bytes(b'{"my": "settings"}\n')
    (tmp_path / "b.jsonl.lock").write_bytes(b"my lock notes\n")
    before = snapshot(tmp_path)
    refused(invoke("predict", model.folder, corpus, "--out", tmp_path / "a.jsonl"), "not an mgc results marker")
    refused(invoke("predict", model.folder, corpus, "--out", tmp_path / "b.jsonl"), "not an mgc lock file")
    assert snapshot(tmp_path) == before


def test_a_marked_file_that_is_not_ours_any_more_is_not_repaired(model, corpus, tmp_path):
    out = tmp_path / "out.jsonl"
    predict_into(model, out, corpus)
    out.write_bytes(b"notes moved over the results\nwithout a final newline")  # e.g. mv notes.txt out.jsonl
    before = snapshot(tmp_path)
    refused(invoke("predict", model.folder, corpus, "--out", out), "line 1 is not an mgc result")
    assert snapshot(tmp_path) == before  # the torn-tail repair is only for lines of ours


def test_an_empty_file_is_taken_as_a_new_results_file(model, corpus, tmp_path):
    from mgc.models import load_model

    out = tmp_path / "made-by-mktemp.jsonl"
    out.touch()  # nothing in it to lose: `mgc predict --out "$(mktemp)"` works
    summary = predict_into(model, out, corpus)
    assert summary["written"] == 6 and len(track_ids(out)) == 6
    marker = json.loads((tmp_path / "made-by-mktemp.jsonl.mgc.json").read_text())
    assert {k: marker[k] for k in ("format", "version", "layout", "key")} == {
        "format": "mgc-predictions",
        "version": 1,
        "layout": "jsonl",
        "key": "track_id",
    }
    fingerprint = load_model(model.folder).fingerprint()  # the checkpoint the CLI reads
    assert marker["made_by"] == {"model_fingerprint": fingerprint, "store": None, "top_k": 3}
    assert marker["about"] == {"model_source": str(model.folder)}


# --- case 5: two runs into one file ----------------------------------------------------------------


def test_a_second_run_into_the_same_file_is_refused_at_once(model, tones, tmp_path):
    corpus = linked_corpus([str(p) for p in tones], tmp_path / "many", 300)
    out = tmp_path / "out.jsonl"
    argv = [sys.executable, "-m", "mgc.cli", "predict", str(model.folder), str(corpus), "--out", str(out)]
    argv += ["--batch-size", "4", "--workers", "1"]
    first = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while first.poll() is None and time.monotonic() < deadline:
            if out.exists() and out.read_bytes().count(b"\n") >= 8:
                break
            time.sleep(0.005)
        # Stopped mid-run (a real SIGSTOP): it holds the lock for as long as the second run could wait.
        os.kill(first.pid, signal.SIGSTOP)
        assert first.poll() is None, "the first run ended before the second started"
        written = out.read_bytes()
        second = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
        refused(second, "another mgc predict", f"pid {first.pid}", "out.jsonl")
        assert out.read_bytes() == written  # the second run cut nothing the first had written
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGCONT)
    try:
        _, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr[-2000:]
    assert out.read_bytes().startswith(written)
    assert sorted(track_ids(out)) == sorted(str(p) for p in corpus.glob("*.wav"))  # every track exactly once


# --- case 8: identity, not names ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_model(tone_store, tmp_path_factory):
    """A second tiny model (another seed, one epoch): other weights, so another fingerprint."""
    from mgc.models import load_model, train
    from mgc.models.config import TrainConfig, tiny_model_config

    out = tmp_path_factory.mktemp("other-model") / "model"
    config = TrainConfig(epochs=1, batch_size=4, crop_seconds=0.5, crops_per_track=1, lr=0.01, seed=11)
    train(tone_store, out, config, model_config=tiny_model_config())
    loaded = load_model(out)
    loaded.folder = out
    return loaded


def test_another_model_top_k_or_store_is_refused(model, other_model, corpus, tone_store, tmp_path):
    assert other_model.fingerprint() != model.fingerprint()
    out = tmp_path / "out.jsonl"
    predict_into(model, out, corpus)
    before = snapshot(tmp_path)
    line = refused(invoke("predict", other_model.folder, corpus, "--out", out), "made otherwise", "--out")
    assert "model_fingerprint " in line and f"the file's model_source: {model.folder}" in line
    refused(invoke("predict", model.folder, corpus, "--out", out, "--top-k", "2"), "top_k 3 in the file, 2 now")
    refused(invoke("predict", model.folder, "--store", tone_store, "--out", out), "store null in the file")
    assert snapshot(tmp_path) == before
    # The same model again: nothing to do, nothing written.
    assert predict_into(model, out, corpus) == {"out": str(out), "written": 0, "skipped": 6, "failed": 0}
    assert snapshot(tmp_path) == before
    # A store's results: another store (a copy at another path) or audio files are refused.
    of_store = tmp_path / "store.jsonl"
    assert predict_into(model, of_store, "--store", tone_store)["written"] == 24
    assert {row["source_path"] for row in last_lines(of_store).values()} == {None}  # the marker names the store
    copy = shutil.copytree(tone_store, tmp_path / "store-copy")
    before = snapshot(tmp_path)
    refused(invoke("predict", model.folder, "--store", copy, "--out", of_store), "store ", "store-copy")
    refused(invoke("predict", model.folder, corpus, "--out", of_store), "store ", "null now")
    assert snapshot(tmp_path) == before


def test_relative_then_absolute_inputs_are_one_track_each(model, corpus, tmp_path, monkeypatch):
    out = tmp_path / "out.jsonl"
    monkeypatch.chdir(tmp_path)
    one = sorted(corpus.glob("*.wav"))[0]
    first = predict_into(model, "out.jsonl", "corpus", f"./corpus/{one.name}")  # one file named twice
    assert first["written"] == 6
    (tmp_path / "link").symlink_to(corpus)
    again = predict_into(model, out, corpus, f"corpus/../corpus/{one.name}", one, "link")
    assert again == {"out": str(out), "written": 0, "skipped": 6, "failed": 0}
    assert sorted(track_ids(out)) == sorted(str(p) for p in corpus.glob("*.wav"))  # resolved paths, each once
    assert {row["path"] for row in last_lines(out).values()} == {f"corpus/{p.name}" for p in corpus.glob("*.wav")}


def test_a_file_changed_since_it_was_predicted_is_predicted_again(model, corpus, tones, tmp_path):
    from mgc.models import predict

    out = tmp_path / "out.jsonl"
    predict_into(model, out, corpus)
    changed = sorted(corpus.glob("tone0.*.wav"))[0]
    shutil.copyfile(next(p for p in tones if p.name.startswith("tone2.")), changed)  # another class's audio
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))  # even where mtimes are coarse
    summary = predict_into(model, out, corpus)
    assert summary == {"out": str(out), "written": 1, "skipped": 5, "failed": 0}
    ids = track_ids(out)
    assert len(ids) == 7 and ids[-1] == str(changed)  # appended: the old line stays, the newer one follows
    now = predict(model.folder, [changed], top_k=3, workers=1)[0]
    taken = last_lines(out)[str(changed)]
    assert taken["top"] == now["top"] and taken["source_bytes"] == changed.stat().st_size
    assert predict_into(model, out, corpus)["written"] == 0  # unchanged since: skipped


def test_a_failed_file_is_predicted_again_once_fixed(model, corpus, tones, tmp_path):
    out = tmp_path / "out.csv"
    broken = corpus / "broken.wav"
    broken.write_text("not audio")
    first = predict_into(model, out, corpus)
    assert first["written"] == 7 and first["failed"] == 1
    assert last_lines(out)[str(broken)]["error"].startswith("unreadable")
    assert predict_into(model, out, corpus)["written"] == 0  # still the same broken file: not tried again
    os.utime(broken, ns=(time.time_ns(), broken.stat().st_mtime_ns + 1_000_000_000))  # `touch`: tried again
    retried = predict_into(model, out, corpus, exit_code=1)  # 1: every track written this time failed
    assert retried == {"out": str(out), "written": 1, "skipped": 6, "failed": 1}
    shutil.copyfile(tones[0], broken)
    fixed = predict_into(model, out, corpus)
    assert fixed == {"out": str(out), "written": 1, "skipped": 6, "failed": 0}
    taken = last_lines(out)[str(broken)]
    assert taken["error"] == "" and taken["label_1"] and float(taken["probability_1"]) > 0
    assert int(taken["source_bytes"]) == broken.stat().st_size


def test_predict_without_out_keeps_the_paths_as_given(model, corpus, tmp_path, monkeypatch):
    from mgc.models import predict

    monkeypatch.chdir(tmp_path)
    results = predict(model, ["corpus"], workers=1)
    assert (
        [r["track_id"] for r in results]
        == [r["path"] for r in results]
        == sorted(f"corpus/{p.name}" for p in corpus.glob("*.wav"))
    )
