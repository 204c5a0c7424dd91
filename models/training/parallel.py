"""Data parallelism over local devices: ``jax.jit`` over a mesh, or ``jax.pmap``.

Both wrap the same pure :func:`mgc.models.nets.steps.train_step`; they differ only in
how the state and the global batch are laid out on devices:

- ``jit`` (default, the recommended JAX path): the state is replicated and the
  batch is one global array sharded along the ``data`` mesh axis. XLA inserts
  the gradient all-reduce, and BatchNorm statistics are global because the
  network sees the whole batch as one array.
- ``pmap``: the state carries a leading device axis; the batch is reshaped to
  ``(n_devices, batch / n_devices, ...)``; gradients, loss and BatchNorm
  statistics are averaged with ``lax.pmean`` over the ``data`` axis.

Multi-process (after ``jax.distributed.initialize``, see
:mod:`mgc.models.training.distributed`): the ``jit`` mesh spans every process's
devices (``jax.devices()``), ordered by process, so the data-parallel ranks of a
process are consecutive; each process feeds the part of the global batch of its
own ranks, and :meth:`JitParallel.put_batch` assembles the global array with
``jax.make_array_from_process_local_data``. ``pmap`` runs over each process's
local devices, its ``pmean`` spanning all processes.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mgc.models.config import ModelConfig
from mgc.models.errors import ModelError
from mgc.models.nets.steps import make_graphdef, train_step

__all__ = ["make_parallel", "JitParallel", "PmapParallel", "AXIS", "local_ranks"]

AXIS = "data"


class JitParallel:
    """``jax.jit`` of the train step over a 1-D device mesh with a ``data`` axis."""

    def __init__(
        self,
        model_config: ModelConfig,
        tx: optax.GradientTransformation,
        devices: Sequence[Any],
        precision: str = "float32",
    ):
        self.devices = list(devices)
        self.mesh = Mesh(np.array(self.devices), (AXIS,))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.sharded = NamedSharding(self.mesh, PartitionSpec(AXIS))
        step = functools.partial(train_step, graphdef=make_graphdef(model_config, precision=precision), tx=tx)
        self._step = jax.jit(step, out_shardings=(self.replicated, self.replicated), donate_argnums=0)

    def put_state(self, state: Any) -> Any:
        return jax.device_put(state, self.replicated)

    def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Place a process-local batch as one global array sharded along ``data``."""
        return {k: jax.make_array_from_process_local_data(self.sharded, v) for k, v in batch.items()}

    def step(self, state: Any, batch: dict[str, jax.Array]) -> tuple[Any, dict[str, jax.Array]]:
        return self._step(state, batch)

    @staticmethod
    def scalar(value: jax.Array) -> float:
        """A replicated scalar as a float (this process's copy: the array spans other processes)."""
        return float(np.asarray(value.addressable_data(0)))

    def get_state(self, state: Any) -> Any:
        """The replicated state as host numpy arrays (this process's copy)."""
        return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), state)


class PmapParallel:
    """``jax.pmap`` of the train step with ``lax.pmean`` of gradients and BatchNorm statistics."""

    def __init__(
        self,
        model_config: ModelConfig,
        tx: optax.GradientTransformation,
        devices: Sequence[Any],
        precision: str = "float32",
    ):
        self.devices = list(devices)
        step = functools.partial(
            train_step,
            graphdef=make_graphdef(model_config, axis_name=AXIS, precision=precision),
            tx=tx,
            axis_name=AXIS,
        )
        self._step = jax.pmap(step, axis_name=AXIS, devices=self.devices, donate_argnums=0)
        self._to_devices = jax.pmap(lambda tree: tree, devices=self.devices)

    def put_state(self, state: Any) -> Any:
        n = len(self.devices)
        stacked = jax.tree.map(
            lambda x: np.ascontiguousarray(np.broadcast_to(np.asarray(x), (n,) + np.shape(x))), state
        )
        # An identity pmap leaves one copy per device, laid out as the step expects.
        return self._to_devices(stacked)

    def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(self.devices)
        return {k: v.reshape((n, v.shape[0] // n) + v.shape[1:]) for k, v in batch.items()}

    def step(self, state: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, jax.Array]]:
        state, metrics = self._step(state, batch)
        return state, jax.tree.map(lambda m: m[0], metrics)

    @staticmethod
    def scalar(value: Any) -> float:
        return float(np.asarray(value))

    def get_state(self, state: Any) -> Any:
        return jax.tree.map(lambda x: np.asarray(x[0]), jax.device_get(state))


def make_parallel(
    kind: str,
    model_config: ModelConfig,
    tx: optax.GradientTransformation,
    *,
    devices: Sequence[Any] | None = None,
    batch_size: int | None = None,
    precision: str = "float32",
):
    """The data-parallel runner ``kind`` (``"jit"`` or ``"pmap"``) over ``devices``.

    Default devices: every device of the run for ``jit`` (``jax.devices()``, all
    processes'), this process's for ``pmap`` (``jax.local_devices()``).

    ``precision="bfloat16"`` computes the network in bfloat16 (parameters,
    optimizer state and BatchNorm in float32): meant for GPUs and TPUs, where it
    halves activation memory and doubles matrix throughput. On a CPU it is
    correct but not faster (XLA's CPU backend emulates much of bfloat16).
    """
    if devices is None:
        devices = jax.devices() if kind == "jit" else jax.local_devices()
    devices = list(devices)
    n = len(devices) * (jax.process_count() if kind == "pmap" else 1)
    if batch_size is not None and batch_size % n != 0:
        raise ModelError(
            f"batch size {batch_size} must be a multiple of the {n} devices; pick e.g. {n * max(1, batch_size // n)}"
        )
    if kind == "jit":
        return JitParallel(model_config, tx, devices, precision)
    if kind == "pmap":
        return PmapParallel(model_config, tx, devices, precision)
    raise ModelError(f"unknown parallel mode {kind!r}; use 'jit' or 'pmap'")


def local_ranks(runner: JitParallel | PmapParallel) -> tuple[int, list[int]]:
    """``(ranks, this process's ranks)``: data-parallel ranks of the run and the consecutive ones fed here.

    A ``jit`` rank is a position in the mesh; a ``pmap`` rank is ``process_index *
    local devices + position``.
    """
    if isinstance(runner, PmapParallel):
        n = len(runner.devices)
        return n * jax.process_count(), [jax.process_index() * n + i for i in range(n)]
    here = jax.process_index()
    mine = [i for i, device in enumerate(runner.devices) if device.process_index == here]
    if not mine or mine != list(range(mine[0], mine[0] + len(mine))):
        raise ModelError(f"the devices of process {here} are not consecutive in the mesh: {runner.devices}")
    return len(runner.devices), mine
