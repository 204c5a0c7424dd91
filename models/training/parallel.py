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

Multi-host: after ``jax.distributed.initialize()``, each process feeds its own
part of the global batch; :meth:`JitParallel.put_batch` assembles the global
array with ``jax.make_array_from_process_local_data``.
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

__all__ = ["make_parallel", "JitParallel", "PmapParallel", "AXIS"]

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

    def get_state(self, state: Any) -> Any:
        """The state as host numpy arrays (one copy)."""
        return jax.tree.map(np.asarray, jax.device_get(state))


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
    """The data-parallel runner ``kind`` (``"jit"`` or ``"pmap"``) over ``devices`` (default: all local).

    ``precision="bfloat16"`` computes the network in bfloat16 (parameters,
    optimizer state and BatchNorm in float32): meant for GPUs and TPUs, where it
    halves activation memory and doubles matrix throughput. On a CPU it is
    correct but not faster (XLA's CPU backend emulates much of bfloat16).
    """
    devices = list(devices) if devices is not None else jax.local_devices()
    if batch_size is not None and batch_size % (len(devices) * jax.process_count()) != 0:
        raise ModelError(
            f"batch size {batch_size} must be a multiple of the {len(devices) * jax.process_count()} devices; "
            f"pick e.g. {len(devices) * jax.process_count() * max(1, batch_size // len(devices))}"
        )
    if kind == "jit":
        return JitParallel(model_config, tx, devices, precision)
    if kind == "pmap":
        return PmapParallel(model_config, tx, devices, precision)
    raise ModelError(f"unknown parallel mode {kind!r}; use 'jit' or 'pmap'")
