"""Imports go one way, down the architecture (STYLE.md section 1)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)

#: Third-party and project packages each layer may import (the standard library is always allowed).
ALLOWED = {
    # llvmlite is Numba's own code generator (installed with it, at the version it pins): the
    # vector intrinsics of kernels/_simd.py build their LLVM IR with it.
    "kernels": {"numpy", "numba", "llvmlite", "scipy", "rocket_fft", "kernels"},
    "engine": {
        "numpy",
        "numba",
        "scipy",
        "soundfile",
        "av",  # PyAV: FFmpeg for what libsndfile cannot read (engine/ffmpeg.py)
        "soxr",
        "h5py",
        "kernels",
        "engine",
        "distributed",
        "dask",
        "psutil",
        "usearch",
    },
    "models": {"numpy", "jax", "jaxlib", "flax", "optax", "orbax", "matplotlib", "engine", "models", "soundfile"},
}


#: Folders allowed more than their layer, and what: ``mgc bench`` (engine/bench) measures the peers it
#: names, the FFTs installed and draws its plot, each imported only where it is measured or drawn (the
#: peers in a benchmark process of their own, each optional: a missing one is a row saying so).
EXTRA = {
    "engine/bench": {
        "librosa",
        "torch",
        "torchaudio",
        "nnAudio",
        "jax",
        "librosax",
        "essentia",
        "audioflux",
        "kaldi_native_fbank",
        "rocket_fft",
        "ducc0",
        "threadpoolctl",
        "matplotlib",
    }
}


def _allowed(package: str, path: Path) -> set[str]:
    relative = path.relative_to(ROOT).as_posix()
    extra = [names for folder, names in EXTRA.items() if relative.startswith(folder + "/")]
    return ALLOWED[package].union(*extra)


def _top(module: str) -> str:
    """The layer or distribution a dotted name belongs to (``mgc.engine.x`` -> ``engine``)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "mgc" and len(parts) > 1 else parts[0]


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, _top(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "mgc":
                for alias in node.names:
                    yield node.lineno, alias.name
            else:
                yield node.lineno, _top(node.module)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_its_layer(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no modules in {package}/"
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in files
        for line, name in _imports(path)
        if name not in STDLIB and name not in _allowed(package, path) and name != "__future__"
    ]
    assert not offences, "\n".join(offences)


def test_presentation_lives_only_in_the_cli():
    """rich (bars, tables, markup) is the CLI's: the library reports progress as events and returns data."""
    assert not any("rich" in allowed for allowed in ALLOWED.values())
    offences = [
        f"{path.relative_to(ROOT)}:{line}"
        for package in ALLOWED
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, name in _imports(path)
        if name == "rich"
    ]
    assert not offences, offences


def test_this_check_catches_a_forbidden_import(tmp_path):
    sample = tmp_path / "bad.py"
    sample.write_text("import jax\nfrom mgc.models import train\n")
    names = [name for _, name in _imports(sample)]
    assert names == ["jax", "models"] and not set(names) & ALLOWED["engine"]
