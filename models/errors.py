"""The model layer's one error type."""

from mgc.engine import MgcError

__all__ = ["ModelError"]


class ModelError(MgcError, ValueError):
    """A problem a user can cause or fix: bad settings, a missing model, a spec mismatch."""
