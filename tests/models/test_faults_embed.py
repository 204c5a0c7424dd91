"""Faults of ``mgc embed`` and ``mgc similar`` through the real CLI: real files, processes, SIGKILL and a full disk.

Each case is one of issue 22's: the answer is right, or one line (``error: ...``,
exit 2) with no traceback, and nothing is lost: after the advised command every
track is in the embedding store exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.models.conftest import linked_corpus, write_tone_corpus

REPO = Path(__file__).resolve().parents[2]


def mgc(*args, cwd: Path = REPO, timeout: float = 300, **options) -> subprocess.CompletedProcess:
    """Run the real CLI in a new interpreter."""
    argv = [sys.executable, "-m", "mgc.cli", *map(str, args)]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, **options)


def one_line_error(run: subprocess.CompletedProcess, *phrases: str) -> str:
    """The run failed with exit 2 and one ``error:`` line (no traceback) holding every phrase; that line."""
    assert run.returncode == 2, (run.returncode, run.stderr[-3000:])
    assert "Traceback" not in run.stderr + run.stdout, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr[-3000:]
    for phrase in phrases:
        assert phrase in errors[0], errors[0]
    return errors[0]


def ok_json(run: subprocess.CompletedProcess):
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    return json.loads(run.stdout)


def embed_args(model, out: Path, *inputs, shard_tracks: int = 5, **options) -> list[str]:
    args = ["embed", model.folder, *inputs, "--out", out, "--shard-tracks", shard_tracks, "--checkpoint", "latest"]
    args += ["--workers", "1", "--batch-size", "4", "--json"]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}"] + ([] if value is True else [value])
    return args


def every_track_once(out: Path, expected_ids) -> None:
    """The store reads, holds each expected track id once, and every listed shard has its recorded SHA-256."""
    import hashlib

    from mgc.engine import VectorStore

    store = VectorStore(out)
    ids = list(store.track_ids())
    assert sorted(ids) == sorted(expected_ids) and len(ids) == len(set(ids))
    for entry in store.shards:
        assert hashlib.sha256((out / entry["name"]).read_bytes()).hexdigest() == entry["sha256"]


def similar_scores_ok(hits: list) -> None:
    for hit in hits:
        scores = [r["score"] for r in hit["results"]]
        assert all(-1.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True), scores


@pytest.fixture(scope="module")
def model(tone_model):
    return tone_model


@pytest.fixture(scope="module")
def store_ids(tone_store):
    from mgc.engine import FeatureStore

    return list(FeatureStore(tone_store).tracks.track_id)


def embedded(model, tone_store, out: Path, **options) -> Path:
    from mgc.models import embed

    embed(model.folder, out, store=tone_store, which="latest", shard_tracks=5, **{"index": "none", **options})
    return out


# --- case 2: a torn or damaged shards.jsonl ------------------------------------------------------------------


def test_a_damaged_log_is_refused_by_similar_and_repaired_by_the_same_embed(model, tone_store, store_ids, tmp_path):
    out = embedded(model, tone_store, tmp_path / "emb")
    lines = (out / "shards.jsonl").read_bytes().splitlines(keepends=True)
    # The state: a full disk tore line 3, and the next run appended right after the fragment.
    torn = lines[:2] + [b'{"name": "shard-00002.h5", "tracks":' + lines[2]] + lines[3:]
    (out / "shards.jsonl").write_bytes(b"".join(torn))
    one_line_error(mgc("similar", out, store_ids[0], "--json"), "damaged at line 3", "run `mgc embed` again")
    run = mgc(*embed_args(model, out, store=tone_store))
    summary = ok_json(run)
    assert "line 3" in summary["repaired"][0] and "repair" in run.stderr  # said on stderr, as a stage line
    assert summary["written"] == 24 - 10 and summary["skipped"] == 10 and summary["vectors"] == 24
    every_track_once(out, store_ids)
    hits = ok_json(mgc("similar", out, store_ids[0], "--k", "3", "--json"))
    similar_scores_ok(hits)


# --- case 8: identity, not names -----------------------------------------------------------------------------


def test_a_relative_run_killed_then_resumed_absolute_embeds_each_file_once(model, tmp_path):
    corpus = write_tone_corpus(tmp_path / "corpus", n_per_class=12, seconds=1.0)
    files = sorted(corpus.rglob("*.wav"))
    out = tmp_path / "emb"
    argv = [sys.executable, "-m", "mgc.cli", *map(str, embed_args(model, out, "corpus", shard_tracks=2))]
    killed = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while killed.poll() is None and time.monotonic() < deadline:
        if (out / "shards.jsonl").exists() and (out / "shards.jsonl").read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=30) == -signal.SIGKILL, "the run ended before the kill"
    summary = ok_json(mgc(*embed_args(model, out, corpus.resolve(), shard_tracks=2)))
    assert summary["skipped"] >= 4 and summary["written"] + summary["skipped"] == len(files)
    assert summary["vectors"] == len(files)  # not 36 + the relative ones
    from mgc.engine import VectorStore

    store = VectorStore(out)
    sources = np.concatenate([c["source_path"] for _, c in store.iter_shards(columns=("source_path",))])
    assert sorted(sources) == sorted(str(p.resolve()) for p in files)
    source_of = dict(zip(store.track_ids(), sources))
    # Both spellings again, in one run: nothing to do.
    again = ok_json(mgc(*embed_args(model, out, "corpus", corpus.resolve(), shard_tracks=2), cwd=tmp_path))
    assert again["written"] == 0 and again["skipped"] == 2 * len(files) and again["vectors"] == len(files)
    # A track is never its own neighbour under another name.
    [hit] = ok_json(mgc("similar", out, store.track_ids()[0], "--k", "3", "--json"))
    assert all(source_of[r["track_id"]] != sources[0] for r in hit["results"])
    similar_scores_ok([hit])


def test_another_feature_store_with_the_same_ids_is_refused(model, tone_store, tmp_path):
    out = embedded(model, tone_store, tmp_path / "emb")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other = tmp_path / "copy-of-store"
    shutil.copytree(tone_store, other)
    one_line_error(mgc(*embed_args(model, out, store=other)), "holds embeddings of the feature store", "--overwrite")
    corpus = Path(tone_store).parent / "corpus"  # the audio the store was extracted from
    one_line_error(mgc(*embed_args(model, out, corpus)), "audio files", "--overwrite")  # audio into a store's
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"} == {
        k: v for k, v in before.items() if k != ".lock"
    }


def test_a_failed_file_is_tried_again_once_it_changes(model, tmp_path):
    import soundfile as sf

    corpus = write_tone_corpus(tmp_path / "c", n_per_class=2, seconds=1.0)
    broken = corpus / "tone0" / "broken.wav"
    broken.write_text("not audio")
    out = tmp_path / "emb"
    first = ok_json(mgc(*embed_args(model, out, corpus)))
    assert first["written"] == 6 and first["failed"] == 1
    again = ok_json(mgc(*embed_args(model, out, corpus)))
    assert again["written"] == 0 and again["failed"] == 0 and again["retried"] == 0 and again["skipped"] == 7
    good, sr = sf.read(corpus / "tone0" / "tone0.00000.wav")
    sf.write(broken, good[::-1], sr)  # fixed: another size and modification time
    fixed = ok_json(mgc(*embed_args(model, out, corpus)))
    assert fixed["written"] == 1 and fixed["retried"] == 1 and fixed["failed"] == 0 and fixed["vectors"] == 7
    from mgc.engine import VectorStore

    store = VectorStore(out)
    assert store.failures() == [] and str(broken) in set(store.track_ids())
    every_track_once(out, [str(p) for p in corpus.rglob("*.wav")])
    # A stored file that changes: its vector would be stale, so the store is refused untouched.
    edited = corpus / "tone1" / "tone1.00000.wav"
    sf.write(edited, good, sr)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"}
    done = mgc(*embed_args(model, out, corpus))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().startswith("error: 1 file(s) changed since they were embedded"), done.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"} == before


# --- case 9: a damaged approximate index ---------------------------------------------------------------------


def test_a_damaged_index_is_refused_by_similar_and_rebuilt_by_embed(model, tone_store, store_ids, tmp_path):
    out = embedded(model, tone_store, tmp_path / "emb", index="ann")
    index = out / "index-usearch.bin"
    data = index.read_bytes()
    for damage in ("truncated", "overwritten"):
        info = index.stat()
        if damage == "truncated":
            index.write_bytes(data[: len(data) // 2])
        else:  # 2 KB in place, the modification time put back: only the checksum can tell
            index.write_bytes(data[:200] + bytes(range(256)) * 8 + data[200 + 2048 :])
            os.utime(index, ns=(info.st_atime_ns, info.st_mtime_ns))
        one_line_error(mgc("similar", out, store_ids[0], "--json"), "approximate index is damaged", "--exact")
        similar_scores_ok(ok_json(mgc("similar", out, store_ids[0], "--exact", "--json")))
        summary = ok_json(mgc(*embed_args(model, out, store=tone_store, index="ann")))
        assert summary["written"] == 0 and "index is damaged" in summary["repaired"][-1]
        hits = ok_json(mgc("similar", out, store_ids[0], "--k", "5", "--json"))
        similar_scores_ok(hits)
        data = index.read_bytes()


# --- case 11: a full disk, user files, a reader during --overwrite ------------------------------------------


_SMALL_DISK = """
set -u
mount -t tmpfs -o size={size} tmpfs "$MOUNT"
"$@" > "$RESULTS/first.out" 2> "$RESULTS/first.err"; echo $? > "$RESULTS/first.rc"
cp -a "$MOUNT/emb" "$RESULTS/after-full-disk"
mount -o remount,size=64m "$MOUNT"
"$@" > "$RESULTS/second.out" 2> "$RESULTS/second.err"; echo $? > "$RESULTS/second.rc"
cp -a "$MOUNT/emb" "$RESULTS/final"
"""


_LIMITED = """
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
os.execv(sys.argv[1], sys.argv[1:])
"""


def _tmpfs_works(where: Path) -> bool:
    probe = subprocess.run(
        ["unshare", "--map-root-user", "--mount", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {where}"],
        capture_output=True,
    )
    return probe.returncode == 0


def test_a_full_disk_during_embed_then_freed_space_completes_the_store(model, tone_store, store_ids, tmp_path):
    args = [sys.executable, "-m", "mgc.cli", *map(str, embed_args(model, Path("MOUNT/emb"), store=tone_store))]
    reference = embedded(model, tone_store, tmp_path / "reference")
    shard = (reference / "shard-00000.h5").stat().st_size
    mount, results = tmp_path / "disk", tmp_path / "results"
    mount.mkdir()
    results.mkdir()
    if shutil.which("unshare") and _tmpfs_works(mount):
        # A real ENOSPC: a tmpfs with room for the metadata and about two of the five shards.
        pages = 4 + 2 * (-(-shard // 4096)) + 1
        args = [a.replace("MOUNT", str(mount)) for a in args]
        script = _SMALL_DISK.format(size=pages * 4096)
        env = {**os.environ, "MOUNT": str(mount), "RESULTS": str(results)}
        subprocess.run(
            ["unshare", "--map-root-user", "--mount", "bash", "-c", script, "bash", *args],
            cwd=REPO,
            env=env,
            timeout=600,
            check=True,
        )
        first = subprocess.CompletedProcess(args, int((results / "first.rc").read_text()))
        first.stdout, first.stderr = (results / "first.out").read_text(), (results / "first.err").read_text()
        second_rc = int((results / "second.rc").read_text())
        second_out, second_err = (results / "second.out").read_text(), (results / "second.err").read_text()
        after, final = results / "after-full-disk", results / "final"
        reason = "No space left on device"
    else:  # no mount namespaces here: the file size limit, which fails the same writes with EFBIG
        args = [a.replace("MOUNT", str(mount)) for a in args]
        limited = [sys.executable, "-c", _LIMITED.format(limit=shard - 1024), *args]
        first = subprocess.run(limited, cwd=REPO, capture_output=True, text=True, timeout=300)
        after = final = mount / "emb"
        shutil.copytree(final, results / "after-full-disk")
        after = results / "after-full-disk"
        second = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
        second_rc, second_out, second_err = second.returncode, second.stdout, second.stderr
        reason = "File too large"
    one_line_error(first, "cannot write", reason, "run the same command again")
    from mgc.engine import VectorStore

    kept = VectorStore(after)  # consistent: whole shards only, each as recorded
    assert len(kept.shards) < 5 and not [p for p in after.iterdir() if p.name.endswith(".tmp")]
    every_track_once(after, list(kept.track_ids()))
    assert second_rc == 0 and "Traceback" not in second_err, second_err[-3000:]
    summary = json.loads(second_out)
    assert summary["skipped"] == len(kept) and summary["written"] == 24 - len(kept) and summary["vectors"] == 24
    every_track_once(final, store_ids)


USER_FILES = {"notes.tmp": "my notes", "shard-foo.txt": "mine", "index.html": "<html>mine</html>"}


def test_resume_and_overwrite_delete_only_what_mgc_wrote(model, tone_store, store_ids, tmp_path):
    out = embedded(model, tone_store, tmp_path / "emb", index="ann")
    for name, text in USER_FILES.items():
        (out / name).write_text(text)
    (out / "shard-00007.h5").write_bytes(b"an unlisted shard a killed run left")
    ok_json(mgc(*embed_args(model, out, store=tone_store)))
    assert not (out / "shard-00007.h5").exists()
    ok_json(mgc(*embed_args(model, out, store=tone_store, overwrite=True, index="ann")))
    assert {name: (out / name).read_text() for name in USER_FILES} == USER_FILES
    every_track_once(out, store_ids)


def test_similar_while_embed_overwrite_runs_answers_or_says_one_line(model, tmp_path):
    files = sorted(write_tone_corpus(tmp_path / "src", n_per_class=2, seconds=2.0).rglob("*.wav"))
    corpus = linked_corpus(files, tmp_path / "many", 120)
    out = tmp_path / "emb"
    ok_json(mgc(*embed_args(model, out, corpus, shard_tracks=8)))
    from mgc.engine import VectorStore

    query = str(VectorStore(out).track_ids()[5])
    argv = [sys.executable, "-m", "mgc.cli", *map(str, embed_args(model, out, corpus, shard_tracks=1, overwrite=True))]
    overwrite = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outcomes = []
    try:
        while overwrite.poll() is None or not outcomes:
            run = mgc("similar", out, query, "--k", "3", "--json")
            if run.returncode == 0:
                hits = ok_json(run)
                similar_scores_ok(hits)
                outcomes.append("answer")
            else:
                one_line_error(run)
                outcomes.append("error")
    finally:
        stdout, stderr = overwrite.communicate(timeout=300)
    assert overwrite.returncode == 0, stderr[-3000:]
    assert json.loads(stdout)["vectors"] == 120 and outcomes
    every_track_once(out, [str(p) for p in corpus.glob("*.wav")])
