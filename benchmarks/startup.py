"""Start-up: whole commands on one file, cold and warm compilation cache, this tree beside a baseline commit.

Usage:
    python benchmarks/startup.py                   # the full run (about 10 minutes on 2 cores)
    python benchmarks/startup.py --quick           # a few minutes: 40 files, the small CNN for `similar`
    python benchmarks/startup.py --baseline HEAD~3 --files 400 --default-network

Prints, in one run on this machine, for this working tree ("ours") and for the
code of ``--baseline REV`` ("baseline", default ``HEAD``: the last commit, so
the working tree's changes are what is compared):

1. **One file.** The wall time and peak memory of the whole command, as a user
   runs it (``python -m mgc.cli ...`` in a fresh process), on a 5 s clip of real
   music: ``mgc predict MODEL one.wav`` (a small CNN, widths 8,16,16,32,32, one
   epoch on a generated corpus: the weights do not change the cost), ``mgc
   predict musicnn-msd one.ogg``, ``mgc embed MODEL one.wav --out X``, ``mgc
   similar EMB one.wav`` (an audio query against an embedding store of the
   clips, made with ``--similar-model``) and ``mgc evaluate MODEL STORE`` (the
   model's test split of the generated store). Each twice: cold (an empty JAX
   compilation cache folder, ``MGC_CACHE_DIR``) and warm (the same folder
   again). Peak memory is the largest resident set of the command's process
   tree (``os.wait4``'s ``ru_maxrss``: the process and the workers it waited
   for), of the warm run. The baseline has its own cache folders; a baseline
   without the compilation cache writes nothing there and its cold and warm
   runs differ only by the disk cache.
2. **Many files.** ``mgc predict MODEL FILES --out x.jsonl`` on ``--files``
   30 s clips (cut from the real recordings, then hard links) beside ``mgc
   extract FILES STORE`` on the same files (tracks/s of the whole command,
   start-up included), the compilation cache warm from part 1. Target: predict
   >= 0.7x extract. ``--default-network`` adds the default network's figure.

Inputs: the real recordings of ``../shared/audio`` (the five ``*.ogg`` that are
not ``.hq``); without them, a corpus made by ``mgc synth``. The baseline runs as
the package ``mgc`` from ``git archive REV`` extracted to a temporary folder
(no git state changes): a folder holding the link ``mgc -> tree`` goes first
on ``PYTHONPATH``; ours runs the same way from a link to this tree, and each
run's ``mgc.__file__`` is checked. Models and stores are made once, by our
code. Child processes use every core (default ``--workers``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SHARED_AUDIO = ROOT.parent / "shared" / "audio"
SMALL_WIDTHS = "8,16,16,32,32"


class Runner:
    """Runs ``python -m mgc.cli`` for one tree: its ``PYTHONPATH`` link folder and environment."""

    def __init__(self, name: str, tree: Path, work: Path):
        self.name, self.tree = name, tree
        self.path = work / f"path-{name}"
        self.path.mkdir(parents=True, exist_ok=True)
        link = self.path / "mgc"
        if not link.exists():
            link.symlink_to(tree.resolve(), target_is_directory=True)
        self.cwd = work

    def env(self, cache: Path | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MGC_", "JAX_COMPILATION_CACHE"))}
        env["PYTHONPATH"] = os.pathsep.join([str(self.path), *filter(None, [os.environ.get("PYTHONPATH")])])
        env.setdefault("JAX_PLATFORMS", "cpu")
        if cache is not None:
            env["MGC_CACHE_DIR"] = str(cache)
        return env

    def check(self) -> None:
        """Fail unless ``import mgc`` in a child loads this runner's tree."""
        probe = "import mgc, mgc.cli; print(mgc.__file__); print(mgc.cli.__file__)"
        out = subprocess.run(
            [sys.executable, "-c", probe], cwd=self.cwd, env=self.env(None), capture_output=True, text=True, check=True
        ).stdout.split()
        expected = [str(self.path / "mgc" / "__init__.py"), str(self.path / "mgc" / "cli.py")]
        if out != expected:
            raise SystemExit(f"{self.name}: mgc loads from {out}, not {expected}")

    def run(self, argv: list[str], cache: Path | None = None) -> tuple[float, float]:
        """``(wall s, peak MB of the process tree)`` of ``mgc ARGV``; exits on failure."""
        command = [sys.executable, "-m", "mgc.cli", *argv]
        started = time.perf_counter()
        child = subprocess.Popen(
            command, cwd=self.cwd, env=self.env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        # wait4 reports the child's own peak or that of a descendant it waited for (its workers).
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        err = child.stderr.read().decode(errors="replace")
        child.stderr.close()
        if child.returncode != 0:
            raise SystemExit(f"{self.name}: mgc {' '.join(argv)} failed ({child.returncode}):\n{err[-3000:]}")
        return wall, usage.ru_maxrss / 1024


def baseline_tree(rev: str, work: Path) -> Path:
    """The files of ``rev`` extracted into ``work/baseline`` (``git archive``: no git state changes)."""
    tree = work / "baseline"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def make_inputs(work: Path, files: int, ours: Runner) -> tuple[Path, Path, Path]:
    """``(one.wav, one.ogg, folder of `files` 30 s clips)``: cut from the real recordings, or synthesised."""
    sources = sorted(p for p in SHARED_AUDIO.glob("*.ogg") if not p.name.endswith(".hq.ogg"))
    if not sources:
        print(f"({SHARED_AUDIO} not found: generated music from `mgc synth` instead)")
        ours.run(["synth", "--out", str(work / "synth-real"), "-n", "1", "--duration", "60", "--format", "ogg"])
        sources = sorted((work / "synth-real").rglob("*.ogg"))[:5]
    audio, sr = sf.read(sources[0], dtype="float32", always_2d=True)
    start = min(len(audio) // 3, max(len(audio) - 5 * sr, 0))
    sf.write(work / "one.wav", audio[start : start + 5 * sr], sr)
    sf.write(work / "one.ogg", audio[start : start + 5 * sr], sr)
    clips = work / "clips"
    clips.mkdir(exist_ok=True)
    distinct = []
    for i, source in enumerate(sources):
        audio, sr = sf.read(source, dtype="float32", always_2d=True)
        for j, offset in enumerate(range(0, max(len(audio) - 30 * sr, 0) + 1, 30 * sr)):
            path = clips / f"c{i}-{j}.wav"
            sf.write(path, audio[offset : offset + 30 * sr], sr)
            distinct.append(path)
    many = work / f"files-{files}"
    if many.exists():
        shutil.rmtree(many)
    many.mkdir()
    for k in range(files):
        os.link(distinct[k % len(distinct)], many / f"t{k:04d}.wav")
    return work / "one.wav", work / "one.ogg", many


def make_models(work: Path, ours: Runner, default_network: bool) -> tuple[Path, Path, dict[str, Path]]:
    """``(store, model, {label: model})``: a generated 10-genre store and CNNs trained one epoch on it."""
    corpus, store = work / "corpus", work / "store"
    ours.run(["synth", "--out", str(corpus), "-n", "4", "--duration", "8"])
    ours.run(["extract", str(corpus), str(store)])
    models = {}
    for label, widths in [("small", SMALL_WIDTHS)] + ([("default", None)] if default_network else []):
        out = work / f"model-{label}"
        ours.run(["train", str(store), "--out", str(out), "--epochs", "1", *(["--widths", widths] if widths else [])])
        models[label] = out
    return store, models["small"], models


def one_file_rows(args, work: Path, runners: list[Runner], one_wav: Path, one_ogg: Path, store: Path, model: Path):
    """Print a row per one-file command: cold and warm wall s and warm peak MB of each runner."""
    clips = work / "clips"
    similar_model = str(model) if args.similar_model == "cnn" else args.similar_model
    emb = work / "emb"
    if not emb.exists():
        runners[-1].run(["embed", similar_model, str(clips), "--out", str(emb)], work / "cache-setup")
    commands = [
        ("predict CNN one.wav", ["predict", str(model), str(one_wav)]),
        ("predict musicnn-msd one.ogg", ["predict", "musicnn-msd", str(one_ogg)]),
        ("embed CNN one.wav --out X", ["embed", str(model), str(one_wav), "--out", "{out}"]),
        (f"similar EMB({args.similar_model}) one.wav", ["similar", str(emb), str(one_wav)]),
        ("evaluate CNN STORE", ["evaluate", str(model), str(store), "--out", "{out}"]),
    ]
    for i, (name, argv) in enumerate(commands):
        cells = {}
        for runner in runners:
            cache = work / f"cache-{runner.name}-{i}"
            shutil.rmtree(cache, ignore_errors=True)
            times = []
            for phase in ("cold", "warm"):
                out = work / f"out-{runner.name}-{i}-{phase}"
                shutil.rmtree(out, ignore_errors=True)
                times.append(runner.run([a.replace("{out}", str(out)) for a in argv], cache))
            cells[runner.name] = (times[0][0], times[1][0], times[1][1])
        print(_row(name, cells, [r.name for r in runners]), flush=True)


def _row(name: str, cells: dict, names: list[str]) -> str:
    line = f"{name:<34}"
    for runner in names:
        cold, warm, peak = cells[runner]
        line += f"{cold:>15.1f}{warm:>8.1f}{peak:>8.0f}"
    return line


def rate_rows(work: Path, runners: list[Runner], many: Path, models: dict[str, Path], files: int) -> None:
    """Tracks/s of ``mgc extract`` and of ``mgc predict --out`` (each tree, each network) on the same files."""
    store = work / "rate-store"
    shutil.rmtree(store, ignore_errors=True)
    extract_s, _ = runners[-1].run(["extract", str(many), str(store)])
    extract_rate = files / extract_s
    print(f"\n## Many files: {files} clips of 30 s, tracks/s of the whole command (target: predict >= 0.7x extract)")
    print(f"{'command':<34}{'tracks/s':>10}{'peak MB':>9}{'x extract':>11}")
    print(f"{'extract (ours)':<34}{extract_rate:>10.1f}{'':>9}{1.0:>11.2f}", flush=True)
    for label, model in models.items():
        for runner in runners:
            out = work / f"rate-{runner.name}-{label}.jsonl"
            out.unlink(missing_ok=True)
            cache = work / f"cache-{runner.name}-0"  # warm from the one-file predict
            wall, peak = runner.run(["predict", str(model), str(many), "--out", str(out)], cache)
            rate = files / wall
            name = f"predict {label} CNN ({runner.name})"
            print(f"{name:<34}{rate:>10.1f}{peak:>9.0f}{rate / extract_rate:>11.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="HEAD", help="Git revision of today's code (default: HEAD).")
    parser.add_argument("--files", type=int, default=400, help="Files of the rate comparison.")
    parser.add_argument("--similar-model", default="musicnn-msd", help="Model of similar's EMB: cnn or a built-in.")
    parser.add_argument("--default-network", action="store_true", help="Also the rate of the default network.")
    parser.add_argument("--skip-baseline", action="store_true", help="Only this tree.")
    parser.add_argument("--quick", action="store_true", help="40 files, the small CNN for similar's EMB.")
    parser.add_argument("--workdir", type=Path, default=None, help="Keep the files here (default: a temp folder).")
    args = parser.parse_args()
    if args.quick:
        args.files, args.similar_model = min(args.files, 40), "cnn"
    with tempfile.TemporaryDirectory(prefix="mgc-startup-") as temp:
        work = (args.workdir or Path(temp)).resolve()
        work.mkdir(parents=True, exist_ok=True)
        ours = Runner("ours", ROOT, work)
        runners, label = [ours], None
        if not args.skip_baseline:
            rev = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=ROOT, capture_output=True)
            label = rev.stdout.decode().strip() or args.baseline
            runners.insert(0, Runner("baseline", baseline_tree(args.baseline, work), work))
        for runner in runners:
            runner.check()
        started = time.perf_counter()
        one_wav, one_ogg, many = make_inputs(work, args.files, ours)
        store, model, models = make_models(work, ours, args.default_network)
        print(f"(inputs and models made in {time.perf_counter() - started:.0f} s; {os.cpu_count()} cores)\n")
        base = f"baseline = {args.baseline} ({label})" if label else "no baseline"
        print(f"## One file: whole command, wall s cold / warm compilation cache, peak MB warm; {base}")
        print(f"{'command':<34}" + "".join(f"{r.name + ' cold':>15}{'warm':>8}{'MB':>8}" for r in runners))
        one_file_rows(args, work, runners, one_wav, one_ogg, store, model)
        rate_rows(work, runners, many, models, args.files)


if __name__ == "__main__":
    main()
