"""Fixtures for the model tests: tiny configs and small synthetic log-mel tracks."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from mgc.models.config import TrainConfig, tiny_model_config

REPO = Path(__file__).resolve().parents[2]

# Strict JAX, as Equinox's tests: an implicit rank promotion in our code is a bug, not a broadcast.
jax.config.update("jax_numpy_rank_promotion", "raise")

N_MELS = 16
N_CLASSES = 3


@pytest.fixture
def model_config():
    """A two-block CNN over 16 bands: compiles in about a second on CPU."""
    return tiny_model_config(n_mels=N_MELS, n_classes=N_CLASSES)


@pytest.fixture
def train_config():
    return TrainConfig(epochs=2, batch_size=8, lr=3e-3, crop_seconds=1.0, prefetch=2, eval_crops=3, crops_per_track=1)


def make_batch(
    rng: np.random.Generator, batch: int = 8, n_frames: int = 24, n_mels: int = N_MELS, n_classes: int = N_CLASSES
) -> dict[str, np.ndarray]:
    """A batch of random crops with one-hot targets."""
    labels = rng.integers(0, n_classes, size=batch)
    return {
        "x": rng.standard_normal((batch, n_frames, n_mels)).astype(np.float32),
        "y": np.eye(n_classes, dtype=np.float32)[labels],
    }


TONES = (220.0, 440.0, 880.0)  # one fundamental per class


def write_tone_corpus(root, n_per_class: int = 8, seconds: float = 2.0, sr: int = 8000, manifest_extra=None):
    """WAV files of harmonic tones, one sub-folder per class (the GTZAN layout)."""
    import soundfile as sf

    for c, f0 in enumerate(TONES):
        folder = root / f"tone{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            r = np.random.default_rng(100 * c + i)
            t = np.arange(int(sr * seconds)) / sr
            detune = 1 + r.uniform(-0.03, 0.03)
            y = sum(r.uniform(0.2, 0.5) / h * np.sin(2 * np.pi * f0 * h * detune * t) for h in range(1, 4))
            y = y * (0.6 + 0.4 * np.sin(2 * np.pi * r.uniform(0.5, 3) * t)) + 0.02 * r.standard_normal(t.size)
            sf.write(folder / f"tone{c}.{i:05d}.wav", (0.5 * y / np.abs(y).max()).astype(np.float32), sr)
    return root


def small_spec():
    """8 kHz, 16 bands, log-mel only: a 2 s track is 126 frames, extracted in milliseconds."""
    from mgc.engine import FeatureSpec

    return FeatureSpec(sr=8000, n_fft=256, hop_length=128, n_mels=16, features=("logmel",))


@pytest.fixture(scope="session")
def tone_store(tmp_path_factory):
    """A real store made by ``engine.extract`` from 3 classes x 8 generated WAV tracks of 2 s."""
    engine = pytest.importorskip("mgc.engine")
    root = tmp_path_factory.mktemp("tone-store")
    corpus = write_tone_corpus(root / "corpus")
    engine.extract(corpus, root / "store", small_spec(), workers=1)
    return root / "store"


@pytest.fixture(scope="session")
def tone_model(tone_store, tmp_path_factory):
    """A tiny model trained two epochs on ``tone_store`` (latest checkpoint); ``.folder`` is its folder."""
    from mgc.models import load_model, train

    out = tmp_path_factory.mktemp("tone-model") / "model"
    config = TrainConfig(epochs=2, batch_size=4, crop_seconds=0.5, crops_per_track=2, lr=0.01, seed=3)
    train(tone_store, out, config, model_config=tiny_model_config())
    loaded = load_model(out, "latest")
    loaded.folder = out  # for the CLI runs
    return loaded


def linked_corpus(files: list, folder: Path, n: int) -> Path:
    """``folder`` of ``n`` tracks ``tNNNN.wav``, hard links to ``files`` in turn: many tracks, little disk."""
    folder.mkdir()
    for i in range(n):
        os.link(files[i % len(files)], folder / f"t{i:04d}.wav")
    return folder


def kill_once_lines(argv: list, path: Path, lines: int) -> None:
    """Run ``argv`` from the repository and SIGKILL it once ``path`` holds ``lines`` whole lines (2 min at most).

    Fails when the run ended by itself before the kill.
    """
    killed = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and killed.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= lines:
            break
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL, "the run ended before the kill"
