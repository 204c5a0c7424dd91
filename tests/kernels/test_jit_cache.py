"""Numba's on-disk cache: a second process loads the compiled kernels instead of compiling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, numpy as np
import mgc.kernels._core as core
from mgc import kernels
y = np.zeros(22050, dtype=np.float32)
kernels.log_melspectrogram(y, sr=22050)
stats = core.mel_vector_batch.stats  # the default path (Hann, float32, power 2)
print(json.dumps({"hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values())}))
"""


def _run(cache_dir: Path) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_second_process_loads_kernels_from_the_cache(tmp_path):
    first = _run(tmp_path)
    assert first == {"hits": 0, "misses": 1}
    assert list(tmp_path.rglob("*.nbi")), "no index files written to NUMBA_CACHE_DIR"
    second = _run(tmp_path)
    assert second == {"hits": 1, "misses": 0}
