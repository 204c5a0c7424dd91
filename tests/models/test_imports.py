"""models/ reads stores only through engine's public API and never imports kernels."""

from __future__ import annotations

import ast
from pathlib import Path

import engine

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_models_use_only_the_public_engine_api():
    for path in MODELS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                root = node.module.split(".")[0]
                assert root != "kernels", f"{path.name} imports kernels"
                if root == "engine":
                    assert node.module == "engine", f"{path.name} imports engine internals ({node.module})"
                    names = {alias.name for alias in node.names}
                    assert names <= set(engine.__all__), f"{path.name} imports non-public {names - set(engine.__all__)}"
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
