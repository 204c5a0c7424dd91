"""JAX's persistent compilation cache (mgc.models.compile_cache): a second run reads what the first compiled."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mgc.engine import MgcWarning
from mgc.models import compile_cache

from .conftest import REPO, write_tone_corpus

#: JAX logs each persistent-cache miss and hit as a warning line under these settings.
LOUD = {"JAX_LOG_COMPILES": "1", "JAX_EXPLAIN_CACHE_MISSES": "1"}
MISS, HIT = "PERSISTENT COMPILATION CACHE MISS", "Persistent compilation cache hit"


def _environment(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MGC_COMPILE_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    return {**env, **LOUD, **values}


def _predict(model: Path, audio: Path, **values: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "mgc.cli", "predict", str(model), str(audio), "--workers", "1", "--json"]
    env = _environment(**values)
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(run: subprocess.Popen) -> tuple[list, str]:
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    return json.loads(out), err


def _entries(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_a_second_run_compiles_from_the_cache_and_off_writes_nothing(tone_model, tmp_path):
    audio = next(iter(sorted((write_tone_corpus(tmp_path / "corpus", n_per_class=1)).rglob("*.wav"))))
    cache = tmp_path / "cache"
    # Two cold runs at once share the empty folder: both succeed and every entry is whole.
    first = [_predict(tone_model.folder, audio, MGC_CACHE_DIR=str(cache)) for _ in range(2)]
    (predicted, cold_log), (twin, twin_log) = (_finish(run) for run in first)
    assert twin == predicted
    assert MISS in cold_log + twin_log  # the later one may already read what the other wrote
    written = _entries(cache)
    assert written and all(name.endswith("-cache") for name in written), written  # no temporary file left
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700  # the cache is code: its owner's only

    again, warm_log = _finish(_predict(tone_model.folder, audio, MGC_CACHE_DIR=str(cache)))
    assert again == predicted
    assert HIT in warm_log and MISS not in warm_log, warm_log
    assert _entries(cache) == written  # read, not rewritten

    off = tmp_path / "off"
    unchanged, off_log = _finish(_predict(tone_model.folder, audio, MGC_CACHE_DIR=str(off), MGC_COMPILE_CACHE="Off"))
    assert unchanged == predicted
    assert not off.exists() and MISS not in off_log and HIT not in off_log


def test_the_folder_comes_from_the_environment(monkeypatch, tmp_path):
    for name in ("MGC_CACHE_DIR", "XDG_CACHE_HOME", "MGC_COMPILE_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compile_cache.cache_folder() == tmp_path / "home" / ".cache" / "mgc" / "jax"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.cache_folder() == tmp_path / "xdg" / "mgc" / "jax"
    monkeypatch.setenv("MGC_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache.cache_folder() == tmp_path / "mine"
    for value in ("off", "OFF", "0", "false", "no"):
        monkeypatch.setenv("MGC_COMPILE_CACHE", value)
        assert compile_cache.cache_folder() is None
    monkeypatch.setenv("MGC_COMPILE_CACHE", "on")
    assert compile_cache.cache_folder() == tmp_path / "mine"


@pytest.mark.parametrize("bad", ["under-a-file", "a-file"])
def test_an_unwritable_folder_turns_the_cache_off_with_one_warning(monkeypatch, tmp_path, bad):
    import jax

    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("MGC_CACHE_DIR", str(tmp_path / "a-file" / "jax" if bad == "under-a-file" else tmp_path / bad))
    monkeypatch.delenv("MGC_COMPILE_CACHE", raising=False)
    monkeypatch.setattr(compile_cache, "_decided", False)  # a fresh process, as far as enable() can tell
    monkeypatch.setattr(compile_cache, "_folder", None)
    before = jax.config.jax_compilation_cache_dir  # this session's folder, when a test enabled it
    jax.config.update("jax_compilation_cache_dir", None)  # as in a fresh process; nothing compiles meanwhile
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert compile_cache.enable() is None
            assert compile_cache.enable() is None  # decided once per process: no second warning
        assert jax.config.jax_compilation_cache_dir is None  # JAX left without a cache
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
    assert [w.category for w in caught] == [MgcWarning]
    assert "compilation cache off" in str(caught[0].message) and "MGC_COMPILE_CACHE=off" in str(caught[0].message)
