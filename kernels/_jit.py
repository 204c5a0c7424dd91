"""The one place where Numba options are chosen.

Every kernel in this package is compiled through :func:`jit`, so caching,
GIL release and the serial/parallel choice are decided here and nowhere else.

Kernels are serial by default: the engine gets its parallelism from worker
processes (one Numba thread each). :func:`jit_parallel` compiles the same
Python function a second time with ``parallel=True`` so that ``prange`` loops
over a stacked batch run on several threads (umap's habit: one source, two
compilations).

Numba caches compiled machine code next to the package (``__pycache__``). When
that folder is not writable (a read-only site-packages), Numba itself falls
back to a per-user cache directory; ``NUMBA_CACHE_DIR`` overrides both.
"""

from __future__ import annotations

import numba

#: Options shared by every kernel. ``fastmath`` stays off: our numbers must
#: match librosa's, and reassociating float sums would move them.
JIT_OPTIONS = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}


def jit(function):
    """Compile ``function`` as a serial, cached, GIL-free Numba kernel."""
    return numba.njit(**JIT_OPTIONS)(function)


def jit_inline(function):
    """Compile ``function`` to be inlined into its Numba callers (a small loop called once per FFT bin)."""
    return numba.njit(inline="always", **JIT_OPTIONS)(function)


def jit_parallel(function):
    """Compile ``function`` with ``parallel=True`` so its ``prange`` loops use threads."""
    return numba.njit(parallel=True, **JIT_OPTIONS)(function)
