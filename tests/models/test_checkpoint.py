"""Orbax checkpoints: round trip, and a run killed with SIGKILL then resumed equals an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from mgc.engine import FeatureSpec
from mgc.models.checkpoints import Checkpoints
from mgc.models.config import ModelError, TrainConfig
from mgc.models.data.stores import check_spec
from mgc.models.kinds.loader import load_model
from mgc.models.nets.steps import init_state, make_optimizer

REPO = Path(__file__).resolve().parents[2]


def test_round_trip_keeps_every_array_and_the_meta(model_config, tmp_path):
    tx = make_optimizer(TrainConfig(), total_steps=10)
    state = jax.tree.map(np.asarray, init_state(model_config, tx, seed=3))
    state["step"] = np.asarray(7, np.int32)
    checkpoints = Checkpoints(tmp_path)
    meta = {"position": [1, 2], "label_names": ["a", "b", "c"]}
    checkpoints.save("latest", state, meta)
    template = jax.tree.map(np.asarray, init_state(model_config, tx, seed=0))
    restored, restored_meta = Checkpoints(tmp_path).restore("latest", template)
    assert restored_meta == meta and Checkpoints(tmp_path).step("latest") == 7
    jax.tree.map(np.testing.assert_array_equal, restored, state)
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pickle"))


def test_spec_mismatch_names_the_fields():
    check_spec(FeatureSpec(hop_length=256).to_dict(), FeatureSpec(hop_length=256), where="the model", store_path="s")
    with pytest.raises(ModelError, match="hop_length: model 256 vs store 128"):
        check_spec(
            FeatureSpec(hop_length=256).to_dict(), FeatureSpec(hop_length=128), where="the model", store_path="s"
        )


CHILD = textwrap.dedent(
    """
    import sys, time
    from mgc.models import TrainConfig, tiny_model_config, train

    def slow(event):
        # Slows the run down so that the parent can kill it mid-way; the results do not depend on it.
        if event.kind == "update":
            time.sleep(float(sys.argv[3]))

    config = TrainConfig(epochs=4, batch_size=4, crop_seconds=0.5, lr=0.01, checkpoint_every=2, seed=5,
                         val_fraction=0.1, test_fraction=0.1, prefetch=2, memory_limit_mb=float(sys.argv[4]),
                         crops_per_track=1)
    train(sys.argv[1], sys.argv[2], config, model_config=tiny_model_config(dropout=0.3), resume=True, progress=slow)
    """
)


def _child(store, out, delay, memory_limit_mb):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store), str(out), str(delay), str(memory_limit_mb)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _rows(model_dir):
    rows = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    timing = ("examples_per_s", "epoch_seconds")
    return [{k: v for k, v in row.items() if k not in timing} for row in rows]


@pytest.mark.slow
@pytest.mark.parametrize("memory_limit_mb", [4096.0, 0.005], ids=["in-memory", "streaming"])
def test_sigkill_then_resume_ends_like_an_uninterrupted_run(tone_store, tmp_path, memory_limit_mb):
    # 0.005 MB: shuffle windows of one shard each, read while training; 4096 MB: the split cached.
    straight = _child(tone_store, tmp_path / "straight", 0, memory_limit_mb)
    out, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err.decode()[-3000:]

    killed_dir = tmp_path / "killed"
    killed = _child(tone_store, killed_dir, 0.4, memory_limit_mb)
    latest = killed_dir / "checkpoints" / "latest"
    deadline = time.monotonic() + 240
    # Kill once a mid-run checkpoint exists (the run has 16 steps, one checkpoint every 2).
    while time.monotonic() < deadline:
        steps = [int(p.name) for p in latest.glob("*") if p.name.isdigit()] if latest.is_dir() else []
        if steps and 5 <= max(steps) < 16:
            break
        assert killed.poll() is None, killed.stderr.read().decode()[-3000:]
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    assert len(_rows(killed_dir)) < 4

    resumed = _child(tone_store, killed_dir, 0, memory_limit_mb)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-3000:]

    expected, got = _rows(tmp_path / "straight"), _rows(killed_dir)
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    for a, b in zip(got, expected):
        for key in a:
            if isinstance(a[key], float):
                assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    for which in ("latest", "best"):
        final, reference = load_model(killed_dir, which), load_model(tmp_path / "straight", which)
        jax.tree.map(
            lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), final.params, reference.params
        )


def test_a_runs_setup_and_checkpoint_reads_meet_no_other_process(tone_store, tone_model, tmp_path, monkeypatch):
    """Setup runs inside ``distributed.together()``: a collective there could meet another process's error agreement.

    Orbax is made to behave as in a run of several processes (only a barrier of this process alone is
    skipped) and every barrier it would enter is recorded. Reading a checkpoint (meta, state) and a whole
    ``--resume`` setup must enter none; the managers that save enter them (every process saves).
    """
    import shutil

    from jax.experimental import multihost_utils
    from orbax.checkpoint._src.multihost import multihost

    from mgc.models.data.stores import StoreTracks
    from mgc.models.training.cnn import _prepare

    barriers = []
    monkeypatch.setattr(multihost, "should_skip_process_sync", lambda processes=None: processes == {0})
    monkeypatch.setattr(multihost_utils, "sync_global_devices", barriers.append)
    folder = tmp_path / "model"
    shutil.copytree(tone_model.folder, folder)
    meta = Checkpoints(folder).meta("latest")
    assert barriers == []
    # --resume: the saved settings, splits and normaliser, the state restored; no barrier.
    prepared = _prepare(
        StoreTracks.of(tone_store), folder, None, model_config=None, resume=True, split_files=None, devices=None
    )
    assert prepared["meta"]["total_steps"] == meta["total_steps"] and int(prepared["state"]["step"]) > 0
    assert barriers == []
    # Writing is every process's: the managers for saving meet the others from their creation on
    # (this is where the old setup, which made them, entered a barrier).
    prepared["checkpoints"]._writer("latest")
    assert barriers
