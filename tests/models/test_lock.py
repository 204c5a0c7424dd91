"""Model folder locks with real processes: one training at a time, no reads during a training, SIGKILL frees.

Also the refusal of a ``.lock`` that is a link (for stores and model folders) and
the tolerant reader of ``metrics.jsonl``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mgc.engine import FolderLock, StoreError, StoreLockedError, extract
from mgc.models.config import ModelError, TrainConfig
from mgc.models.folder import ModelFolder
from tests.models.conftest import small_spec, write_tone_corpus

REPO = Path(__file__).resolve().parents[2]

HOLD = """
import sys, time
from mgc.models.folder import ModelFolder
with ModelFolder(sys.argv[1]).lock(shared=sys.argv[2] == "shared"):
    print("locked", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def hold(folder: Path, *, shared: bool = False, seconds: float = 120.0) -> subprocess.Popen:
    """A process holding ``folder``'s model lock (returns once it holds it)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), "shared" if shared else "exclusive", str(seconds)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline().strip()
    if line != "locked":
        process.kill()
        process.wait()
        pytest.fail(f"the lock holder did not start (said {line!r})")
    return process


@pytest.fixture
def holders():
    """Processes started by a test; SIGKILLed and reaped at its end."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def quick_config() -> TrainConfig:
    return TrainConfig(epochs=1, batch_size=4, crop_seconds=0.5, prefetch=1, crops_per_track=1)


def test_a_second_training_into_the_same_folder_fails_at_once(tone_store, tmp_path, holders):
    from mgc import models

    model_dir = tmp_path / "model"
    holders.append(first := hold(model_dir))
    with pytest.raises(ModelError, match=rf"another training \(pid {first.pid}\) is writing into .*model"):
        models.train(tone_store, model_dir, quick_config())
    # Nothing of the second run was written; the holder's pid is still in the lock file.
    assert sorted(os.listdir(model_dir)) == [".lock"]
    assert (model_dir / ".lock").read_text() == str(first.pid)


def test_reading_a_model_during_its_training_is_a_clear_error(tone_store, tmp_path, holders):
    from mgc import models

    model_dir = tmp_path / "model"
    holders.append(trainer := hold(model_dir))
    busy = rf"{model_dir} is in use: a training \(pid {trainer.pid}\) is writing into it; wait for it"
    with pytest.raises(ModelError, match=busy):
        models.load_model(model_dir)
    wav = write_tone_corpus(tmp_path / "audio", n_per_class=1, seconds=0.5) / "tone0" / "tone0.00000.wav"
    with pytest.raises(ModelError, match=busy):
        models.predict(model_dir, [wav])
    with pytest.raises(ModelError, match=busy):
        models.evaluate(model_dir, tone_store, split="all")
    assert not (model_dir / "eval-all").exists()


def test_a_killed_holder_frees_the_lock(tmp_path, holders):
    from mgc import models

    model_dir = tmp_path / "model"
    holders.append(trainer := hold(model_dir))
    with pytest.raises(ModelError, match=f"pid {trainer.pid}"):
        models.load_model(model_dir)
    trainer.send_signal(signal.SIGKILL)
    assert trainer.wait(timeout=30) == -signal.SIGKILL
    assert (model_dir / ".lock").read_text() == str(trainer.pid)  # stale, and harmless
    with pytest.raises(ModelError, match="holds no trained model"):  # readable again (nothing trained yet)
        models.load_model(model_dir)
    with ModelFolder(model_dir).lock():
        assert (model_dir / ".lock").read_text() == str(os.getpid())
    assert (model_dir / ".lock").read_text() == ""  # a finished writer leaves no pid behind


def test_training_holds_the_lock_for_its_run_and_releases_it_on_error(tone_store, tmp_path):
    from mgc import models

    model_dir = tmp_path / "model"
    seen: list[BaseException] = []

    class Stop(Exception):
        pass

    def progress(event):
        if event.kind == "start":
            try:
                models.load_model(model_dir)
            except ModelError as error:
                seen.append(error)
            raise Stop

    with pytest.raises(Stop):
        models.train(tone_store, model_dir, quick_config(), progress=progress)
    assert len(seen) == 1 and f"a training (pid {os.getpid()}) is writing" in str(seen[0])
    with ModelFolder(model_dir).lock():  # released by the exception
        pass


def test_readers_share_the_lock_and_never_write_it(tmp_path, holders):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / ".lock").write_text("4242")
    holders.append(hold(model_dir, shared=True))
    with ModelFolder(model_dir).lock(shared=True):  # a second reader
        pass
    assert (model_dir / ".lock").read_text() == "4242"
    lock = FolderLock(model_dir, what="another training", error=ModelError, invalid=ModelError, wait_for_readers=0.2)
    with pytest.raises(ModelError, match="is being read by another process"):
        with lock:
            pass


def test_a_training_waits_for_readers_to_finish(tmp_path, holders):
    model_dir = tmp_path / "model"
    with ModelFolder(model_dir).lock():  # an earlier training created the lock file
        pass
    holders.append(reader := hold(model_dir, shared=True, seconds=1.0))
    started = time.monotonic()
    with ModelFolder(model_dir).lock():  # waits up to READERS_WAIT_SECONDS; the reader is done in 1 s
        assert time.monotonic() - started > 0.5
    assert reader.wait(timeout=30) == 0


def test_a_reader_of_a_folder_without_a_lock_file_creates_nothing(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    with ModelFolder(folder).lock(shared=True):
        pass
    with ModelFolder(tmp_path / "missing").lock(shared=True):
        pass
    assert not os.listdir(folder) and not (tmp_path / "missing").exists()


@pytest.fixture
def outside(tmp_path):
    """A file outside the locked folder that a planted ``.lock`` link points at."""
    path = tmp_path / "precious.txt"
    path.write_text("do not truncate me")
    return path


def test_a_symlinked_lock_file_of_a_store_is_refused(tmp_path, outside):
    corpus = write_tone_corpus(tmp_path / "corpus", n_per_class=1, seconds=0.5)
    store = tmp_path / "store"
    store.mkdir()
    (store / ".lock").symlink_to(outside)
    with pytest.raises(StoreError, match="is a symbolic link") as caught:
        extract(corpus, store, small_spec(), workers=1)
    assert not isinstance(caught.value, StoreLockedError)
    assert outside.read_text() == "do not truncate me"
    (store / ".lock").unlink()
    (store / ".lock").symlink_to(tmp_path / "nowhere")  # dangling: its target is not created either
    with pytest.raises(StoreError, match="is a symbolic link"):
        extract(corpus, store, small_spec(), workers=1)
    assert not (tmp_path / "nowhere").exists()


def test_a_hard_linked_or_odd_lock_file_is_refused(tmp_path, outside):
    store = tmp_path / "store"
    store.mkdir()
    os.link(outside, store / ".lock")
    with pytest.raises(StoreError, match="is a hard link"):
        with FolderLock(store):
            pass
    assert outside.read_text() == "do not truncate me"
    (store / ".lock").unlink()
    os.mkfifo(store / ".lock")
    with pytest.raises(StoreError, match="is not a regular file"):
        with FolderLock(store):
            pass


def test_a_symlinked_lock_file_of_a_model_folder_is_refused(tone_store, tmp_path, outside):
    from mgc import models

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / ".lock").symlink_to(outside)
    with pytest.raises(ModelError, match="is a symbolic link"):
        models.train(tone_store, model_dir, quick_config())
    with pytest.raises(ModelError, match="is a symbolic link"):
        models.load_model(model_dir)
    assert outside.read_text() == "do not truncate me"
    assert sorted(os.listdir(model_dir)) == [".lock"]


def test_metrics_reader_skips_a_torn_last_line(tmp_path):
    folder = ModelFolder(tmp_path)
    folder.write_metrics([{"epoch": 1, "step": 4}, {"epoch": 2, "step": 8}])
    with open(folder.metrics_log, "a") as handle:
        handle.write('{"epoch": 3, "st')  # a copy taken mid-write
    assert folder.read_metrics() == [{"epoch": 1, "step": 4}, {"epoch": 2, "step": 8}]
    folder.append_metrics({"epoch": 3, "step": 12})
    assert [row["epoch"] for row in folder.read_metrics()] == [1, 2, 3]
    assert not list(tmp_path.glob("*.tmp"))
