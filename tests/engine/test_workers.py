"""Worker processes: one thread each, the caller's environment restored."""

from __future__ import annotations

import os

from mgc.engine.workers import default_workers, make_pool, one_thread_environment


def _thread_caps():
    import os

    import numba
    import numpy  # noqa: F401  (loads OpenBLAS the way a worker does)

    return os.environ.get("OPENBLAS_NUM_THREADS"), numba.get_num_threads()


def test_pool_workers_run_one_thread_each():
    before = os.environ.get("OPENBLAS_NUM_THREADS")
    pool = make_pool(2)
    try:
        with one_thread_environment():
            futures = [pool.submit(_thread_caps) for _ in range(2)]
        assert [f.result() for f in futures] == [("1", 1), ("1", 1)]
    finally:
        pool.shutdown()
    assert os.environ.get("OPENBLAS_NUM_THREADS") == before


def test_default_workers_counts_the_cores_this_process_may_use():
    assert default_workers() == len(os.sched_getaffinity(0))


def test_a_pool_started_ahead_is_warm_and_handed_to_one_run(tmp_path):
    """``prestart_pool`` (the CLI's, while JAX loads) starts a worker that loads the kernels; the run takes it once."""
    from mgc.engine import FeatureSpec, compute_features, map_features, prestart_pool, prestarted

    from .conftest import write_audio

    path = write_audio(tmp_path / "a.wav", seconds=1.0, sr=8000)
    spec = FeatureSpec(sr=8000, n_fft=256, hop_length=128, n_mels=16, features=("logmel",))
    prestart_pool(2)
    assert prestarted(2) and prestarted() and not prestarted(3)
    (done,) = list(map_features([path], spec, workers=2))
    assert not prestarted() and done[0] == str(path)
    assert (done[1]["logmel"] == compute_features(path, spec)["logmel"]).all()
