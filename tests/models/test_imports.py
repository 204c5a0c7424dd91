"""models/ reads stores only through engine's public API and never imports kernels."""

from __future__ import annotations

import ast
from pathlib import Path

import engine
import engine.synth

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


#: The engine's public modules: the package and its synthetic-corpus subpackage.
PUBLIC = {"engine": engine, "engine.synth": engine.synth}


def test_models_use_only_the_public_engine_api():
    for path in MODELS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                root = node.module.split(".")[0]
                assert root != "kernels", f"{path.name} imports kernels"
                if root == "engine":
                    assert node.module in PUBLIC, f"{path.name} imports engine internals ({node.module})"
                    names = {alias.name for alias in node.names}
                    public = set(PUBLIC[node.module].__all__)
                    assert names <= public, f"{path.name} imports non-public {names - public}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] != "kernels", f"{path.name} imports kernels"
                    assert alias.name == "engine" or not alias.name.startswith("engine."), f"{path.name}: {alias.name}"


def test_models_public_api():
    import models

    assert {"train", "evaluate", "predict", "ModelConfig", "TrainConfig"} <= set(models.__all__)
    assert all(hasattr(models, name) for name in models.__all__)
    for path in MODELS.glob("*.py"):
        assert path.read_text().isascii(), f"{path.name} is not ASCII"


def test_config_and_cli_load_without_jax():
    """``models.config`` (the CLI's defaults) and ``mgc inspect`` never import JAX, Flax or matplotlib."""
    import subprocess
    import sys

    probe = (
        "import sys, cli, models; from models import ModelConfig, TrainConfig, ModelError; "
        "print(sorted(m for m in ('jax', 'flax', 'orbax', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_submodule_import_does_not_hide_the_function():
    import models
    import models.evaluate
    import models.predict
    import models.train

    assert callable(models.train) and callable(models.evaluate) and callable(models.predict)
    assert models.train.__module__ == "models.train"
