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
