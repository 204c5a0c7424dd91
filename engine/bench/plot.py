"""``mgc bench --plot``: the result's rows as horizontal bars of times real time per core."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import EngineError

__all__ = ["SECTION_TITLES", "check_plot_path", "plot"]

#: Section -> heading, in the order they are drawn and printed.
SECTION_TITLES = {
    "decode": "decode alone, resample alone (one thread)",
    "kernels": "mgc's kernels (one thread)",
    "peers": "log-mel and MFCC by each peer (one thread)",
    "limits": "limits: float32 real FFTs of the same frames, a copy",
    "extract": "extract end to end, whole machine (pool start included unless started)",
}


def check_plot_path(path: str | Path) -> Path:
    """``path`` as a Path when it may take a new plot (call it before measuring, so nothing is measured in vain).

    Raises
    ------
    EngineError
        When ``path`` exists (mgc writes only files it creates) or does not end in ``.png``.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise EngineError(f"--plot writes a PNG: give a name ending in .png, got {str(path)!r}")
    if path.exists():
        raise EngineError(f"{path} exists; mgc writes only files it creates: give another --plot name or remove it")
    return path


def plot(result: dict, path: str | Path) -> Path:
    """Draw :func:`mgc.engine.bench.bench`'s ``result`` as a PNG at ``path`` (a new file).

    Raises
    ------
    EngineError
        When ``path`` exists (mgc writes only files it creates) or does not end in ``.png``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = check_plot_path(path)
    rows = [r for section in SECTION_TITLES for r in result["rows"] if r["section"] == section and r.get("per_core")]
    if not rows:
        raise EngineError("no row was measured: nothing to plot")
    colours = dict(zip(SECTION_TITLES, ("#4c72b0", "#dd8452", "#55a868", "#8172b3", "#c44e52")))
    figure, axes = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.6))
    names = [r["name"] for r in rows]
    values = [r["per_core"]["x_realtime"] for r in rows]
    axes.barh(range(len(rows)), values, color=[colours[r["section"]] for r in rows])
    axes.set_yticks(range(len(rows)), names, fontsize=8)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("times real time, per core (log scale)")
    machine = result["machine"]
    axes.set_title(f"mgc bench: {machine['cpu']}, {machine['cores']} cores", fontsize=10)
    for section, colour in colours.items():
        if any(r["section"] == section for r in rows):
            axes.bar(0, 0, color=colour, label=SECTION_TITLES[section])
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial.png")
    try:
        figure.savefig(partial, dpi=120)
        try:
            os.link(partial, path)  # fails when the name appeared meanwhile: never replaces a file
        except FileExistsError:
            raise EngineError(f"{path} appeared while the plot was drawn; it was left as it is") from None
        except OSError:  # a file system without hard links
            if path.exists():
                raise EngineError(f"{path} appeared while the plot was drawn; it was left as it is") from None
            os.replace(partial, path)
    finally:
        plt.close(figure)
        partial.unlink(missing_ok=True)
    return path
