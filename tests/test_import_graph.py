"""The import graph of the installed package: no cycle, no upward import, no private name across modules.

Every import counts, those inside functions too (a cycle hidden in a function
still makes two modules that cannot be understood, or loaded, apart). The
layers, bottom to top: ``kernels``, ``engine``, ``models``, ``terminal`` (the
CLI's shared plumbing), ``cli``; inside
``models``, the groups of :data:`MODEL_RANKS`. A module may import its own
group or a lower one, never a higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Layers of the package, bottom to top.
LAYERS = {"kernels": 0, "engine": 1, "models": 2, "terminal": 3, "cli": 4}
#: Groups inside models/ (a top module or a subpackage), bottom to top; ``__init__`` (the public API) is on top.
MODEL_RANKS = {
    "errors": 0,
    "compile_cache": 0,
    "config": 1,
    "devices": 2,
    "folder": 2,
    "nets": 2,
    "data": 2,
    "pretrained": 3,
    "checkpoints": 3,
    "inference": 3,
    "metrics": 4,
    "kinds": 5,
    "training": 6,
    "tasks": 7,
    "__init__": 8,
}


def package_modules(root: Path, package: str, folders: list[str], files: list[str]) -> dict[str, Path]:
    """Module name -> file of every module under ``folders`` and the single ``files`` of ``root``."""
    modules = {}
    for name in files:
        path = root / name
        stem = path.stem
        modules[package if stem == "__init__" else f"{package}.{stem}"] = path
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[int, str, list[str]]]:
    """``(line, imported module, names)`` of every import in the file, function-level ones included."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [alias.name for alias in node.names]
            # `from package import submodule` imports the submodule.
            subs = [n for n in names if f"{module}.{n}" in modules]
            found += [(node.lineno, f"{module}.{n}", []) for n in subs]
            rest = [n for n in names if n not in subs]
            if rest or not subs:
                found.append((node.lineno, module, rest))
    return found


def group_of(module: str, package: str) -> tuple[int, int]:
    """``(layer rank, rank inside models)`` of a module of ``package``."""
    parts = module.split(".")[1:]
    if not parts:
        return (-1, 0)  # the package's own __init__: imports nothing
    layer = LAYERS.get(parts[0], -1)
    if parts[0] == "models":
        return (layer, MODEL_RANKS.get(parts[1] if len(parts) > 1 else "__init__", -1))
    return (layer, 0)


def check(root: Path, package: str, folders: list[str], files: list[str], *, ranked: bool = True) -> list[str]:
    """Every cycle, upward import and private name imported from another module, as one line each."""
    modules = package_modules(root, package, folders, files)
    problems, graph = [], {m: set() for m in modules}
    for name, path in modules.items():
        where = path.relative_to(root)
        for line, target, names in imports_of(name, path, modules):
            if target != package and not target.startswith(package + "."):
                continue
            if target not in modules:
                problems.append(f"{where}:{line} imports {target}, which does not exist")
                continue
            if target != name:
                graph[name].add(target)
            private = [n for n in names if n.startswith("_") and not n.startswith("__") and target != name]
            if private:
                problems.append(f"{where}:{line} imports private {', '.join(private)} from {target}")
            if ranked and group_of(target, package) > group_of(name, package):
                problems.append(f"{where}:{line} imports {target} from below it ({name})")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle of each strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component) + [sorted(component)[0]])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_imports_one_way():
    problems = check(ROOT, "mgc", ["kernels", "engine", "models"], ["__init__.py", "terminal.py", "cli.py"])
    assert not problems, "\n".join(problems)


def test_every_models_group_is_ranked():
    groups = {p.stem if p.is_file() else p.name for p in (ROOT / "models").iterdir() if p.suffix == ".py" or p.is_dir()}
    groups.discard("__pycache__")
    assert groups <= set(MODEL_RANKS), f"unranked: {sorted(groups - set(MODEL_RANKS))}"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_cycle_through_a_function_level_import_is_caught(tmp_path):
    # The shape main had: checkpoint -> heads -> predict -> checkpoint, the last two inside functions.
    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/checkpoint.py": "def load():\n    from pkg.heads import Head\n",
            "pkg/heads.py": "def vectors():\n    from pkg.predict import _decode\n",
            "pkg/predict.py": "from pkg.checkpoint import load\n",
        },
    )
    files = ["__init__.py", "checkpoint.py", "heads.py", "predict.py"]
    problems = check(root / "pkg", "pkg", [], files, ranked=False)
    assert "import cycle: pkg.checkpoint -> pkg.heads -> pkg.predict -> pkg.checkpoint" in problems, problems
    assert any("heads.py:2 imports private _decode from pkg.predict" in p for p in problems), problems


def test_an_upward_import_is_caught(tmp_path):
    root = _tree(
        tmp_path,
        {"engine/__init__.py": "", "engine/x.py": "def f():\n    from mgc.models.kinds import base\n",
         "models/__init__.py": "", "models/kinds/__init__.py": "", "models/kinds/base.py": "",
         "models/nets/__init__.py": "", "models/nets/cnn.py": "from mgc.models.kinds.base import Model\n"},
    )  # fmt: skip
    problems = check(root, "mgc", ["engine", "models"], [])
    assert any("engine/x.py:2 imports mgc.models.kinds.base from below it" in p for p in problems)
    assert any("models/nets/cnn.py:1 imports mgc.models.kinds.base from below it" in p for p in problems)
    assert not any("cycle" in p for p in problems)
