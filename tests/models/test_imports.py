"""models/ reads stores only through engine's public API and never imports kernels."""

from __future__ import annotations

import ast
from pathlib import Path

import mgc.engine.synth  # noqa: F401
from mgc import engine

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


#: The engine's public modules: the package and its synthetic-corpus subpackage.
PUBLIC = {"engine": engine, "engine.synth": engine.synth}


def test_models_use_only_the_public_engine_api():
    paths = sorted(MODELS.rglob("*.py"))
    assert {"kinds", "tasks", "training"} <= {p.parent.name for p in paths}  # subpackages are seen
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                root = node.module.removeprefix("mgc.").split(".")[0]
                assert root != "kernels", f"{path.name} imports kernels"
                if root == "engine":
                    internal = node.module.removeprefix("mgc.") not in PUBLIC
                    assert not internal, f"{path.name} imports engine internals ({node.module})"
                    names = {alias.name for alias in node.names}
                    public = set(PUBLIC[node.module.removeprefix("mgc.")].__all__)
                    assert names <= public, f"{path.name} imports non-public {names - public}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    name = alias.name.removeprefix("mgc.")
                    assert name.split(".")[0] != "kernels", f"{path.name} imports kernels"
                    assert name == "engine" or not name.startswith("engine."), f"{path.name}: {alias.name}"


def test_models_public_api():
    from mgc import models

    assert {"train", "evaluate", "predict", "ModelConfig", "TrainConfig"} <= set(models.__all__)
    assert all(hasattr(models, name) for name in models.__all__)
    for path in MODELS.rglob("*.py"):
        assert path.read_text().isascii(), f"{path.name} is not ASCII"


def test_config_and_cli_load_without_jax():
    """``models.config`` (the CLI's defaults) and ``mgc inspect`` never import JAX, Flax or matplotlib."""
    import subprocess
    import sys

    probe = (
        "import sys; from mgc import cli, models; from mgc.models import ModelConfig, TrainConfig, ModelError; "
        "print(sorted(m for m in ('jax', 'flax', 'orbax', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_importing_every_submodule_hides_no_public_name():
    import importlib
    import pkgutil

    from mgc import models

    names = [m.name for m in pkgutil.walk_packages(models.__path__, "mgc.models.") if "convert" not in m.name]
    assert {"mgc.models.kinds.loader", "mgc.models.training.cnn", "mgc.models.tasks.report"} <= set(names)
    for name in names:
        importlib.import_module(name)
    assert callable(models.train) and callable(models.evaluate) and callable(models.report)
    assert models.train.__module__ == "mgc.models.training.cnn"
    assert models.report.__module__ == "mgc.models.tasks.report"
