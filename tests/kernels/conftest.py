"""Helpers for comparing our kernels with librosa (the live oracle) and with ``tests/naive.py``.

Only the tests that ask for the ``librosa`` fixture are skipped when librosa
is not installed; the rest (brute-force references, invariants, argument
checks) run everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def librosa():
    """The librosa module, or a skip for this test when it is not installed.

    Session-scoped so that hypothesis tests may take it too.
    """
    return pytest.importorskip("librosa", reason="librosa is the oracle for kernel tests: pip install -e .[test]")


#: The issue's tolerances: spectrograms relative to their peak, dB absolute, MFCC absolute.
SPECTRUM_RTOL = 1e-5
DB_ATOL = 1e-3
MFCC_ATOL = 1e-3


def assert_spectrum_close(ours: np.ndarray, reference: np.ndarray, *, rtol: float = SPECTRUM_RTOL) -> None:
    """Same shape and dtype, and every value within ``rtol`` (1e-5) of the reference's peak."""
    assert ours.shape == reference.shape
    assert ours.dtype == reference.dtype
    peak = np.max(np.abs(reference))
    error = np.max(np.abs(ours - reference)) if reference.size else 0.0
    assert error <= rtol * max(peak, np.finfo(np.float32).tiny), f"max error {error} vs peak {peak}"


def assert_db_close(
    ours: np.ndarray, reference: np.ndarray, *, floor_db: float | None = None, atol: float = DB_ATOL
) -> None:
    """dB values within ``atol`` (1e-3 dB); with ``floor_db``, only where the reference is above peak - floor_db.

    Without a top_db floor, levels 150 dB below the peak carry float32 rounding
    noise in both implementations, so those are compared only when floored.
    """
    assert ours.shape == reference.shape
    assert ours.dtype == reference.dtype
    assert np.isfinite(ours).all()
    mask = np.ones(reference.shape, dtype=bool)
    if floor_db is not None:
        mask = reference >= reference.max() - floor_db
    error = np.max(np.abs(ours - reference)[mask]) if mask.any() else 0.0
    assert error <= atol, f"max dB error {error}"
