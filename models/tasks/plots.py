"""PNG figures: the confusion matrix and the training curves (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mgc.engine import atomic

__all__ = ["confusion_png", "curves_png"]


def confusion_png(
    confusion: Sequence[Sequence[int]], label_names: Sequence[str], path: str | Path, *, title: str = ""
) -> Path:
    """Row-normalised confusion matrix with counts in the cells; rows are true labels."""
    counts = np.asarray(confusion, np.int64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 2.0 + 0.6 * len(label_names)
    fig = Figure(figsize=(size + 1.5, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of true label")
    ticks = np.arange(len(label_names))
    ax.set_xticks(ticks, label_names, rotation=45, ha="right")
    ax.set_yticks(ticks, label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    return atomic.write_atomic(path, lambda temp: fig.savefig(temp, dpi=110, format="png"))


def curves_png(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Training loss and train / validation accuracy per epoch, from ``metrics.jsonl`` rows."""
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in rows]
    loss_ax.plot(epochs, [r["train_loss"] for r in rows], marker="o", label="train loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.legend()
    acc_ax.plot(epochs, [r["train_accuracy"] for r in rows], marker="o", label="train (crops, augmented)")
    val = [(r["epoch"], r["val_accuracy"]) for r in rows if r.get("val_accuracy") is not None]
    if val:
        acc_ax.plot(*zip(*val), marker="o", label="validation (tracks)")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy")
    acc_ax.set_ylim(0, 1)
    acc_ax.legend()
    fig.tight_layout()
    return atomic.write_atomic(path, lambda temp: fig.savefig(temp, dpi=110, format="png"))
