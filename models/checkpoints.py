"""Orbax checkpoints of a CNN's training run (loaded back by :class:`mgc.models.kinds.cnn.CnnModel`).

The model folder's files are described in :mod:`mgc.models.folder`. Each
checkpoint has two items: ``state`` (params, BatchNorm statistics, optimizer
state, step and RNG key, as a pytree of arrays) and ``meta`` (JSON: the input
position, normalisation, label names, the store's FeatureSpec, the model and
train configs, the best validation score). Nothing is pickled.
Checkpoints are read by each process alone and written by all (see :class:`Checkpoints`).
They are written synchronously; orbax writes each under a temporary
name and renames it when complete, so a killed run leaves the previous one intact.
A training holds the model folder's lock exclusively and a reader holds it
shared while it loads (see :mod:`mgc.models.folder`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from mgc.models.errors import ModelError
from mgc.models.folder import ModelFolder, incomplete

__all__ = ["Checkpoints", "DAMAGED"]

#: What orbax raises for a checkpoint it cannot read: a truncated or missing file (OSError, ValueError from
#: tensorstore, JSONDecodeError), an item it does not find (KeyError), a tree of another shape (TypeError).
DAMAGED = (OSError, ValueError, KeyError, TypeError)

# orbax logs every save at INFO through absl; the progress bar is the user's log.
logging.getLogger("absl").setLevel(logging.WARNING)


class _QuietReadOnly(logging.Filter):
    """Drop orbax's warning that a read-only manager's folder is read-only (what mgc asked for)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Given directory is read only")


logging.getLogger("absl").addFilter(_QuietReadOnly())


class Checkpoints:
    """The ``latest`` and ``best`` checkpoints of one model folder: read by this process alone, written by all.

    Reading (:meth:`step`, :meth:`meta`, :meth:`restore`) is this process's own business: each read opens
    a read-only orbax manager whose only active process is this one, so it runs no collective and never
    creates a folder. In a multi-process run a read may therefore fail on one process and not another
    without leaving the others waiting in a barrier (see
    :func:`mgc.models.training.distributed.together`, whose blocks must run no collective).

    Writing (:meth:`save`) is every process's: orbax's managers for writing are made at the first save
    (their creation is a barrier of all processes) and each save is one, so every process must call
    :meth:`save` with the same steps in the same order.
    """

    def __init__(self, model_dir: str | Path):
        self.folder = ModelFolder(Path(model_dir).resolve())
        self.root = Path(model_dir)
        self._writers: dict[str, ocp.CheckpointManager] = {}

    def _reader(self, which: str) -> ocp.CheckpointManager:
        me = jax.process_index()
        options = ocp.CheckpointManagerOptions(
            read_only=True,
            create=False,
            save_interval_steps=0,  # what read_only sets anyway, without orbax's warning that it did
            max_to_keep=None,
            multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me}),
        )
        return ocp.CheckpointManager(self.folder.checkpoint_dir(which), options=options)

    def _writer(self, which: str) -> ocp.CheckpointManager:
        if which not in self._writers:
            options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, enable_async_checkpointing=False)
            self._writers[which] = ocp.CheckpointManager(self.folder.checkpoint_dir(which), options=options)
        return self._writers[which]

    def step(self, which: str = "latest") -> int | None:
        """The step of the complete checkpoint ``which``, or None when there is none."""
        if not self.folder.checkpoint_dir(which).is_dir():
            return None
        return self._reader(which).latest_step()

    def save(self, which: str, state: Any, meta: dict[str, Any]) -> None:
        """Save host ``state`` (numpy pytree) and JSON ``meta`` as checkpoint ``which`` (every process: see above)."""
        manager, step = self._writer(which), int(state["step"])
        if manager.latest_step() == step:
            return
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
        manager.wait_until_finished()

    def meta(self, which: str = "latest") -> dict[str, Any]:
        """The JSON ``meta`` item of checkpoint ``which``."""
        step = self.step(which)
        if step is None:
            raise ModelError(f"no {which} checkpoint in {self.folder.checkpoint_dir(which)}")
        manager = self._reader(which)
        try:
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        except DAMAGED as error:
            raise self.damaged(which, step, error) from None
        if not isinstance(meta, dict):
            raise self.damaged(which, step, "its meta item is not a JSON object")
        return meta

    def restore(self, which: str, template: Any) -> tuple[Any, dict[str, Any]]:
        """State shaped like ``template`` and the meta of checkpoint ``which``."""
        step = self.step(which)
        if step is None:
            raise ModelError(f"no {which} checkpoint in {self.folder.checkpoint_dir(which)}")
        manager = self._reader(which)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        try:
            restored = manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
            )
        except DAMAGED as error:
            raise self.damaged(which, step, error) from None
        return jax.tree.map(np.asarray, restored.state), restored.meta

    def damaged(self, which: str, step: int, error: Any) -> ModelError:
        """The one line for a checkpoint orbax cannot read: which one, orbax's first line, how to train again."""
        _quiet_late_callbacks()
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        reason = reason if len(reason) <= 120 else reason[:117] + "..."
        folder = ModelFolder(self.root).checkpoint_dir(which)
        return incomplete(self.root, f"the {which} checkpoint {folder / str(step)} is damaged ({reason})")


def _quiet_late_callbacks() -> None:
    """Drop the "Event loop is closed" errors of reads still in flight when a failed restore closed its loop.

    tensorstore completes the other reads of a failed restore later, in its own threads, and their callbacks
    into orbax's closed event loop reach ``sys.unraisablehook``, which would print a traceback per read
    after the one clear error. Installed once, on the first failed restore; every other error passes on.
    """
    previous = sys.unraisablehook
    if getattr(previous, "mgc_quiet", False):
        return

    def hook(unraisable: Any) -> None:
        value = unraisable.exc_value
        if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
            return
        previous(unraisable)

    hook.mgc_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook
