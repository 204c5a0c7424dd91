"""``mgc report``: a self-contained folder of figures and numbers about a store (and a model).

One pass over a seeded sample of the store's tracks (``sample`` tracks at most,
stratified by label) reads log-mel and MFCC through the store's streaming
reader; everything else comes from the track and failure tables, which the
store keeps as columns. Memory is bounded by the sample, not by the store.

Files, written atomically into ``out``::

    index.html              the figures with captions and the numbers behind them (no JavaScript)
    report.json             the same numbers, for scripts
    balance.png             tracks and hours per label
    durations.png           the duration distribution per label
    failures.png            failed files by kind (when there are any)
    mean_spectrum.png       mean log-mel per label, with the spread across the sampled tracks
    examples.png            one example log-mel and MFCC image per label (first 30 s)
    map.png                 a 2-D PCA map of per-track log-mel statistics, coloured by label
    model_f1.png            with a model: per-class F1 of its evaluation (confusion and curves beside it)
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mgc.engine import ProgressReporter, atomic
from mgc.models.config import REPORT_SAMPLE
from mgc.models.errors import ModelError
from mgc.models.folder import OUTPUT_MARKERS, output_folder_lock

__all__ = ["report"]

COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363",
]  # fmt: skip


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> str:
    fig.tight_layout()
    atomic.write_atomic(path, lambda temp: fig.savefig(temp, dpi=100, format="png"))
    return path.name


def _sample_rows(labels: np.ndarray, n_labels: int, sample: int, seed: int) -> np.ndarray:
    """Up to ``sample`` rows, the same share of each label (at least one each), sorted."""
    rng = np.random.default_rng(seed)
    per_label = max(1, sample // max(n_labels, 1))
    chosen = []
    for label in range(-1, n_labels):
        rows = np.flatnonzero(labels == label)
        if len(rows):
            chosen.append(rng.choice(rows, min(per_label, len(rows)), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def _names(store: Any) -> list[str]:
    return [str(n) for n in store.label_names] + ["(unlabelled)"]


def _codes(store: Any) -> np.ndarray:
    """Each track's index into :func:`_names` (unlabelled tracks: the last name)."""
    return np.where(store.tracks.label >= 0, store.tracks.label, len(store.label_names))


def _table_numbers(store: Any) -> dict[str, Any]:
    tracks = store.tracks
    names = _names(store)
    codes = _codes(store)
    count = np.bincount(codes, minlength=len(names))
    hours = np.bincount(codes, weights=tracks.duration, minlength=len(names)) / 3600
    failures: dict[str, int] = {}
    if len(store.failures):
        kinds, kind_codes = store.failures.kind.codes()
        failures = {str(k): int(c) for k, c in zip(kinds, np.bincount(kind_codes, minlength=len(kinds)))}
    keep = [i for i in range(len(names)) if count[i] > 0]
    return {
        "tracks": int(len(tracks)),
        "hours": float(tracks.duration.sum() / 3600),
        "labels": [
            {
                "label": names[i],
                "tracks": int(count[i]),
                "hours": float(hours[i]),
                "median_seconds": float(np.median(tracks.duration[codes == i])),
            }
            for i in keep
        ],
        "failures": failures,
        "n_failures": int(len(store.failures)),
    }


def _balance_png(numbers: dict, path: Path) -> str:
    labels = [row["label"] for row in numbers["labels"]]
    fig = _figure(max(6, 0.6 * len(labels) + 2), 4.5)
    left, right = fig.subplots(1, 2)
    y = np.arange(len(labels))
    left.barh(y, [row["tracks"] for row in numbers["labels"]], color="#1f77b4")
    left.set_yticks(y, labels)
    left.invert_yaxis()
    left.set_xlabel("tracks")
    left.set_title("tracks per label")
    right.barh(y, [row["hours"] for row in numbers["labels"]], color="#ff7f0e")
    right.set_yticks(y, labels)
    right.invert_yaxis()
    right.set_xlabel("hours of audio")
    right.set_title("hours per label")
    return _save(fig, path)


def _durations_png(store: Any, path: Path) -> str:
    names = _names(store)
    codes = _codes(store)
    present = [i for i in range(len(names)) if np.any(codes == i)]
    fig = _figure(max(6, 0.6 * len(present) + 2), 4.5)
    ax = fig.add_subplot()
    ax.boxplot([store.tracks.duration[codes == i] for i in present], whis=(1, 99), showfliers=False)
    ax.set_xticks(np.arange(1, len(present) + 1), [names[i] for i in present], rotation=45, ha="right")
    ax.set_ylabel("duration (s)")
    ax.set_title("track duration per label (box: quartiles; whiskers: 1st-99th percentile)")
    return _save(fig, path)


def _failures_png(numbers: dict, path: Path) -> str:
    kinds = sorted(numbers["failures"], key=numbers["failures"].get, reverse=True)
    fig = _figure(6, 1.2 + 0.4 * len(kinds))
    ax = fig.add_subplot()
    ax.barh(np.arange(len(kinds)), [numbers["failures"][k] for k in kinds], color="#d62728")
    ax.set_yticks(np.arange(len(kinds)), kinds)
    ax.invert_yaxis()
    ax.set_xlabel("files")
    ax.set_title("failed files by kind")
    return _save(fig, path)


def _pass(store: Any, rows: np.ndarray, progress) -> dict[str, Any]:
    """Per-band log-mel mean and spread of each sampled track, and one example per label."""
    spec = store.spec
    n_mels = spec.n_mels
    labels = _codes(store)
    track_stats = np.zeros((len(rows), 2 * n_mels), np.float32)
    examples: dict[int, dict] = {}
    example_frames = int(30 * spec.frames_per_second)
    has_mfcc = "mfcc" in spec.features
    report = ProgressReporter(progress, "report", "tracks")
    report("start", 0, len(rows))
    for i, (row, logmel) in enumerate(store.iter_tracks(rows=rows)):
        track_stats[i] = np.concatenate([logmel.mean(0), logmel.std(0)])
        label = int(labels[row])
        if label not in examples:
            examples[label] = {
                "track_id": store.tracks.track_id[row],
                "logmel": logmel[:example_frames].copy(),
                "mfcc": store.read(int(row), "mfcc")[:example_frames] if has_mfcc else None,
            }
        if (i + 1) % 256 == 0:
            report("update", i + 1, len(rows))
    report("end", len(rows), len(rows))
    return {"labels": labels[rows], "stats": track_stats, "examples": examples}


def _mean_spectrum_png(store: Any, sampled: dict, path: Path) -> tuple[str, dict]:
    spec = store.spec
    names = _names(store)
    freqs = spec.mel_frequencies()
    fig = _figure(9, 5)
    ax = fig.add_subplot()
    numbers = {}
    for colour, label in zip(COLOURS * 5, np.unique(sampled["labels"])):
        means = sampled["stats"][sampled["labels"] == label, : spec.n_mels]  # per-band means of each track
        mean, spread = means.mean(0), means.std(0)
        ax.plot(freqs, mean, color=colour, label=names[label], linewidth=1.5)
        ax.fill_between(freqs, mean - spread, mean + spread, color=colour, alpha=0.12)
        numbers[names[label]] = {"tracks": int(len(means)), "mean_db": float(mean.mean())}
    ax.set_xscale("symlog", linthresh=500)
    ax.set_xlabel("frequency (Hz, mel band centres)")
    unit = "dB" if spec.log_scale == "db" else "log10(1 + 10000 x power)"
    ax.set_ylabel(f"mean log-mel ({unit})")
    ax.set_title("mean spectrum per label (shaded: \u00b11 std across sampled tracks)")
    ax.legend(fontsize=8, ncol=2, loc="upper right")
    return _save(fig, path), numbers


def _examples_png(store: Any, sampled: dict, path: Path) -> str:
    spec = store.spec
    names = _names(store)
    labels = sorted(sampled["examples"])
    columns = 2 if any(e["mfcc"] is not None for e in sampled["examples"].values()) else 1
    fig = _figure(6 * columns, 2.2 * len(labels) + 0.5)
    axes = np.atleast_2d(fig.subplots(len(labels), columns, squeeze=False))
    freqs = spec.mel_frequencies()
    bands = np.linspace(0, spec.n_mels - 1, 5).round().astype(int)
    for r, label in enumerate(labels):
        example = sampled["examples"][label]
        seconds = len(example["logmel"]) / spec.frames_per_second
        ax = axes[r, 0]
        # Rows are mel bands (even in mel, not in Hz): ticks name the band centres in Hz.
        ax.imshow(example["logmel"].T, origin="lower", aspect="auto", extent=(0, seconds, -0.5, spec.n_mels - 0.5))
        ax.set_yticks(bands, [f"{freqs[b]:.0f}" for b in bands])
        ax.set_title(f"{names[label]}: {example['track_id']} (log-mel)", fontsize=9)
        ax.set_ylabel("Hz (band centre)")
        ax.set_xlabel("seconds")
        if columns == 2 and example["mfcc"] is not None:
            ax = axes[r, 1]
            ax.imshow(example["mfcc"].T, origin="lower", aspect="auto", extent=(0, seconds, 0, spec.n_mfcc))
            ax.set_title(f"{names[label]}: MFCC", fontsize=9)
            ax.set_ylabel("coefficient")
            ax.set_xlabel("seconds")
    return _save(fig, path)


def _map_png(store: Any, sampled: dict, path: Path) -> str:
    names = _names(store)
    x = sampled["stats"].astype(np.float64)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-9)
    _u, s, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    explained = (s[:2] ** 2 / max(np.sum(s**2), 1e-12)).tolist()
    fig = _figure(7.5, 6)
    ax = fig.add_subplot()
    for colour, label in zip(COLOURS * 5, np.unique(sampled["labels"])):
        mask = sampled["labels"] == label
        ax.scatter(xy[mask, 0], xy[mask, 1], s=10, color=colour, label=names[label], alpha=0.7)
    ax.set_xlabel(f"PC 1 ({100 * explained[0]:.0f} % of variance)")
    ax.set_ylabel(f"PC 2 ({100 * explained[1]:.0f} % of variance)" if len(explained) > 1 else "PC 2")
    ax.set_title("tracks by per-band log-mel mean and spread (PCA)")
    ax.legend(fontsize=8, markerscale=2, loc="best")
    return _save(fig, path)


def _model_section(model_dir: Path, store: Any, out: Path, progress: Any = None) -> dict[str, Any]:
    """Per-class F1 and the most confused pairs from the model's evaluation on the test split.

    The evaluation is announced on ``progress`` (a ``stage`` event of task ``report``) and reports its own events.
    """
    from mgc.models.compile_cache import enable
    from mgc.models.tasks.evaluate import evaluate
    from mgc.models.tasks.plots import confusion_png, curves_png

    enable()  # the model section compiles the network (mgc report without --model imports no JAX)

    message = f"evaluating the model in {model_dir} on the test split of {store.path}"
    ProgressReporter(progress, "report")("stage", message=message, stage="evaluate")
    metrics = evaluate(model_dir, store, split="test", out_dir=out / "evaluation", progress=progress)
    names = metrics["label_names"]
    fig = _figure(max(6, 0.6 * len(names) + 2), 4.5)
    ax = fig.add_subplot()
    ax.bar(np.arange(len(names)), metrics["f1"], color="#2ca02c")
    ax.set_xticks(np.arange(len(names)), names, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1 on the test split")
    ax.set_title(f"per-class F1 (accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f})")
    files = {"model_f1": _save(fig, out / "model_f1.png")}
    files["confusion"] = confusion_png(metrics["confusion"], names, out / "confusion.png").name
    from mgc.models.folder import ModelFolder

    rows = ModelFolder(model_dir).read_metrics()
    if rows:
        files["curves"] = curves_png(rows, out / "curves.png").name
    confusion = np.asarray(metrics["confusion"])
    pairs = []
    predictions = [json.loads(line) for line in Path(metrics["files"]["predictions"]).read_text().splitlines()]
    off = [(int(confusion[i, j]), i, j) for i in range(len(names)) for j in range(len(names)) if i != j]
    for count, i, j in sorted(off, reverse=True)[:5]:
        if count:
            example = [p["track_id"] for p in predictions if p["true"] == names[i] and p["predicted"] == names[j]][:3]
            pairs.append({"true": names[i], "predicted": names[j], "tracks": count, "examples": example})
    return {"metrics": {k: metrics[k] for k in ("accuracy", "macro_f1", "f1", "n_tracks")}, "pairs": pairs, **files}


def report(
    store: Any,
    out: str | Path,
    *,
    model_dir: str | Path | None = None,
    sample: int = REPORT_SAMPLE,
    seed: int = 0,
    progress: Any = None,
) -> dict[str, Any]:
    """Write the report folder ``out`` for ``store`` (and ``model_dir``); return its numbers.

    Parameters
    ----------
    store : str, Path or engine.FeatureStore
    out : str or Path
        The folder (created); its files are replaced.
    model_dir : str or Path, optional
        A model folder: its test-split evaluation, per-class F1, confusions and curves.
    sample : int
        Tracks read for the spectra, examples and the map (seeded, the same share per label).
    seed : int
        Seeds the sample.
    progress : callable, optional
        ``engine.ProgressEvent`` values (task ``report``, unit ``tracks``); with
        ``model_dir``, then a ``stage`` event (stage ``evaluate``) and the events of
        :func:`mgc.models.evaluate` (tasks ``evaluate`` and ``neighbours``).

    Returns
    -------
    dict
        What ``report.json`` holds: ``tracks``, ``hours``, ``labels`` (per label: tracks,
        hours, median seconds), ``failures`` (per kind), ``sampled``, ``files``, and ``model``.
    """
    from mgc.engine import FeatureStore

    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    if not len(store):
        raise ModelError(f"{store.path} holds no tracks to report on")
    out = Path(out)
    with output_folder_lock(out, "report"):
        return _report_into(out, store, model_dir, sample, seed, progress)


def _report_into(out: Path, store: Any, model_dir: Any, sample: int, seed: int, progress: Any) -> dict[str, Any]:
    """:func:`report`'s figures and files, written into the locked folder ``out``."""
    numbers = {"format": OUTPUT_MARKERS["report"][1], **_table_numbers(store)}
    files = {
        "balance": _balance_png(numbers, out / "balance.png"),
        "durations": _durations_png(store, out / "durations.png"),
    }
    if numbers["failures"]:
        files["failures"] = _failures_png(numbers, out / "failures.png")
    rows = _sample_rows(store.tracks.label, len(store.label_names), sample, seed)
    sampled = _pass(store, rows, progress)
    files["mean_spectrum"], spectra = _mean_spectrum_png(store, sampled, out / "mean_spectrum.png")
    files["examples"] = _examples_png(store, sampled, out / "examples.png")
    if len(rows) >= 3:
        files["map"] = _map_png(store, sampled, out / "map.png")
    numbers.update({"sampled": int(len(rows)), "spectra": spectra, "files": files, "model": None})
    if model_dir is not None:
        numbers["model"] = _model_section(Path(model_dir), store, out, progress)
        files.update({k: v for k, v in numbers["model"].items() if k in ("model_f1", "confusion", "curves")})
    atomic.write_json(out / "report.json", numbers, sort_keys=False)
    atomic.write_text(out / "index.html", _html(store, numbers))
    return numbers


CAPTIONS = {
    "balance": "Tracks and hours of audio per label: class balance.",
    "durations": "Track durations per label: a label made of short clips stands out here.",
    "failures": "Files that could not be used, by kind (see mgc inspect for the files).",
    "mean_spectrum": "Mean log-mel spectrum per label over the sampled tracks; shading is one standard deviation.",
    "examples": "One sampled track per label: its log-mel spectrogram and MFCC (first 30 s).",
    "map": "Each sampled track placed by the first two principal components of its per-band log-mel mean and "
    "spread; labels that overlap here are hard to tell apart from these statistics.",
    "model_f1": "The model's per-class F1 on its test split.",
    "confusion": "The model's confusion matrix on its test split (rows: true label).",
    "curves": "The model's training curves.",
}


def _html(store: Any, numbers: dict) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(r['label'])}</td><td>{r['tracks']}</td><td>{r['hours']:.2f}</td>"
        f"<td>{r['median_seconds']:.1f}</td></tr>"
        for r in numbers["labels"]
    )
    failures = "".join(f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in numbers["failures"].items())
    figures = "".join(
        f'<figure><img src="{e(name)}" alt="{e(key)}"><figcaption>{e(CAPTIONS.get(key, key))}</figcaption></figure>'
        for key, name in numbers["files"].items()
    )
    model = ""
    if numbers["model"]:
        m = numbers["model"]["metrics"]
        pairs = "".join(
            f"<tr><td>{e(p['true'])}</td><td>{e(p['predicted'])}</td><td>{p['tracks']}</td>"
            f"<td>{e(', '.join(p['examples']))}</td></tr>"
            for p in numbers["model"]["pairs"]
        )
        model = (
            f"<h2>Model</h2><p>Test split: {m['n_tracks']} tracks, accuracy {m['accuracy']:.3f}, "
            f"macro-F1 {m['macro_f1']:.3f}.</p><h3>Most confused pairs</h3><table><tr><th>true</th><th>predicted"
            f"</th><th>tracks</th><th>examples</th></tr>{pairs}</table>"
        )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>mgc report: {e(str(store.path))}</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:auto}} img{{max-width:100%}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
figure{{margin:2em 0}}</style></head><body>
<h1>mgc report: {e(str(store.path))}</h1>
<p><span id="tracks">{numbers["tracks"]}</span> tracks, {numbers["hours"]:.2f} hours of audio,
<span id="failures">{numbers["n_failures"]}</span> failed files; figures of spectra, examples and the map use a
seeded sample of {numbers["sampled"]} tracks.</p>
<h2>Labels</h2><table id="labels"><tr><th>label</th><th>tracks</th><th>hours</th><th>median seconds</th></tr>
{rows}</table>
<h2>Failures by kind</h2><table id="failure-kinds"><tr><th>kind</th><th>files</th></tr>{failures}</table>
{model}
<h2>Figures</h2>{figures}
</body></html>
"""
