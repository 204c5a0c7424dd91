"""Progress reporting of a training run: silent, or a rich progress bar."""

from __future__ import annotations

from typing import Any

__all__ = ["Reporter", "RichReporter"]


class Reporter:
    """Receives training events; the base class ignores them (library default)."""

    def start(self, total_steps: int, done_steps: int, info: dict[str, Any]) -> None:
        """Called once before the first step (``done_steps`` > 0 when resuming)."""

    def step(self, step: int, info: dict[str, Any]) -> None:
        """After every step: ``epoch``, ``loss``, ``examples_per_s`` and the last ``val_accuracy``."""

    def epoch(self, row: dict[str, Any]) -> None:
        """After every epoch with the metrics row written to ``metrics.jsonl``."""

    def end(self, summary: dict[str, Any]) -> None:
        """Once, after the last step."""


class RichReporter(Reporter):
    """A rich progress bar: epoch, step, examples/s, loss, validation accuracy."""

    def __init__(self, console: Any = None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(), console=console, transient=False,
        )
        self.task = None
        self.val = "-"
        self.epochs = 0

    def start(self, total_steps: int, done_steps: int, info: dict[str, Any]) -> None:
        self.epochs = info.get("epochs", 0)
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_steps, completed=done_steps, status="compiling")

    def step(self, step: int, info: dict[str, Any]) -> None:
        if info.get("val_accuracy") is not None:
            self.val = f"{info['val_accuracy']:.3f}"
        status = (f"epoch {info['epoch'] + 1}/{self.epochs}  {info['examples_per_s']:.0f} ex/s  "
                  f"loss {info['loss']:.4f}  val acc {self.val}")
        self.progress.update(self.task, completed=step, status=status)

    def epoch(self, row: dict[str, Any]) -> None:
        if row.get("val_accuracy") is not None:
            self.val = f"{row['val_accuracy']:.3f}"

    def end(self, summary: dict[str, Any]) -> None:
        self.progress.stop()
