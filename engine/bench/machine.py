"""What ``mgc bench`` records of the machine: CPU, cores, BLAS, library versions, thread settings."""

from __future__ import annotations

import importlib.metadata
import os
import platform

from .timing import THREAD_VARIABLES

__all__ = ["LIBRARIES", "cpu_model", "describe", "usable_cores"]

#: Distributions whose versions are recorded when installed.
LIBRARIES = (
    "mgc",
    "numpy",
    "numba",
    "rocket-fft",
    "scipy",
    "soxr",
    "soundfile",
    "av",
    "h5py",
    "librosa",
    "torch",
    "torchaudio",
    "librosax",
    "jax",
    "nnAudio",
    "essentia",
    "audioflux",
    "kaldi-native-fbank",
    "ducc0",
)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its affinity where the system says, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _blas() -> list[str]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["unknown (threadpoolctl not installed)"]
    import numpy  # noqa: F401 - its BLAS is what threadpoolctl finds

    return [
        f"{pool.get('internal_api', '?')} {pool.get('version') or ''} {pool.get('architecture') or ''}".strip()
        for pool in threadpool_info()
        if pool.get("user_api") == "blas"
    ] or ["none found"]


def describe() -> dict:
    """The machine as JSON-able values.

    Returns
    -------
    dict
        ``cpu``, ``cores`` (usable), ``logical_cpus``, ``system``, ``python``, ``blas`` (list),
        ``libraries`` (name -> version, installed ones), ``threads`` (the thread variables set).
    """
    try:
        import soundfile

        libsndfile = soundfile.__libsndfile_version__
    except (ImportError, AttributeError, OSError):
        libsndfile = None
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "logical_cpus": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "blas": _blas(),
        "libsndfile": libsndfile,
        "libraries": _versions(),
        "threads": {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
    }
