"""Worker processes: how many, how they start, and one thread each.

The engine's parallelism comes from processes (STYLE.md rule 3): each worker
runs the kernels serially with one Numba and one BLAS thread. This module is
the one home of the worker count, the thread caps and the pool's initializer;
``extract``, the Dask session and the demo all use it.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import multiprocessing
import os

__all__ = [
    "THREAD_VARIABLES",
    "default_workers",
    "init_worker",
    "make_pool",
    "one_thread_environment",
    "prestart_pool",
    "prestarted",
    "started_pool",
]

#: BLAS/OpenMP pools read these when numpy loads, so they must be in the
#: environment a worker process starts with (see ``one_thread_environment``).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def default_workers() -> int:
    """Cores this process may use (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def one_thread_environment():
    """Thread caps in the environment while a pool spawns its workers.

    numpy loads OpenBLAS while a spawned worker unpickles its initializer, before
    the initializer runs: the cap must already be in the environment it inherits.
    The caller's own environment is restored on exit.
    """
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: "1" for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _exit_with_parent() -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        parent.join()  # returns when the parent process is gone, however it died
        os._exit(1)


def init_worker() -> None:
    """Initializer of the engine's own pool processes.

    Caps Numba's threads (before the kernels load; BLAS's cap is already in the
    environment the worker was spawned with, see ``THREAD_VARIABLES``), makes the
    worker leave as soon as its parent dies (after a SIGKILL of the run an orphan
    would otherwise wait forever for tasks; its half-written temporary shard is
    removed by the next run), leaves Ctrl-C to the parent, and skips the
    interpreter's slow teardown when the pool shuts down.
    """
    import atexit
    import signal
    import sys
    import threading

    # Ctrl-C reaches every process of the terminal's group: the parent handles it (it stops the
    # pool and says what was kept); a worker printing its own KeyboardInterrupt would only be noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # Only in a fresh worker: changed after Numba started its threads (as in a
    # caller running shards itself), it makes Numba refuse every later compile.
    os.environ["NUMBA_NUM_THREADS"] = "1"
    if "numba" in sys.modules:  # imported while unpickling the initializer (mgc's errors live in kernels)
        from numba.core import config

        config.reload_config()  # no thread has started in a fresh worker, so the new cap applies
    threading.Thread(target=_exit_with_parent, name="mgc-parent-watch", daemon=True).start()
    # A worker's results are sent and its files closed before it exits; the
    # interpreter's teardown (numba, llvmlite, h5py) would then cost ~0.3 s that the
    # whole run waits for. Registered last, this handler runs first at exit.
    atexit.register(os._exit, 0)


def make_pool(workers: int) -> cf.ProcessPoolExecutor:
    """A spawn-based process pool of ``workers`` engine workers.

    Workers start on the first submits: submit inside ``one_thread_environment()``.
    """
    return cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker
    )


#: Pools started ahead of their run by :func:`prestart_pool`, by worker count (taken by :func:`started_pool`).
_STARTED: dict[int, cf.ProcessPoolExecutor] = {}


def warm_kernels() -> None:
    """Load the decoders and the feature kernels (Numba's cached machine code) in this process: about 1 s, once."""
    import numpy as np
    import soundfile  # noqa: F401
    import soxr  # noqa: F401

    from mgc.kernels import log_melspectrogram

    log_melspectrogram(np.zeros(4096, np.float32), sr=22050, n_fft=1024, hop_length=512, center=False, top_db=None)


def prestart_pool(workers: int | None = None) -> None:
    """Start a pool of ``workers`` (default: all cores) now, its first worker loading the kernels meanwhile.

    For a command about to spend a second or more in the main process (importing JAX,
    loading a model) before its first file is decoded: one worker starts and warms up on
    another core in the meantime (the pool starts the others as work arrives), and
    :func:`started_pool` hands the pool to the run.
    A pool nobody takes is shut down at exit.
    """
    workers = workers or default_workers()
    if workers in _STARTED:
        return
    pool = make_pool(workers)
    with one_thread_environment():  # one worker now (a second would compete with the main process for a core)
        pool.submit(warm_kernels)
    _STARTED[workers] = pool
    atexit.register(pool.shutdown, wait=False, cancel_futures=True)


def started_pool(workers: int) -> cf.ProcessPoolExecutor | None:
    """The pool :func:`prestart_pool` started with ``workers``, handed over once (the taker shuts it down)."""
    pool = _STARTED.pop(workers, None)
    if pool is not None and getattr(pool, "_broken", False):  # a worker died warming up: a fresh pool instead
        pool.shutdown(wait=False, cancel_futures=True)
        return None
    return pool


def prestarted(workers: int | None = None) -> bool:
    """Whether :func:`prestart_pool` started a pool of ``workers`` (None: of any size) that no run took yet."""
    return bool(_STARTED) if workers is None else workers in _STARTED
