"""The root of every error mgc raises on purpose, and the kernels' own error.

``MgcError`` lives in the lowest layer so that every package (kernels, engine,
engine.synth, models) can derive its errors from it; the CLI catches it once
and prints the message without a traceback.
"""

from __future__ import annotations

__all__ = ["MgcError", "ParameterError"]


class MgcError(Exception):
    """Base class of every error a user can cause: the message says what was wrong and what to do."""


class ParameterError(MgcError, ValueError):
    """A kernel argument is invalid; the message names the argument and its value."""
