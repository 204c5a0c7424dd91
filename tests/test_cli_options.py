"""The CLI's options: ``mgc --version``, choices and defaults taken from the library, and ``mgc train``
refusing an option given for the other kind of model (in one line, exit 2, before any work)."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import mgc
import mgc.cli
from mgc.cli import BACKBONE_ONLY, CNN_ONLY, HEAD_ONLY, app
from mgc.models import config

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
COMMANDS = typer.main.get_command(app).commands
#: train's parameters that every kind of model takes (the rest are CNN_ONLY or HEAD_ONLY).
COMMON = {"store", "out", "seed", "split_file", "model_kind", "backbone", "json_out"}


def _train(tmp_path: Path, *args: str):
    # The store does not exist: a refusal must come before anything reads it.
    return runner.invoke(app, ["train", str(tmp_path / "no-store"), "--out", str(tmp_path / "m"), *args])


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def _option(command: str, name: str):
    return next(p for p in COMMANDS[command].params if p.name == name)


def _choices(command: str, name: str) -> tuple:
    """The choices of a parameter of ``mgc COMMAND``: the values of its ``Literal`` annotation."""
    hint = typing.get_type_hints(getattr(mgc.cli, f"{command}_command"), include_extras=True)[name]
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return typing.get_args(hint)


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == mgc.__version__
    done = subprocess.run([sys.executable, "-m", "mgc.cli", "--version"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == mgc.__version__


CNN_ARGS = [
    ["--epochs", "3"],
    ["--epochs", str(config.TrainConfig.epochs)],  # the default value, but given
    ["--steps", "5"],
    ["--crops-per-track", "2"],
    ["--epoch-examples", "64"],
    ["--precision", "bfloat16"],
    ["--memory-limit-mb", "10"],
    ["--batch-size", "4"],
    ["--lr", "0.1"],
    ["--crop-seconds", "1"],
    ["--parallel", "pmap"],
    ["--resume"],
    ["--mixup", "0"],
    ["--checkpoint-every", "10"],
    ["--widths", "4,8"],
]


@pytest.mark.parametrize("kind", [["--model", "stats"], ["--backbone", "musicnn-msd"]], ids=["stats", "backbone"])
@pytest.mark.parametrize("args", CNN_ARGS, ids=lambda a: a[0])
def test_a_head_refuses_cnn_options(tmp_path, kind, args):
    result = _train(tmp_path, *kind, *args)
    assert result.exit_code == 2
    line = _error_line(result)
    assert line.startswith(f"error: {args[0]} does not apply to {' '.join(kind)} (a head on a featurizer's vectors)")
    assert "CNN-only options: --epochs, --steps" in line and "--widths" in line


HEAD_ARGS = [
    ["--head", "mlp"],
    ["--head", config.HeadConfig.head],  # the default value, but given
    ["--level", "track"],
    ["--patches", "4"],
    ["--hidden", "16"],
    ["--c", "0.5"],
    ["--max-iter", "10"],
    ["--fine-tune", "1"],
    ["--fine-tune-lr", "0.001"],
    ["--vectors", "cache"],
]


@pytest.mark.parametrize("kind", [[], ["--model", "cnn"]], ids=["default", "cnn"])
@pytest.mark.parametrize("args", HEAD_ARGS, ids=lambda a: a[0])
def test_the_cnn_refuses_head_options(tmp_path, kind, args):
    result = _train(tmp_path, *kind, *args)
    assert result.exit_code == 2
    line = _error_line(result)
    assert line.startswith(f"error: {args[0]} does not apply to the CNN (--model cnn)")
    assert "head-only options (--model stats and --backbone heads): --c, --level, --patches, --head, --hidden" in line


@pytest.mark.parametrize("args", [["--fine-tune", "1"], ["--fine-tune-lr", "0.001"]], ids=lambda a: a[0])
def test_the_stats_head_refuses_fine_tuning(tmp_path, args):
    result = _train(tmp_path, "--model", "stats", *args)
    assert result.exit_code == 2
    assert _error_line(result).startswith(f"error: {args[0]} does not apply to --model stats")


def test_model_and_backbone_together_are_refused(tmp_path):
    result = _train(tmp_path, "--model", "stats", "--backbone", "musicnn-msd")
    assert result.exit_code == 2 and "--model does not apply to --backbone musicnn-msd" in _error_line(result)


@pytest.mark.parametrize(
    "args",
    [[], ["--model", "stats"], ["--backbone", "musicnn-mtt"], ["--model", "stats", "--head", "mlp", "--seed", "3"]],
    ids=["cnn", "stats", "backbone", "stats-options"],
)
def test_defaults_and_options_of_the_kind_are_not_refused(tmp_path, args):
    result = _train(tmp_path, *args)
    assert result.exit_code == 2 and "no-store does not exist" in result.output
    assert "does not apply" not in result.output


def test_every_train_option_has_a_family():
    names = {p.name for p in COMMANDS["train"].params}
    assert names - COMMON == (CNN_ONLY | HEAD_ONLY) & names and not COMMON & (CNN_ONLY | HEAD_ONLY)
    assert not set(CNN_ONLY) & set(HEAD_ONLY) and set(BACKBONE_ONLY) <= set(HEAD_ONLY)


def test_choices_and_defaults_come_from_the_library():
    from mgc.engine import FeatureSpec
    from mgc.engine.schema import COMPRESSIONS, DEFAULT_COMPRESSION

    assert _choices("train", "backbone") == config.BACKBONES
    assert _choices("train", "head") == config.HEADS
    assert _choices("evaluate", "split") == config.EVAL_SPLITS
    assert _choices("embed", "index") == config.EMBED_INDEXES
    assert _choices("extract", "compression") == COMPRESSIONS
    assert _option("extract", "compression").default == DEFAULT_COMPRESSION
    assert _option("extract", "n_mels").default == FeatureSpec().n_mels
    head = config.HeadConfig()
    for name, field in [("head", "head"), ("hidden", "hidden"), ("c", "c"), ("max_iter", "max_iter")]:
        assert _option("train", name).default == getattr(head, field)
    assert _option("train", "fine_tune_epochs").default == head.fine_tune_epochs
    assert _choices("train", "model_kind") == config.MODEL_KINDS
    assert _choices("embed", "checkpoint") == _choices("evaluate", "checkpoint") == config.CHECKPOINTS
    from mgc.models.devices import INFERENCE_BATCH

    for command in ("predict", "embed"):  # unset: the backend's batch (models.devices.inference_batch)
        assert _option(command, "batch_size").default is None
        assert (
            f"(default: {INFERENCE_BATCH['cpu']} on a CPU, {INFERENCE_BATCH['accelerator']}"
            in _option(command, "batch_size").help
        )
    for name in ("epochs", "lr", "batch_size"):  # unset unless given, so that --resume checks only those
        assert _option("train", name).default is None
        assert f"(default: {getattr(config.TrainConfig, name)})" in _option("train", name).help


def test_shared_options_are_the_same_everywhere():
    for name, flags in [("out", {"--out", "-o"}), ("workers", {"--workers"}), ("json_out", {"--json"})]:
        found = [set(p.opts) for command in COMMANDS.values() for p in command.params if p.name == name]
        assert len(found) >= 3 and all(opts == flags for opts in found), (name, found)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_tells_the_truth(command):
    """Help as the text spells it: no markup eaten, flags as flags, arguments in capitals, models named."""
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "<bool>" not in text and "list[" not in text and "{" not in text.split("Usage:")[1].splitlines()[0]
    usage = text.split("Usage:")[1].splitlines()[0]
    for param in COMMANDS[command].params:
        if param.param_type_name == "argument":
            assert param.name.upper() in usage, usage
    if any(p.name == "scheduler" for p in COMMANDS[command].params):
        assert "pip install 'mgc[dask]'" in text
    if any(p.name == "model_dir" and p.param_type_name == "argument" for p in COMMANDS[command].params):
        assert all(name in text for name in config.BUILTIN_MODELS)


def test_a_range_is_checked_where_it_is_parsed_in_one_wording(tmp_path):
    """Every ranged option says "--NAME must be at least N, got V" before any work (the store does not exist)."""
    for args, line in [
        (["--epochs", "0"], "error: --epochs must be at least 1, got 0"),
        (["--batch-size", "0"], "error: --batch-size must be at least 1, got 0"),
        (["--lr", "0"], "error: --lr must be greater than 0, got 0.0"),
        (["--model", "stats", "--c", "0"], "error: --c must be greater than 0, got 0.0"),
        (["--model", "stats", "--hidden", "0"], "error: --hidden must be at least 1, got 0"),
    ]:
        result = _train(tmp_path, *args)
        assert result.exit_code == 2 and _error_line(result).startswith(line), (args, result.output)
