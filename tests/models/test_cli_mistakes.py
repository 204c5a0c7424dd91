"""The bad-input sweep: every mistake a user can make is one line (``error: ...``), exit 2, no traceback.

Each case runs the real CLI in this process (typer's runner) on real files: a small real store and a
trained model (the session's), manifests broken in the ways people break them, files where folders
belong and the reverse, a foreign folder, missing and damaged paths. Nothing here may change what the
case points at: the sweep checks that too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mgc.cli import app

from .conftest import small_spec

runner = CliRunner()


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


@pytest.fixture(scope="module")
def place(tmp_path_factory, tone_store, tone_model) -> dict:
    """Paths the cases name: a copy of the session's store, its corpus, the model and broken things."""
    from mgc import engine

    d = tmp_path_factory.mktemp("mistakes")
    store = shutil.copytree(tone_store, d / "store")
    corpus = tone_store.parent / "corpus"
    wav = next(iter(sorted(corpus.rglob("*.wav"))))
    plain = d / "plain"
    plain.mkdir()
    shutil.copy(wav, plain / "a.wav")
    engine.extract(plain, d / "unlabelled", small_spec(), workers=1)
    (d / "folder").mkdir()
    (d / "empty").mkdir()
    _write(d / "foreign" / "thesis.docx", "a user's file")
    _write(d / "afile.txt", "hello\n")
    os.symlink(d / "nowhere.wav", d / "dangling.wav")
    rel = os.path.relpath(wav, d)
    _write(d / "extra.csv", f"path,label\n{rel},folk,extra\n")
    _write(d / "quote.csv", f'path,label\n"{rel},folk\n{rel},rock\n')
    _write(d / "latin1.csv", f"path,label\n{rel},m\xfasica\n".encode("latin-1"))
    _write(d / "zero.csv", b"")
    _write(d / "header.csv", "path,label\n")
    _write(d / "nopath.csv", f"file,label\n{rel},folk\n")
    _write(d / "badsplit.csv", f"path,label,split\n{rel},folk,training\n")
    _write(d / "badjson" / "model.json", "{not json")
    return {
        "d": str(d),
        "store": str(store),
        "corpus": str(corpus),
        "model": str(tone_model.folder),
        "wav": str(wav),
    }


#: (id, argv with {d} {store} {corpus} {model} {wav} placeholders, exit code, a phrase of the message).
CASES = [
    # the command line itself
    ("unknown-command", "extrct", 2, "did you mean 'extract'"),
    ("unknown-option", "inspect {store} --jsn", 2, "no such option"),
    ("missing-argument", "extract", 2, "missing argument 'CORPUS'"),
    ("not-an-integer", "predict {model} {wav} --workers abc", 2, "--workers"),
    ("bad-choice", "extract {corpus} {d}/s --compression zip", 2, "--compression"),
    # extract: corpora and manifests
    ("corpus-missing", "extract {d}/nosuch {d}/s", 2, "does not exist"),
    ("corpus-is-a-text-file", "extract {d}/afile.txt {d}/s", 2, "afile.txt"),
    ("corpus-empty-folder", "extract {d}/empty {d}/s", 2, "no audio files"),
    ("manifest-extra-field", "extract {d}/extra.csv {d}/s", 2, "line 2"),
    ("manifest-unbalanced-quote", "extract {d}/quote.csv {d}/s", 2, "quote"),
    ("manifest-latin1", "extract {d}/latin1.csv {d}/s", 2, "UTF-8"),
    ("manifest-zero-bytes", "extract {d}/zero.csv {d}/s", 2, "zero.csv"),
    ("manifest-header-only", "extract {d}/header.csv {d}/s", 2, "no rows"),
    ("manifest-no-path-column", "extract {d}/nopath.csv {d}/s", 2, "path"),
    ("manifest-unknown-split", "extract {d}/badsplit.csv {d}/s", 2, "training"),
    ("manifest-and-corpus-disagree", "extract {corpus} {d}/s --manifest {d}/extra.csv", 2, "disagree"),
    ("store-is-a-file", "extract {corpus} {d}/afile.txt", 2, "afile.txt"),
    ("store-is-foreign", "extract {corpus} {d}/foreign", 2, "not a feature store"),
    ("store-other-spec", "extract {corpus} {store}", 2, "--overwrite"),
    ("n-fft-zero", "extract {corpus} {d}/s --n-fft 0", 2, "--n-fft must be at least 1, got 0"),
    ("duration-negative", "extract {corpus} {d}/s --duration -5", 2, "--duration must be greater than 0"),
    ("offset-negative", "extract {corpus} {d}/s --offset -1", 2, "--offset must be at least 0"),
    ("workers-zero", "extract {corpus} {d}/s --workers 0", 2, "--workers must be at least 1, got 0"),
    ("unknown-feature", "extract {corpus} {d}/s --features chroma", 2, "chroma"),
    ("n-mfcc-above-n-mels", "extract {corpus} {d}/s --n-mels 16", 2, "n_mfcc"),
    ("fmax-above-nyquist", "extract {corpus} {d}/s --fmax 99999", 2, "fmax"),
    # inspect
    ("inspect-missing", "inspect {d}/nosuch", 2, "does not exist"),
    ("inspect-a-file", "inspect {d}/afile.txt", 2, "is a file"),
    ("inspect-foreign", "inspect {d}/foreign", 2, "not a feature store"),
    # train
    ("train-store-missing", "train {d}/nosuch --out {d}/m", 2, "does not exist"),
    ("train-store-is-a-model", "train {model} --out {d}/m", 2, "not a feature store"),
    ("train-out-is-a-file", "train {store} --out {d}/afile.txt", 2, "is a file"),
    ("split-file-missing", "train {store} --out {d}/m --split-file train={d}/nosuch.txt", 2, "does not exist"),
    ("split-file-is-a-folder", "train {store} --out {d}/m --split-file train={d}/folder", 2, "folder"),
    ("split-file-unknown-split", "train {store} --out {d}/m --split-file training={d}/afile.txt", 2, "training"),
    ("split-file-no-name", "train {store} --out {d}/m --split-file {d}/afile.txt", 2, "NAME=PATH"),
    ("crops-per-track-zero", "train {store} --out {d}/m --crops-per-track 0", 2, "--crops-per-track must be at least"),
    ("c-zero", "train {store} --out {d}/m --model stats --c 0", 2, "--c must be greater than 0"),
    ("epochs-zero", "train {store} --out {d}/m --epochs 0", 2, "--epochs must be at least 1"),
    ("lr-negative", "train {store} --out {d}/m --lr -1", 2, "--lr must be greater than 0"),
    ("widths-empty", "train {store} --out {d}/m --widths ''", 2, "--widths"),
    ("widths-not-numbers", "train {store} --out {d}/m --widths a,b", 2, "--widths"),
    ("cnn-option-for-a-head", "train {store} --out {d}/m --model stats --epochs 3", 2, "does not apply"),
    ("unknown-model-kind", "train {store} --out {d}/m --model forest", 2, "--model"),
    # evaluate
    ("evaluate-unlabelled", "evaluate {model} {d}/unlabelled --split all", 2, "label"),
    ("evaluate-model-missing", "evaluate {d}/nosuch {store}", 2, "does not exist"),
    ("evaluate-model-json-broken", "evaluate {d}/badjson {store}", 2, "model.json"),
    ("evaluate-k-zero", "evaluate {model} {store} --k 0", 2, "--k must be at least 1"),
    ("evaluate-bad-split", "evaluate {model} {store} --split bogus", 2, "--split"),
    # predict
    ("predict-model-is-a-file", "predict {d}/afile.txt {wav}", 2, "is a file"),
    ("predict-model-missing", "predict {d}/nosuch {wav}", 2, "does not exist"),
    ("predict-unknown-builtin", "predict musicnn-xyz {wav}", 2, "musicnn-msd"),
    ("predict-nothing", "predict {model}", 2, "--store"),
    ("predict-both", "predict {model} {wav} --store {store}", 2, "not both"),
    ("predict-out-is-a-folder", "predict {model} {wav} --out {d}/folder", 2, "folder"),
    ("predict-out-not-ours", "predict {model} {wav} --out {d}/afile.txt", 2, "not an mgc results file"),
    ("predict-no-audio", "predict {model} {d}/empty", 2, "no audio files"),
    ("predict-top-k-zero", "predict {model} {wav} --top-k 0", 2, "--top-k must be at least 1"),
    ("predict-manifest-extra-field", "predict {model} {d}/extra.csv", 2, "line 2"),
    # embed, similar
    ("embed-out-is-a-file", "embed {model} {wav} --out {d}/afile.txt", 2, "afile.txt"),
    ("embed-out-foreign", "embed {model} {wav} --out {d}/foreign", 2, "foreign"),
    ("embed-bad-dtype", "embed {model} {wav} --out {d}/e --dtype int8", 2, "--dtype"),
    ("similar-missing", "similar {d}/nosuch x", 2, "does not exist"),
    ("similar-feature-store", "similar {store} x", 2, "embedding"),
    ("similar-k-zero", "similar {d}/nosuch x --k 0", 2, "--k must be at least 1"),
    # report, synth, demo
    ("report-out-is-a-file", "report {store} --out {d}/afile.txt", 2, "is a file"),
    ("report-store-missing", "report {d}/nosuch --out {d}/r", 2, "does not exist"),
    ("report-sample-zero", "report {store} --sample 0", 2, "--sample must be at least 1"),
    ("synth-out-is-a-file", "synth --out {d}/afile.txt -n 1 --duration 1", 2, "afile.txt"),
    ("synth-bad-format", "synth --out {d}/y --format aac", 2, "aac"),
    ("synth-bad-channels", "synth --out {d}/y --channels 3", 2, "--channels"),
    ("synth-unknown-genre", "synth --out {d}/y --genres polka", 2, "polka"),
    ("synth-no-tracks", "synth --out {d}/y -n 0", 2, "--tracks-per-genre must be at least 1"),
    ("demo-out-is-a-file", "demo --out {d}/afile.txt --quick", 2, "afile.txt"),
    ("demo-too-few-tracks", "demo --out {d}/q -n 1", 2, "--tracks-per-genre must be at least 2"),
]


def _fingerprint(root: Path) -> dict:
    """Every file under ``root`` (the case's world) with its bytes' hash: a case must change none."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != ".lock"
    }


def test_the_sweep_is_large():
    assert len(CASES) >= 40 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("argv", "code", "phrase"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_mistake_is_one_line(place, argv, code, phrase):
    import shlex

    d = Path(place["d"])
    before = _fingerprint(d)
    result = runner.invoke(app, shlex.split(argv.format(**place)))
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert phrase.lower() in lines[0].lower(), lines[0]
    created = [name for name in ("s", "m", "y", "q", "e", "r") if (d / name).exists()]
    for name in created:  # cleaned first, so that one failure does not fail the next cases
        shutil.rmtree(d / name)
    assert _fingerprint(d) == before, "the mistake changed files"
    assert not created, f"a refused run created {created}"


def test_a_bug_shows_its_traceback_and_asks_for_a_report(monkeypatch, place):
    """An exception that is not a user's mistake is a bug: its traceback, then one line asking to report it."""
    import mgc.cli

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(mgc.cli.engine, "summarize_store", broken)
    result = runner.invoke(app, ["inspect", place["store"]])
    assert result.exit_code == 1
    assert "Traceback" in result.output and "ZeroDivisionError: boom" in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: mgc ") and "report" in result.output
