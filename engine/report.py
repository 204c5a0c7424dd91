"""Rich rendering of a run's progress and summary and of a store's description.

Kept apart from the engine's work so the library stays usable without a terminal.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from .extract import ExtractProgress, ExtractResult

__all__ = ["RichProgress", "result_table", "store_tables", "format_bytes"]


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


class RichProgress:
    """A progress bar fed by ``extract(progress=...)``: tracks, tracks/s, audio h/s, ETA, failures."""

    def __init__(self, console: Console | None = None) -> None:
        self._progress = Progress(
            TextColumn("[bold]extract"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.completed}/{task.total} tracks"), TextColumn("{task.fields[rate]}"),
            TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=console, transient=False,
        )  # fmt: skip
        self._task = None

    def __enter__(self) -> RichProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.__exit__(*exc_info)

    def __call__(self, snapshot: ExtractProgress) -> None:
        elapsed = max(snapshot.elapsed, 1e-9)
        rate = f"{snapshot.done_tracks / elapsed:.1f} tracks/s, {snapshot.audio_seconds / 3600 / elapsed:.2f} audio h/s"
        if self._task is None:
            self._task = self._progress.add_task("extract", total=snapshot.total_tracks, rate=rate, failed=0)
        self._progress.update(self._task, completed=snapshot.done_tracks, rate=rate, failed=snapshot.failed_tracks)


def result_table(result: ExtractResult) -> Table:
    """The end-of-run summary."""
    table = Table(title=f"extract -> {result.store}", show_header=False)
    elapsed = max(result.elapsed, 1e-9)
    rows = [
        ("tracks in corpus", f"{result.corpus_tracks}"),
        ("processed by this run", f"{result.processed_tracks} ({result.skipped_tracks} already done, skipped)"),
        ("failed in this run", f"{len(result.failures)}"),
        ("stored in the store", f"{result.stored_tracks} ({result.failed_tracks} failures recorded)"),
        ("audio decoded", f"{result.audio_seconds / 3600:.3f} h"),
        ("time", f"{result.elapsed:.1f} s"),
        ("speed", f"{result.processed_tracks / elapsed:.1f} tracks/s, {result.audio_seconds / 3600 / elapsed:.3f} audio h/s"),
        ("shards", f"{result.shards_written} written, {result.shards_skipped} skipped"),
        ("spec", result.spec.hash),
    ]
    for key, value in rows:
        table.add_row(key, value)
    if result.failures:
        failures = Table(title="failures in this run")
        for column in ("track", "kind", "message"):
            failures.add_column(column)
        for track_id, _path, kind, message in result.failures[:50]:
            failures.add_row(track_id, kind, message)
        if len(result.failures) > 50:
            failures.add_row("...", "", f"{len(result.failures) - 50} more: see `mgc inspect`")
        return _group(table, failures)
    return table


def _group(*renderables):
    from rich.console import Group

    return Group(*renderables)


def store_tables(summary: dict):
    """Renderables describing a store, from ``summarize_store``."""
    head = Table(title=f"store {summary['store']}", show_header=False)
    spec = summary["spec"]
    head.add_row("spec", f"{summary['spec_hash']}  " + ", ".join(f"{k}={v}" for k, v in spec.items()))
    head.add_row("run", ", ".join(f"{k}={v}" for k, v in summary["run"].items()))
    head.add_row("tracks", f"{summary['tracks']} ({summary['frames']} frames, {summary['hours']:.3f} h)")
    head.add_row("shards", str(summary["shards"]))
    head.add_row("size on disk", format_bytes(summary["bytes_on_disk"]))
    ratio = summary["compression_ratio"]
    head.add_row(
        "compression",
        f"{ratio}x vs uncompressed on-disk dtypes, {summary['compression_ratio_vs_float32']}x vs float32"
        if ratio else "n/a",
    )
    labels = Table(title="per label")
    for column in ("label", "tracks", "frames", "hours"):
        labels.add_column(column, justify="right" if column != "label" else "left")
    for name, row in summary["labels"].items():
        labels.add_row(name, str(row["tracks"]), str(row["frames"]), f"{row['hours']:.3f}")
    parts = [head, labels]
    failures = summary["failures"]
    if failures["count"]:
        table = Table(title=f"failures ({failures['count']})")
        for column in ("track", "kind", "message"):
            table.add_column(column)
        for row in failures["list"][:100]:
            table.add_row(row["track_id"], row["kind"], row["message"])
        if failures["count"] > 100:
            table.add_row("...", "", f"{failures['count'] - 100} more: mgc inspect --json lists them all")
        by_kind = ", ".join(f"{kind}: {n}" for kind, n in sorted(failures["by_kind"].items()))
        table.caption = f"by reason: {by_kind}"
        parts.append(table)
    return _group(*parts)
