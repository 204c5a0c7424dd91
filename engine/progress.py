"""The one progress protocol of mgc's library: plain events to a callback.

Long work (synthesising a corpus, extracting a store, training, predicting)
accepts ``progress=callable`` and calls it with :class:`ProgressEvent` values.
The library never draws anything: the CLI turns events into rich progress bars
and status lines, a script may log them, a test may collect them in a list.

A task's events are one ``start``, any number of ``update`` and one ``end``;
``stage`` events name the step a multi-step run (the demo) is entering.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ProgressCallback", "ProgressEvent", "Reporter", "ThrottledReporter"]


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report.

    Attributes
    ----------
    task : str
        What is progressing: ``"synth"``, ``"extract"``, ``"train"``, ``"demo"``...
    kind : str
        ``"start"``, ``"update"``, ``"end"`` or ``"stage"``.
    done : int
        Units finished so far (tracks, files, steps), counted from 0 at the
        start of the task, or from the units already finished when resuming.
    total : int or None
        Units in the whole task, when known.
    unit : str
        What ``done`` and ``total`` count (``"tracks"``, ``"steps"``, ``"files"``).
    info : mapping
        Task-specific numbers (failures, rates, loss...), documented by the
        function that emits them.
    message : str
        For ``stage`` events, what the stage does, for a person.
    """

    task: str
    kind: str
    done: int = 0
    total: int | None = None
    unit: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


class Reporter:
    """Emits the events of one task to an optional callback (a no-op without one)."""

    def __init__(self, callback: ProgressCallback | None, task: str, unit: str = "") -> None:
        self.callback, self.task, self.unit = callback, task, unit

    def __call__(self, kind: str, done: int = 0, total: int | None = None, message: str = "", **info: Any) -> None:
        if self.callback is not None:
            self.callback(ProgressEvent(self.task, kind, int(done), total, self.unit, info, message))


class ThrottledReporter(Reporter):
    """A :class:`Reporter` that spaces ``update`` events at least ``interval`` seconds apart.

    Long loops call it once per unit (a track, a query block); the callback sees
    an ``update`` at most every ``interval`` seconds, so that a bar costs nothing
    next to the work. ``start``, ``end`` and ``stage`` events always go out, and
    the ``end`` carries the final count.

    Parameters
    ----------
    callback : callable or None
        Receives the :class:`ProgressEvent` values (nothing is done without one).
    task, unit : str
        As :class:`ProgressEvent`.
    interval : float
        Least seconds between two ``update`` events.
    """

    def __init__(self, callback: ProgressCallback | None, task: str, unit: str = "", interval: float = 0.1) -> None:
        super().__init__(callback, task, unit)
        self.interval, self._last = interval, float("-inf")

    def __call__(self, kind: str, done: int = 0, total: int | None = None, message: str = "", **info: Any) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if kind == "update" and now - self._last < self.interval:
            return
        self._last = now
        super().__call__(kind, done, total, message, **info)
