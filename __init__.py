"""mgc: music genre classification at corpus scale.

The installed package maps the repository's top-level folders onto one import
name: ``mgc.kernels`` (Numba feature kernels), ``mgc.engine`` (the batch feature
engine and its stores), ``mgc.models`` (JAX/Flax models and the tasks on them)
and ``mgc.cli`` (the ``mgc`` command). Importing ``mgc`` loads none of them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
