"""Extraction on a real Dask cluster: a LocalCluster of worker processes on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mgc import engine
from mgc.engine.cluster import ClusterError, dask_executor, parse_scheduler

from .conftest import make_genre_folder

pytest.importorskip("distributed", reason="the Dask path needs the extra: pip install -e .[dask]")

ROOT = Path(__file__).resolve().parents[2]


def assert_same_store(a: Path, b: Path) -> None:
    """Same tracks once each, same fields, the same features bit for bit."""
    left, right = engine.FeatureStore(a), engine.FeatureStore(b)
    assert len(left) == len(right) > 0
    assert left.label_names == right.label_names
    ids = list(left.tracks.track_id)
    assert sorted(ids) == sorted(right.tracks.track_id) and len(set(ids)) == len(ids)
    for track_id in ids:
        for feature in left.spec.features:
            np.testing.assert_array_equal(left.read(track_id, feature), right.read(track_id, feature))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_genre_folder(tmp_path_factory.mktemp("dask") / "corpus", per_label=5, seconds=2.0)


@pytest.fixture(scope="module")
def reference_store(corpus, tmp_path_factory) -> Path:
    """The same corpus through the local process pool."""
    store = tmp_path_factory.mktemp("dask") / "pool-store"
    engine.extract(corpus, store, engine.FeatureSpec(), workers=2, shard_size=1)
    return store


@pytest.mark.parametrize(
    "text, expected",
    [
        ("local", ("local", None)),
        ("local:3", ("local", 3)),
        ("tcp://10.1.2.3:8786", ("remote", None)),
        ("scheduler.example:8786", ("remote", None)),
    ],
)
def test_parse_scheduler(text, expected):
    assert parse_scheduler(text) == expected


@pytest.mark.parametrize("text", ["locl", "local:0", "tcp//oops", ""])
def test_parse_scheduler_rejects_nonsense(text):
    with pytest.raises(ClusterError, match="scheduler"):
        parse_scheduler(text)


def test_local_cluster_store_equals_process_pool_store(corpus, reference_store, tmp_path):
    store = tmp_path / "dask-store"
    with dask_executor("local:2") as session:
        assert session.local and session.n_workers == 2
        assert session.address.startswith("tcp://127.0.0.1:")
        result = engine.extract(corpus, store, engine.FeatureSpec(), executor=session.executor, shard_size=1)
    assert result.stored_tracks == 10 and result.failed_tracks == 0
    assert_same_store(store, reference_store)


def test_killing_a_worker_mid_run_still_gives_the_complete_store(corpus, reference_store, tmp_path):
    store = tmp_path / "killed-store"
    killed = []
    with dask_executor("local:2") as session:
        worker_pids = list(session.client.run(os.getpid).values())
        assert len(worker_pids) == 2

        def kill_one_worker(progress):
            # After the first shards land, SIGKILL a worker that still has tasks.
            if not killed and progress.done >= 2:
                os.kill(worker_pids[0], signal.SIGKILL)
                killed.append(worker_pids[0])

        result = engine.extract(
            corpus, store, engine.FeatureSpec(), executor=session.executor, shard_size=1, progress=kill_one_worker
        )
    assert killed, "the run finished before a worker could be killed"
    assert result.stored_tracks == 10 and not result.shard_errors
    assert not list(store.glob("*.tmp")), "a half-written shard was left behind"
    assert_same_store(store, reference_store)


def test_unreachable_scheduler_gives_a_clear_error_quickly():
    started = time.monotonic()
    with pytest.raises(ClusterError, match="no Dask scheduler answered at tcp://127.0.0.1:9"):
        with dask_executor("tcp://127.0.0.1:9", timeout=2.0):
            pass
    assert time.monotonic() - started < 30.0  # bounded: the timeout plus connection teardown


def test_missing_dask_is_reported_with_the_install_command():
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "from mgc.engine.cluster import dask_executor, ClusterError\n"
        "try:\n"
        "    with dask_executor('local:1'):\n"
        "        pass\n"
        "except ClusterError as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "pip install 'mgc[dask]'" in out


def test_cli_scheduler_local_gives_the_same_store(corpus, reference_store, tmp_path):
    from typer.testing import CliRunner

    from mgc.cli import app

    store = tmp_path / "cli-dask-store"
    result = CliRunner().invoke(
        app, ["extract", str(corpus), str(store), "--scheduler", "local:2", "--shard-size", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "started a local cluster tcp://127.0.0.1:" in result.output
    assert_same_store(store, reference_store)


def test_cli_unreachable_scheduler_exits_2_without_traceback(corpus, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mgc.cli import app
    from mgc.engine import cluster

    # The CLI waits dask_executor's default 10 s for an answer; 2 s are as good a test of the message.
    monkeypatch.setitem(cluster.dask_executor.__wrapped__.__kwdefaults__, "timeout", 2.0)
    result = CliRunner().invoke(app, ["extract", str(corpus), str(tmp_path / "s"), "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "no Dask scheduler answered" in result.output and "Traceback" not in result.output
