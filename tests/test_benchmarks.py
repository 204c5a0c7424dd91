"""The prepared accelerator check runs its code paths on a CPU (``--smoke``) and reports every figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_accelerator_check_smoke_runs_every_measurement(tmp_path):
    out = tmp_path / "accelerator.json"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "accelerator.py"), "--smoke", "--json-out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["devices"]["backend"] == "cpu" and report["devices"]["precision"] == "float32"
    for precision in ("float32", "bfloat16"):
        step = report[f"step_{precision}"]
        assert step["examples_per_s"] > 0 and step["flops_per_example"] > 0 and step["compile_s"] > 0
    assert set(report["pipeline"]) == {"1", "2"} and all(rate > 0 for rate in report["pipeline"].values())
    assert report["train"]["steps"] == 6 and report["train"]["examples_per_s"] > 0
    assert report["predict_crops_per_s"] > 0 and report["musicnn_patches_per_s"] > 0
    for row in ("train step alone, bfloat16", "input pipeline alone, 2 reader processes", "musicnn-msd over the store"):
        assert row in done.stdout
