"""What ``pip install`` puts in site-packages: one package, ``mgc``, and nothing that can clash.

The wheel is built from a copy of the files git would commit (so the checkout
gains no build folder) with setuptools' own backend, as pip calls it.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The repository's folders installed under mgc.
PACKAGES = ("kernels", "engine", "models")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    files = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]  # what a commit would hold
    listed = subprocess.run(files, cwd=ROOT, capture_output=True, check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are unknown")
    for name in listed.stdout.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    out = tmp_path_factory.mktemp("wheel")
    build = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", build, str(out)], cwd=source, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


def test_the_wheel_installs_one_top_level_package(wheel):
    """Every package of the source tree is in the wheel, under mgc, and nothing else is."""
    from mgc import __version__

    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"mgc", f"mgc-{__version__}.dist-info"}
    for module in ("mgc/__init__.py", "mgc/cli.py", "mgc/kernels/stft.py", "mgc/engine/synth/__init__.py"):
        assert module in names
    for module in ("mgc/models/kinds/loader.py", "mgc/models/tasks/predict.py", "mgc/models/training/heads.py"):
        assert module in names
    assert {"mgc/models/pretrained/musicnn_msd.npz", "mgc/models/pretrained/LICENSE-musicnn.md"} <= set(names)
    assert not [n for n in names if n.startswith(("mgc/tests/", "mgc/benchmarks/", "mgc/docs/"))]
    packages = {p.parent.relative_to(ROOT).as_posix() for f in PACKAGES for p in (ROOT / f).rglob("__init__.py")}
    assert {f"mgc/{p}/__init__.py" for p in packages} <= set(names), "pyproject.toml lists every package"
    entry_points = zipfile.ZipFile(wheel).read(f"mgc-{__version__}.dist-info/entry_points.txt").decode()
    assert "mgc = mgc.cli:program" in entry_points


def test_another_distributions_models_and_cli_keep_working_beside_it(wheel, tmp_path):
    """A folder with someone else's top-level ``models`` package and ``cli`` module, and mgc installed into it."""
    site = tmp_path / "site"
    (site / "models").mkdir(parents=True)
    (site / "models" / "__init__.py").write_text("OWNER = 'someone else'\n")
    (site / "cli.py").write_text("OWNER = 'someone else'\n")
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)]
    done = subprocess.run(install, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import models, cli, mgc, mgc.cli, mgc.models; "
        "print(models.OWNER, cli.OWNER, mgc.__version__, mgc.__file__.startswith(sys.argv[1]), "
        "callable(mgc.models.train), sep='|')"
    )
    # From a folder of the user's own called models/: ours is mgc.models, theirs stays theirs.
    (tmp_path / "work" / "models").mkdir(parents=True)
    work = tmp_path / "work"
    done = subprocess.run([sys.executable, "-c", probe, str(site)], cwd=work, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    from mgc import __version__

    assert done.stdout.strip() == f"someone else|someone else|{__version__}|True|True"
