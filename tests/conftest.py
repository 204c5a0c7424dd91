"""Shared fixtures. Fakes 4 CPU devices for JAX before anything imports it."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Must happen before JAX initialises its backends (any test module may import jax).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# JAX's persistent compilation cache (mgc.models.compile_cache) of this run: a fresh folder, removed at the
# end, never the user's own cache (nor a JAX cache folder of theirs); subprocesses inherit it, so a program
# compiled once serves the whole run.
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
os.environ["MGC_CACHE_DIR"] = tempfile.mkdtemp(prefix="mgc-test-jax-cache-")

from pathlib import Path

import numpy as np
import pytest

atexit.register(shutil.rmtree, os.environ["MGC_CACHE_DIR"], ignore_errors=True)

SHARED_AUDIO = Path(__file__).resolve().parents[1].parent / "shared" / "audio"


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: every test sees the same random numbers."""
    return np.random.default_rng(20261122)


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    """The folder of real CC-licensed recordings, or a skip when it is absent."""
    if not SHARED_AUDIO.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_AUDIO} (only present in the project's workspace)")
    return SHARED_AUDIO


def make_tone_mix(sr: int = 22050, seconds: float = 2.0, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """A music-like test signal: a few harmonic tones, an envelope and some noise."""
    r = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    y = np.zeros_like(t)
    for f0 in r.uniform(80, 1000, size=4):
        for h in range(1, 5):
            y += r.uniform(0.05, 0.3) / h * np.sin(2 * np.pi * f0 * h * t + r.uniform(0, 2 * np.pi))
    y *= 0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 2.0 * t))
    y += 0.01 * r.standard_normal(t.size)
    return (y / np.max(np.abs(y)) * 0.8).astype(dtype)


@pytest.fixture
def tone_mix() -> np.ndarray:
    """2 s of music-like float32 audio at 22050 Hz."""
    return make_tone_mix()
