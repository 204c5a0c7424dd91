"""Which devices JAX uses here, why, and the choices that follow from them (``mgc devices``).

:func:`describe` reports JAX's backend, every device, the versions of jax, jaxlib and
the accelerator plugin, and whether an accelerator is visible to the system while JAX
fell back to the CPU (a CUDA install JAX cannot use gives a silent CPU run otherwise).
:func:`resolve_precision` and :func:`inference_batch` turn ``auto`` settings into the
backend's choice; training prints them at its start and writes them into the model folder.
"""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from mgc.models.config import INFERENCE_BATCH

__all__ = [
    "ACCELERATORS",
    "INFERENCE_BATCH",
    "accelerator_visible",
    "describe",
    "fallback_warning",
    "inference_batch",
    "resolve_precision",
]

#: JAX platforms that are accelerators (bfloat16 is native there).
ACCELERATORS = ("gpu", "cuda", "rocm", "tpu")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def accelerator_visible(root: str | Path = "/") -> str | None:
    """What accelerator the system shows, whatever JAX uses: a phrase naming the evidence, or None.

    ``root`` is the filesystem root to look under (tests point it at a folder of their own).
    """
    root = Path(root)
    nvidia = root / "proc" / "driver" / "nvidia" / "version"
    if nvidia.is_file():
        first = nvidia.read_text(errors="replace").splitlines()[:1]
        return "an NVIDIA driver (" + (first[0].strip()[:80] if first else "/proc/driver/nvidia/version") + ")"
    if any((root / "dev").glob("nvidia[0-9]*")):
        return "an NVIDIA device (/dev/nvidia*)"
    if str(root) == "/" and shutil.which("nvidia-smi"):
        return "nvidia-smi on PATH"
    if any((root / "dev").glob("accel[0-9]*")):
        return "a TPU device (/dev/accel*)"
    if (root / "dev" / "kfd").exists():
        return "an AMD GPU (/dev/kfd)"
    return None


def is_accelerator(backend: str) -> bool:
    return backend.lower() in ACCELERATORS


def resolve_precision(precision: str, backend: str | None = None) -> str:
    """``auto`` -> ``bfloat16`` on a GPU or TPU, ``float32`` on a CPU; any other value as it is."""
    if precision != "auto":
        return precision
    if backend is None:
        import jax

        backend = jax.default_backend()
    return "bfloat16" if is_accelerator(backend) else "float32"


def inference_batch(batch_size: int | None, backend: str | None = None) -> int:
    """``batch_size``, or the backend's default (:data:`INFERENCE_BATCH`) when it is None."""
    if batch_size is not None:
        return batch_size
    if backend is None:
        import jax

        backend = jax.default_backend()
    return INFERENCE_BATCH["accelerator" if is_accelerator(backend) else "cpu"]


def describe(root: str | Path = "/") -> dict[str, Any]:
    """JAX's backend and devices, versions, and a warning when an accelerator is visible but unused.

    Returns
    -------
    dict
        ``backend``, ``devices`` (``id``, ``kind``, ``platform``, ``process``, ``memory_bytes``
        when the device reports it), ``process_count``, ``versions`` (jax, jaxlib and any
        installed jax plugin or libtpu), ``accelerator_visible`` (the evidence, or None),
        ``precision`` and ``inference_batch`` (what ``auto`` gives here) and ``warning``
        (None when all is well).
    """
    import jax

    backend = jax.default_backend()
    devices = []
    for device in jax.devices():
        entry = {"id": device.id, "kind": device.device_kind, "platform": device.platform,
                 "process": device.process_index}  # fmt: skip
        try:
            stats = device.memory_stats() or {}
        except Exception:  # not every backend reports memory
            stats = {}
        if "bytes_limit" in stats:
            entry["memory_bytes"] = int(stats["bytes_limit"])
        devices.append(entry)
    versions = {name: _version(name) for name in ("jax", "jaxlib")}
    for name in ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-rocm-plugin", "libtpu"):
        if (found := _version(name)) is not None:
            versions[name] = found
    seen = accelerator_visible(root)
    return {
        "backend": backend,
        "devices": devices,
        "process_count": jax.process_count(),
        "versions": versions,
        "accelerator_visible": seen,
        "precision": resolve_precision("auto", backend),
        "inference_batch": inference_batch(None, backend),
        "warning": fallback_warning(backend, root),
    }


def fallback_warning(backend: str | None = None, root: str | Path = "/") -> str | None:
    """Why a run on the CPU may not be what the user wants: an accelerator is visible but JAX does not use it."""
    if backend is None:
        import jax

        backend = jax.default_backend()
    seen = accelerator_visible(root)
    if not seen or is_accelerator(backend):
        return None
    return (
        f"the system shows {seen} but JAX runs on the CPU: install JAX's accelerator wheels "
        "(pip install 'mgc[cuda12]' for CUDA 12, 'mgc[cuda13]' for CUDA 13, 'mgc[tpu]' on a TPU VM; "
        "see docs/training.md) or check that JAX_PLATFORMS does not say cpu"
    )
