"""Training over several real processes on loopback (JAX's distributed runtime, gloo collectives on CPU).

Each process is ``mgc train ... --coordinator 127.0.0.1:PORT --num-processes N --process-id I`` with
one (faked) CPU device; the reference is one process with N devices. The data-parallel ranks are the
devices, so both read the same shards into the same global batches: the weights must agree.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from mgc.models import load_model

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["--batch-size", "8", "--crops-per-track", "2", "--crop-seconds", "0.5", "--widths", "4,8", "--lr", "0.01"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args, devices: int) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mgc.cli", "train", *map(str, args)],
        cwd=ROOT.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def processes(store, out, n: int, extra=()):
    """Start ``n`` processes of one run; returns them (not waited for)."""
    common = [store, "--out", out, *TRAIN, *extra, "--coordinator", f"127.0.0.1:{free_port()}", "--num-processes", n]
    return [launch([*common, "--process-id", i], 1) for i in range(n)]


def finish(procs, limit=240):
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=limit)
        outs.append((p.returncode, stdout, stderr))
    return outs


def weights(out):
    model = load_model(out, "latest")
    return jax.tree.leaves({"params": model.params, "batch_stats": model.batch_stats})


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


#: A run long enough to be killed in the middle: checkpoints every 20 steps.
RUN = ["--steps", "60", "--checkpoint-every", "20"]


@pytest.fixture(scope="module")
def two_processes(tone_store, tmp_path_factory):
    """A model folder trained by 2 processes of one device each (shared by two tests)."""
    out = tmp_path_factory.mktemp("two-processes") / "model"
    results = finish(processes(tone_store, out, 2, [*RUN, "--json"]))
    for code, _stdout, stderr in results:
        assert code == 0, stderr
    return out, json.loads(results[0][1])


def check_equal_to_one_process(tone_store, tmp_path, n, out, summary, run):
    alone = launch([tone_store, "--out", tmp_path / "one", *TRAIN, *run], n)
    [(code, _out, err)] = finish([alone])
    assert code == 0, err
    assert summary["devices"] == n and summary["processes"] == n
    for a, b in zip(weights(tmp_path / "one"), weights(out)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    # Only process 0 wrote the folder's files; the metrics log has one row per epoch, once.
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == len((tmp_path / "one" / "metrics.jsonl").read_text().splitlines()) >= 1


def test_two_processes_train_the_weights_of_one_process_with_two_devices(tone_store, tmp_path, two_processes):
    out, summary = two_processes
    assert summary["steps"] == 60
    check_equal_to_one_process(tone_store, tmp_path, 2, out, summary, RUN)
    # The folder is an ordinary model folder: evaluate reads it.
    from typer.testing import CliRunner

    from mgc.cli import app

    done = CliRunner().invoke(app, ["evaluate", str(out), str(tone_store), "--split", "all", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["n_tracks"] == 24


def test_four_processes_train_the_weights_of_one_process_with_four_devices(tone_store, tmp_path):
    results = finish(processes(tone_store, tmp_path / "many", 4, ["--steps", "6", "--json"]))
    for code, _stdout, stderr in results:
        assert code == 0, stderr
    check_equal_to_one_process(tone_store, tmp_path, 4, tmp_path / "many", json.loads(results[0][1]), ["--steps", "6"])


def test_sigkill_of_one_process_stops_the_other_and_resume_is_bit_equal(tone_store, tmp_path, two_processes):
    procs = processes(tone_store, tmp_path / "cut", 2, RUN)
    latest = tmp_path / "cut" / "checkpoints" / "latest"
    deadline = time.monotonic() + 180
    while not (latest.is_dir() and any(p.name.isdigit() for p in latest.iterdir())):
        if procs[0].poll() is not None or time.monotonic() > deadline:
            for p in procs:
                p.kill()
            outs = [p.communicate() for p in procs]
            pytest.fail(f"the run ended before it could be killed: {[p.returncode for p in procs]}\n{outs}")
        time.sleep(0.02)
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    stdout, stderr = procs[0].communicate(timeout=120)
    procs[1].wait()
    assert procs[0].returncode not in (0, None), stderr
    assert time.monotonic() - killed_at < 20  # no hang, no waiting for JAX's heartbeat (30 s)
    # One line: the watch of the coordinator's connections saw process 1 vanish (or a collective failed first).
    [line] = errors(stderr)
    assert "stopped" in line and "--resume" in line and "Check failure" not in stderr, stderr
    [(c0, _o0, e0), (c1, _o1, e1)] = finish(processes(tone_store, tmp_path / "cut", 2, [*RUN, "--resume"]))
    assert c0 == 0 and c1 == 0, e0 + e1
    for a, b in zip(weights(two_processes[0]), weights(tmp_path / "cut")):
        np.testing.assert_array_equal(a, b)


def test_a_process_that_never_arrives_is_a_clear_timeout(tone_store, tmp_path):
    port = free_port()
    args = [tone_store, "--out", tmp_path / "m", *TRAIN, "--steps", "2", "--coordinator", f"127.0.0.1:{port}"]
    lonely = launch([*args, "--num-processes", 2, "--process-id", 0, "--join-timeout", 2], 1)
    [(code, _out, stderr)] = finish([lonely], limit=60)
    assert code == 2, stderr
    assert errors(stderr) == [
        "error: process 1 of 2 did not join the coordinator within 2 s; start the same command on every process "
        "(see --join-timeout)"
    ], stderr
    assert not (tmp_path / "m").exists()  # nothing written


def test_mismatched_num_processes_stops_every_process(tone_store, tmp_path):
    port = free_port()
    common = [tone_store, "--out", tmp_path / "m", *TRAIN, "--steps", "2", "--coordinator", f"127.0.0.1:{port}"]
    procs = [
        launch([*common, "--num-processes", 2, "--process-id", 0], 1),
        launch([*common, "--num-processes", 3, "--process-id", 1], 1),
    ]
    for code, _out, stderr in finish(procs, limit=60):
        assert code == 2, stderr
        assert len(errors(stderr)) == 1 and "--num-processes 3, process 0 with 2" in errors(stderr)[0], stderr
    assert not (tmp_path / "m").exists()


def test_other_settings_on_one_process_are_refused(tone_store, tmp_path):
    port = free_port()
    common = [tone_store, "--out", tmp_path / "m", *TRAIN, "--coordinator", f"127.0.0.1:{port}", "--num-processes", 2]
    procs = [
        launch([*common, "--steps", "2", "--process-id", 0], 1),
        launch([*common, "--steps", "3", "--process-id", 1], 1),
    ]
    for code, _out, stderr in finish(procs, limit=60):
        assert code == 2 and "other settings" in " ".join(errors(stderr)), stderr
