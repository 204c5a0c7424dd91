"""The ``mgc`` command line: a thin typer app over the library.

Each command parses its arguments, builds a config and calls one library
function. Errors a user can cause are printed without a traceback and exit
with status 2.
"""

from __future__ import annotations

import contextlib

import typer
from rich.console import Console

app = typer.Typer(
    name="mgc",
    help="Music genre classification at corpus scale: extract features, train, evaluate, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print a user-facing error without a traceback and exit non-zero."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@app.callback()
def main() -> None:
    """mgc: features, stores and genre models for large music collections."""


# --- kernel commands ---------------------------------------------------------

# --- engine commands (extract, inspect) ----------------------------------------


@app.command("extract")
def extract_command(
    corpus: str = typer.Argument(..., help="Folder (one sub-folder per label, or plain) or a CSV manifest."),
    store: str = typer.Argument(..., help="Store folder to create or resume."),
    manifest: str = typer.Option(None, "--manifest", help="CSV with path,label[,track_id,split,artist]."),
    workers: int = typer.Option(None, "--workers", min=1, help="Worker processes (default: all cores)."),
    sr: int = typer.Option(22050, "--sr", help="Sample rate to resample to."),
    n_fft: int = typer.Option(2048, "--n-fft"),
    hop_length: int = typer.Option(512, "--hop-length"),
    n_mels: int = typer.Option(128, "--n-mels"),
    n_mfcc: int = typer.Option(20, "--n-mfcc"),
    fmin: float = typer.Option(0.0, "--fmin"),
    fmax: float = typer.Option(None, "--fmax"),
    features: str = typer.Option("logmel,mfcc", "--features", help="Comma-separated: logmel, mfcc."),
    logmel_dtype: str = typer.Option("float16", "--logmel-dtype", help="float16 or float32 on disk."),
    offset: float = typer.Option(None, "--offset", help="Start of the window to use, seconds."),
    duration: float = typer.Option(None, "--duration", help="Length of the window to use, seconds."),
    shard_size: int = typer.Option(None, "--shard-size", min=1, help="Tracks per shard for a new store."),
    compression: str = typer.Option("lzf", "--compression", help="lzf (h5py, fast), gzip (any HDF5 tool), none."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an existing store and start again."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero if any track failed."),
    scheduler: str = typer.Option(
        None, "--scheduler",
        help="Run the shard tasks on Dask: tcp://HOST:8786 (a running scheduler) or local[:N] (a LocalCluster "
        "of N processes). Needs pip install 'mgc[dask]' and a store folder every worker can reach.",
    ),
) -> None:
    """Extract features of every track of CORPUS into the sharded HDF5 store STORE (resumable)."""
    from engine import EngineError, ExtractFailed, FeatureSpec, extract, load_corpus
    from engine.report import RichProgress, result_table

    try:
        spec = FeatureSpec(
            sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, n_mfcc=n_mfcc, fmin=fmin, fmax=fmax,
            features=tuple(f.strip() for f in features.split(",") if f.strip()), logmel_dtype=logmel_dtype,
        )  # fmt: skip
        tracks = load_corpus(corpus, manifest)
        with contextlib.ExitStack() as stack:
            executor = None
            if scheduler:
                from engine.cluster import dask_executor

                session = stack.enter_context(dask_executor(scheduler))
                executor = session.executor
                where = "started a local cluster" if session.local else "connected to"
                console.print(f"dask: {where} {session.address} with {session.n_workers} workers"
                              + (f"; dashboard {session.dashboard_link}" if session.dashboard_link else ""))
            progress = stack.enter_context(RichProgress(console))
            result = extract(
                tracks, store, spec, workers=workers, executor=executor, offset=offset, duration=duration,
                overwrite=overwrite, strict=strict, progress=progress, shard_size=shard_size, compression=compression,
            )  # fmt: skip
    except ExtractFailed as exc:
        console.print(result_table(exc.result))
        fail(str(exc), code=1)
    except EngineError as exc:
        fail(str(exc))
    console.print(result_table(result))


@app.command("inspect")
def inspect_command(
    store: str = typer.Argument(..., help="A store made by `mgc extract`."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout (for scripts)."),
) -> None:
    """Describe a store: spec, tracks and frames per label, failures, size on disk, compression."""
    import json

    from engine import EngineError, summarize_store
    from engine.report import store_tables

    try:
        summary = summarize_store(store)
    except EngineError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
    else:
        Console().print(store_tables(summary))


# --- synth and demo commands ------------------------------------------------


@app.command()
def synth(
    out_dir: str = typer.Argument(..., help="Folder to write the corpus into (created if missing)."),
    tracks_per_genre: int = typer.Option(10, "--tracks-per-genre", "-n", help="Tracks per genre."),
    seconds: float = typer.Option(30.0, help="Duration of every track in seconds."),
    seed: int = typer.Option(0, help="Seed; the same seed gives bit-identical files."),
    format: str = typer.Option("wav", "--format", "-f", help="wav, flac, ogg or mp3."),
    sr: int = typer.Option(22050, help="Sample rate in Hz."),
    channels: int = typer.Option(1, help="1 (mono) or 2 (stereo)."),
    genres: str = typer.Option("", help="Comma-separated subset of genres (default: all)."),
) -> None:
    """Write a synthetic multi-genre corpus (folder per genre + manifest.csv)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from engine.synth import SynthError, make_corpus

    subset = [g.strip() for g in genres.split(",") if g.strip()] or None
    with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("synth", total=None)
        try:
            manifest = make_corpus(
                out_dir, tracks_per_genre=tracks_per_genre, seconds=seconds, seed=seed, format=format,
                sr=sr, channels=channels, genres=subset,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except SynthError as exc:
            bar.stop()
            fail(str(exc))
    typer.echo(f"tracks:   {manifest.parent}/<genre>/<genre>.NNNNN.{format}")
    typer.echo(f"manifest: {manifest}")

@app.command()
def demo(
    out: str = typer.Option("mgc-demo", "--out", help="Folder for every artefact; re-running reuses what is complete."),
    tracks_per_genre: int = typer.Option(None, "--tracks-per-genre", min=2, help="Corpus size per genre (10 genres)."),
    quick: bool = typer.Option(False, "--quick", help="A small run of the same path (under 2 minutes)."),
    workers: int = typer.Option(None, "--workers", min=1, help="Extraction processes (default: all cores)."),
) -> None:
    """Synthesise a corpus, extract features, train, evaluate and predict: the whole system in one command."""
    import time

    from rich.table import Table

    from engine import EngineError, SynthError
    from engine.report import RichProgress
    from models import ModelError
    from models.demo import DemoConfig, run_demo
    from models.progress import RichReporter

    overrides = {k: v for k, v in {"tracks_per_genre": tracks_per_genre, "workers": workers}.items() if v is not None}
    config = DemoConfig.quick(**overrides) if quick else DemoConfig(**overrides)
    started = time.perf_counter()

    def on_stage(stage: str, message: str) -> None:
        console.print(f"[bold cyan]{stage:>8}[/] {message}", highlight=False)

    try:
        with RichProgress(console) as extract_bar:
            report = run_demo(out, config, on_stage=on_stage, extract_progress=extract_bar,
                              reporter=RichReporter(console))  # fmt: skip
    except (EngineError, SynthError, ModelError) as exc:
        fail(str(exc))
    table = Table(title=f"mgc demo: {out}", show_header=False)
    for stage, seconds in report.stages.items():
        table.add_row(f"{stage} time", f"{seconds:.1f} s")
    table.add_row("total time", f"{time.perf_counter() - started:.1f} s")
    table.add_row("test tracks", str(report.n_test))
    table.add_row("test accuracy", f"{report.test_accuracy:.3f} (chance {report.chance:.3f})")
    table.add_row("test macro-F1", f"{report.test_macro_f1:.3f}")
    table.add_row("fresh tracks right", f"{sum(r['predicted'] == r['genre'] for r in report.fresh)}/{len(report.fresh)}")
    for name, path in report.artefacts.items():
        table.add_row(name, str(path))
    typer.echo("")
    Console().print(table)
    fresh = Table(title="fresh tracks (another seed, never seen)")
    for column in ("file", "genre", "predicted", "p"):
        fresh.add_column(column)
    for row in report.fresh:
        mark = "" if row["predicted"] == row["genre"] else " [red]x[/]"
        fresh.add_row(row["path"].rsplit("/", 1)[-1], row["genre"], f"{row['predicted']}{mark}", f"{row['probability']:.2f}")
    Console().print(fresh)


# --- model commands (train, evaluate, predict) -------------------------------


def _model_errors():
    """The exceptions a user can cause in model commands (printed without a traceback)."""
    from engine import EngineError
    from models import ModelError

    return (ModelError, EngineError)


def _parse_split_files(items: list[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not path:
            fail(f"--split-file takes NAME=PATH (e.g. train=train_filtered.txt), got {item!r}")
        out[name] = path
    return out


@app.command("train")
def train_command(
    store: str = typer.Argument(..., help="Feature store made by `mgc extract`."),
    out: str = typer.Option(..., "--out", "-o", help="Model folder to write (checkpoints, metrics log, splits)."),
    epochs: int = typer.Option(None, help="Passes over the training tracks (default: 30)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Global batch size, a multiple of the device count (default: 32)."),
    lr: float = typer.Option(None, help="Peak learning rate (warm-up then cosine) (default: 1e-3)."),
    crop_seconds: float = typer.Option(None, "--crop-seconds", help="Length of the random training crops (default: 3.0)."),
    parallel: str = typer.Option(None, help="jit (jax.jit over a device mesh) or pmap (default: jit)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --out."),
    seed: int = typer.Option(None, help="Seeds initialisation, splits, crops and augmentation (default: 0)."),
    mixup: float = typer.Option(None, help="Mixup Beta(alpha, alpha); 0 turns it off (default: 0.2)."),
    checkpoint_every: int = typer.Option(None, "--checkpoint-every", help="Also checkpoint every N steps (default: per epoch)."),
    split_file: list[str] = typer.Option(None, "--split-file", help="NAME=PATH with one track id per line (repeat for train, valid, test)."),
    widths: str = typer.Option(None, help="Channels per conv block, e.g. 16,32,64 (depth = count) (default: 32,64,64,128,128)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Train the genre CNN on a feature store, on every local device."""
    import json

    from models import ModelConfig, train
    from models.progress import RichReporter

    given = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "crop_seconds": crop_seconds, "parallel": parallel,
             "seed": seed, "mixup_alpha": mixup, "checkpoint_every": checkpoint_every}
    given = {k: v for k, v in given.items() if v is not None}
    errors = _model_errors()
    try:
        # A mapping: overrides of the defaults for a new run, checked against the saved run on --resume.
        config = given
        model_config = None
        if widths:
            try:
                block_widths = tuple(int(w) for w in widths.split(","))
            except ValueError:
                fail(f"--widths takes comma-separated integers, got {widths!r}")
            # n_mels and n_classes are placeholders here: train() takes them from the store.
            model_config = ModelConfig(widths=block_widths, n_mels=2 ** len(block_widths))
        summary = train(store, out, config, model_config=model_config, resume=resume,
                        split_files=_parse_split_files(split_file), reporter=RichReporter(console=console))
    except errors as error:
        fail(str(error))
    if json_out:
        print(json.dumps(summary, indent=1))
        return
    last = summary["last"] or {}
    best = summary["best_val_accuracy"]
    console.print(
        f"trained {summary['steps']} steps on {summary['devices']} device(s) ({summary['parallel']}); "
        f"last train loss {last.get('train_loss', float('nan')):.4f}; best validation accuracy "
        f"{'-' if best is None else f'{best:.3f}'}; model in {summary['model_dir']}"
    )


@app.command("evaluate")
def evaluate_command(
    model_dir: str = typer.Argument(..., help="Model folder written by `mgc train`."),
    store: str = typer.Argument(..., help="Feature store made with the model's FeatureSpec."),
    split: str = typer.Option("test", help="train, valid, test (the model's saved split) or all."),
    out: str = typer.Option(None, "--out", "-o", help="Where to write metrics.json and the PNGs (default: MODEL_DIR/eval-SPLIT)."),
    max_crops: int = typer.Option(None, "--max-crops", help="Cap on crops per track (default: cover the track)."),
    checkpoint: str = typer.Option("best", help="best (by validation accuracy) or latest."),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Track-level accuracy, macro-F1, per-class precision/recall and a confusion matrix."""
    import json

    from rich.table import Table

    from models import evaluate

    errors = _model_errors()
    try:
        if checkpoint not in ("best", "latest"):
            fail(f"--checkpoint must be best or latest, got {checkpoint!r}")
        metrics = evaluate(model_dir, store, split=split, out_dir=out, max_crops=max_crops, which=checkpoint)
    except errors as error:
        fail(str(error))
    if json_out:
        print(json.dumps(metrics, indent=1))
        return
    names = metrics["label_names"]
    out_console = Console()
    per_class = Table(title=f"{split}: {metrics['n_tracks']} tracks, accuracy {metrics['accuracy']:.3f}, "
                            f"macro-F1 {metrics['macro_f1']:.3f}")
    for column in ("label", "precision", "recall", "F1", "tracks"):
        per_class.add_column(column, justify="left" if column == "label" else "right")
    for i, name in enumerate(names):
        per_class.add_row(name, f"{metrics['precision'][i]:.3f}", f"{metrics['recall'][i]:.3f}",
                          f"{metrics['f1'][i]:.3f}", str(metrics["support"][i]))
    out_console.print(per_class)
    # Columns are numbered so that ten or more labels still fit a terminal.
    confusion = Table(title="confusion matrix (rows: true label, columns: predicted label number)")
    confusion.add_column("true label", no_wrap=True)
    for j in range(len(names)):
        confusion.add_column(str(j), justify="right")
    for i, (name, row) in enumerate(zip(names, metrics["confusion"])):
        confusion.add_row(f"{i} {name}", *(str(v) for v in row))
    out_console.print(confusion)
    for kind, path in metrics["files"].items():
        out_console.print(f"{kind}: {path}", highlight=False)


@app.command("predict")
def predict_command(
    model_dir: str = typer.Argument(..., help="Model folder written by `mgc train`."),
    inputs: list[str] = typer.Argument(..., help="Audio files or folders (searched recursively)."),
    top_k: int = typer.Option(3, "--top-k", help="Genres to show per file."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON list of results."),
) -> None:
    """Predict the genres of audio files; unreadable files are reported and skipped."""
    import json

    from models import predict

    errors = _model_errors()
    try:
        results = predict(model_dir, inputs, top_k=top_k)
    except errors as error:
        fail(str(error))
    if json_out:
        print(json.dumps(results, indent=1))
    else:
        out_console = Console()
        for result in results:
            if result["error"]:
                console.print(f"[yellow]skipped[/] {result['path']}: {result['error']}", highlight=False, soft_wrap=True)
                continue
            top = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in result["top"])
            # One line per file, never wrapped, so that scripts can parse it.
            out_console.print(f"{result['path']}: {top}", highlight=False, soft_wrap=True)
    if not results:
        fail("no audio files found in the given paths")
    if all(r["error"] for r in results):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
