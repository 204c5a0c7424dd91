"""The exception raised for every bad argument a user can pass to a kernel."""

from __future__ import annotations

__all__ = ["ParameterError"]


class ParameterError(ValueError):
    """A kernel argument is invalid; the message names the argument and its value."""
