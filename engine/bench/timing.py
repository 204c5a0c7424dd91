"""How ``mgc bench`` times things: warm-ups apart, round-robin repeats, medians, one thread.

Every figure of the benchmark comes from :func:`round_robin`: each case is called once to
warm up (its first-call time, compile or cache load included, is kept apart), then the
cases are timed in turns, ``repeat`` rounds in a shuffled order (the same for every run), so
that a slow drift of the machine (another process, the clock, the heat) falls on all cases
alike, and so that no case always runs right after the same other one: what a case leaves in
the caches (a 5 MB output written, an input evicted) moves the next case's time by up to 7 %
here, and a fixed rotation would make that a bias instead of noise. The figure is the median
of a case's rounds. :func:`one_thread` caps every thread pool it knows to one thread while it
is timed.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "THREAD_VARIABLES",
    "Timing",
    "median_seconds",
    "one_thread",
    "round_robin",
    "single_thread_environment",
    "timed",
]

#: Environment variables that cap native thread pools (set to 1 in each benchmark worker).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


@dataclass
class Timing:
    """The times of one case.

    Attributes
    ----------
    name : str
    first : float
        Seconds of the warm-up call (compilation, cache loads and first touches included).
    seconds : list of float
        Seconds of each timed round.
    error : str or None
        Why the case could not be timed (its first line), instead of times.
    """

    name: str
    first: float = float("nan")
    seconds: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float:
        """Median seconds of the timed rounds (nan when there are none)."""
        return statistics.median(self.seconds) if self.seconds else float("nan")


def timed(function: Callable[[], object]) -> float:
    """Wall seconds of one call of ``function``."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def round_robin(cases: Sequence[tuple[str, Callable[[], object]]], repeat: int) -> list[Timing]:
    """Time ``cases`` (name, function) in turns: a warm-up each, then ``repeat`` rounds in shuffled orders.

    Round 0 runs in the order given; round ``r`` in the permutation ``default_rng(r)`` draws.

    A case whose warm-up raises is not timed; its :attr:`Timing.error` holds the first line of
    the error, and the other cases go on.

    Returns
    -------
    list of Timing
        One per case, in the order given.
    """
    results = [Timing(name) for name, _ in cases]
    live = []
    for i, (_name, function) in enumerate(cases):
        try:
            results[i].first = timed(function)
            live.append(i)
        except Exception as error:  # noqa: BLE001 - a peer's failure is a row, not the end of the benchmark
            results[i].error = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    for r in range(max(1, repeat)):
        order = [live[i] for i in np.random.default_rng(r).permutation(len(live))] if r else list(live)
        for i in order:
            results[i].seconds.append(timed(cases[i][1]))
    return results


def median_seconds(function: Callable[[], object], repeat: int) -> float:
    """Median wall seconds of ``function()`` over ``repeat`` calls after one warm-up call."""
    [timing] = round_robin([("", function)], repeat)
    return timing.median


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Cap BLAS/OpenMP (threadpoolctl), Numba and, when loaded, torch to one thread meanwhile."""
    with contextlib.ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(1))
        except ImportError:  # without threadpoolctl the THREAD_VARIABLES of the worker hold
            pass
        import numba

        before = numba.get_num_threads()
        numba.set_num_threads(1)
        stack.callback(numba.set_num_threads, before)
        torch = sys.modules.get("torch")
        if torch is not None:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            stack.callback(torch.set_num_threads, threads)
        yield


def single_thread_environment() -> dict[str, str]:
    """The environment of this process with every :data:`THREAD_VARIABLES` set to 1 (for worker processes)."""
    return {**os.environ, **dict.fromkeys(THREAD_VARIABLES, "1")}
