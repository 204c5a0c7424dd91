"""A head's layers as a pure function: logits of standardised vectors under a linear layer or a one-hidden-layer MLP.

Written once for NumPy (prediction) and JAX (training, fine-tuning): the same
expression traces under both.
"""

from __future__ import annotations

__all__ = ["head_logits", "head_penalty"]


def head_logits(params: dict, z):
    """Logits of standardised vectors ``z`` ``(n, dim)`` under head ``params`` (works on NumPy and JAX arrays).

    ``params``: ``weights``, ``bias`` and, for an MLP, ``hidden_weights``, ``hidden_bias``.
    """
    if "hidden_weights" in params:
        z = z @ params["hidden_weights"] + params["hidden_bias"][None, :]
        z = z * (z > 0)  # ReLU that NumPy and JAX both trace
    return z @ params["weights"] + params["bias"][None, :]


def head_penalty(params: dict):
    """``0.5 * |W|^2`` over the head's weight matrices (biases are not penalised)."""
    return 0.5 * sum((params[k] ** 2).sum() for k in ("weights", "hidden_weights") if k in params)
