"""The ``mgc`` command line: a thin typer app over the library.

Each command parses its arguments, builds a config and calls one library
function. Defaults and choices come from the library's config dataclasses and
constants, so the help cannot drift from the code. Conventions, the same in
every command:

- what a command works on is positional (CORPUS, STORE, MODEL_DIR, INPUTS);
- ``--out/-o`` names the new folder a command creates (synth, demo, train, evaluate);
- ``--duration`` is seconds of audio per track, ``--json`` prints JSON on stdout;
- errors a user can cause (:class:`kernels.MgcError`) are printed without a
  traceback, with markup off, and exit with status 2 (1 when a run finished
  but failed, e.g. ``--strict``).

All rendering (progress bars, tables) lives here: the library reports progress
through :class:`engine.ProgressEvent` and returns data.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import time

import typer
from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from mgc.engine import SPEC_PRESETS, FeatureSpec, MgcError, ProgressEvent
from mgc.engine.schema import COMPRESSIONS, DEFAULT_COMPRESSION
from mgc.engine.spec import FEATURES
from mgc.models.config import TrainConfig

app = typer.Typer(
    name="mgc",
    help="Music genre classification at corpus scale: extract features, train, evaluate, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)  # progress, status and errors
stdout = Console()  # results


def _choices(name: str, values) -> type[enum.Enum]:
    """A str Enum of ``values`` (typer shows and checks them as choices)."""
    return enum.Enum(name, {str(v): str(v) for v in values}, type=str)


Compression = _choices("Compression", COMPRESSIONS)
Precision = _choices("Precision", ("float32", "bfloat16"))
LogmelDtype = _choices("LogmelDtype", ("float16", "float32"))
Parallel = _choices("Parallel", ("jit", "pmap"))
Which = _choices("Which", ("best", "latest"))
Split = _choices("Split", ("test", "valid", "train", "all"))
EmbedDtype = _choices("EmbedDtype", ("float16", "float32"))
IndexPolicy = _choices("IndexPolicy", ("auto", "ann", "none"))
ModelKind = _choices("ModelKind", ("cnn", "stats"))
Preset = _choices("Preset", tuple(SPEC_PRESETS))
Backbone = _choices("Backbone", ("musicnn-msd", "musicnn-mtt"))
HeadKind = _choices("HeadKind", ("linear", "mlp"))
SPEC = {f.name: f.default for f in dataclasses.fields(FeatureSpec)}
TRAIN = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def fail(message: str, code: int = 2) -> None:
    """Print a user-facing error (markup off) without a traceback and exit non-zero."""
    console.print(Text("error: ", style="bold red") + Text(str(message)), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def command(name: str | None = None):
    """Register a command whose :class:`MgcError` is printed by :func:`fail`: the one catch of the CLI."""

    def register(function):
        @functools.wraps(function)
        def run(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except MgcError as error:
                fail(str(error))

        return app.command(name)(run)

    return register


def print_json(data) -> None:
    """The one way ``--json`` prints: indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=1))


def shown(text) -> str:
    r"""``text`` for a person: a file name's bytes that are not UTF-8 (lone surrogates) as ``\xe9`` escapes."""
    text = str(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file name gives: escape it as it is
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def key_value_table(title: str, rows) -> Table:
    table = Table(title=title, show_header=False)
    for key, value in rows:
        table.add_row(key, Text(str(value)))
    return table


def _status(event: ProgressEvent, state: dict) -> str:
    """The text beside a task's bar, from its event's ``info``."""
    info = event.info
    if event.task == "extract":
        elapsed = max(info.get("elapsed", 0.0), 1e-9)
        return (
            f"{event.done / elapsed:.1f} tracks/s, {info.get('audio_seconds', 0.0) / 3600 / elapsed:.2f} audio h/s, "
            f"{info.get('failed', 0)} failed"
        )
    if event.task == "train":
        if event.kind == "start":
            state["epochs"] = info.get("epochs", 0)
            return "compiling"
        if info.get("val_accuracy") is not None:
            state["val"] = f"{info['val_accuracy']:.3f}"
        if "loss" not in info:
            return state.get("status", "")
        state["status"] = (
            f"epoch {info['epoch'] + 1}/{state.get('epochs', '?')}  {info['examples_per_s']:.0f} ex/s  "
            f"loss {info['loss']:.4f}  val acc {state.get('val', '-')}"
        )
        return state["status"]
    if event.task == "fine-tune" and "loss" in info:
        return f"pass {info['epoch']}  loss {info['loss']:.4f}"
    return ""


class ProgressView:
    """Renders any task's :class:`ProgressEvent` stream as rich bars; prints ``stage`` events as lines."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description:>7}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.tasks: dict[str, int] = {}
        self.state: dict[str, dict] = {}

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "stage":
            self.progress.console.print(
                Text(f"{event.info.get('stage', event.task):>8} ", style="bold cyan") + Text(event.message)
            )
            return
        state = self.state.setdefault(event.task, {})
        status = _status(event, state)
        if event.task not in self.tasks or event.kind == "start" and state.get("ended"):
            self.tasks[event.task] = self.progress.add_task(
                event.task, total=event.total, completed=event.done, unit=event.unit, status=status
            )
            state["ended"] = False
        self.progress.update(self.tasks[event.task], completed=event.done, total=event.total, status=status)
        if event.kind == "end":
            state["ended"] = True


@app.callback()
def main() -> None:
    """mgc: features, stores and genre models for large music collections."""


# --- engine commands (synth, extract, inspect) ----------------------------------------------


@command("synth")
def synth_command(
    out: str = typer.Option(..., "--out", "-o", help="Folder to write the corpus into (created if missing)."),
    tracks_per_genre: int = typer.Option(10, "--tracks-per-genre", "-n", min=1, help="Tracks per genre."),
    duration: float = typer.Option(30.0, "--duration", help="Seconds of audio per track."),
    seed: int = typer.Option(0, help="Seed; the same seed gives bit-identical files."),
    format: str = typer.Option("wav", "--format", "-f", help="wav, flac, ogg or mp3."),
    sr: int = typer.Option(22050, help="Sample rate in Hz."),
    channels: int = typer.Option(1, help="1 (mono) or 2 (stereo)."),
    genres: str = typer.Option("", help="Comma-separated subset of genres (default: all)."),
) -> None:
    """Write a synthetic multi-genre corpus (folder per genre + manifest.csv)."""
    from mgc.engine.synth import make_corpus

    subset = [g.strip() for g in genres.split(",") if g.strip()] or None
    with ProgressView() as view:
        manifest = make_corpus(
            out,
            tracks_per_genre=tracks_per_genre,
            seconds=duration,
            seed=seed,
            format=format,
            sr=sr,
            channels=channels,
            genres=subset,
            progress=view,
        )
    typer.echo(f"tracks:   {manifest.parent}/<genre>/<genre>.NNNNN.{format}")
    typer.echo(f"manifest: {manifest}")


def _extract_table(result) -> Group:
    elapsed = max(result.elapsed, 1e-9)
    head = key_value_table(
        f"extract -> {result.store}",
        [
            ("tracks in corpus", result.corpus_tracks),
            ("processed by this run", f"{result.processed_tracks} ({result.skipped_tracks} already done, skipped)"),
            ("failed in this run", len(result.failures)),
            ("stored in the store", f"{result.stored_tracks} ({result.failed_tracks} failures recorded)"),
            ("audio decoded", f"{result.audio_seconds / 3600:.3f} h"),
            ("time", f"{result.elapsed:.1f} s"),
            (
                "speed",
                f"{result.processed_tracks / elapsed:.1f} tracks/s, "
                f"{result.audio_seconds / 3600 / elapsed:.3f} audio h/s",
            ),
            ("shards", f"{result.shards_written} written, {result.shards_skipped} skipped"),
            ("spec", result.spec.hash),
        ],
    )
    parts = [head]
    if result.failures:
        parts.append(
            _failures_table(
                "failures in this run",
                [(shown(t), k, shown(m)) for t, _p, k, m in result.failures],
                len(result.failures),
                50,
                "see `mgc inspect`",
            )
        )
    return Group(*parts)


def _failures_table(title: str, rows, count: int, limit: int, more: str) -> Table:
    table = Table(title=title)
    for column in ("track", "kind", "message"):
        table.add_column(column)
    for track_id, kind, message in rows[:limit]:
        table.add_row(Text(track_id), kind, Text(message))
    if count > limit:
        table.add_row("...", "", f"{count - limit} more: {more}")
    return table


def _verify_store(tracks, store: str) -> None:
    """Print what ``mgc extract --verify`` found; exit 1 when a run would redo anything."""
    from mgc.engine.verify import verify

    check = verify(tracks, store)
    table = Table(title=f"verify {shown(check.store)}", show_header=False)
    for name, value in (
        ("tracks in the corpus", check.corpus_tracks),
        ("stored tracks", check.stored_tracks),
        ("failed tracks", check.failed_tracks),
        ("damaged shards", len(check.damaged_shards)),
        ("tracks changed in the corpus", len(check.changed_tracks)),
        ("new tracks (not planned yet)", len(check.new_tracks)),
        ("planned shards not written yet", len(check.unfinished_shards)),
        ("stored tracks no longer in the corpus (kept)", check.gone_tracks),
    ):
        table.add_row(name, str(value))
    console.print(table)
    for name, reason in check.damaged_shards[:50]:
        console.print(Text(f"damaged {name}: {reason}"), soft_wrap=True)
    for name, track_id, what in check.changed_tracks[:50]:
        console.print(Text(f"changed {shown(track_id)} (in {name}): {shown(what)}"), soft_wrap=True)
    for track_id in check.new_tracks[:20]:
        console.print(Text(f"new {shown(track_id)}"), soft_wrap=True)
    if check.clean:
        console.print("the store is complete and matches the corpus: a run would do nothing")
        return
    console.print("run the same command without --verify to redo what is listed (it resumes)")
    raise typer.Exit(1)


@command("extract")
def extract_command(
    corpus: str = typer.Argument(..., help="Folder (one sub-folder per label, or plain) or a CSV manifest."),
    store: str = typer.Argument(..., help="Store folder to create or resume."),
    manifest: str = typer.Option(None, "--manifest", help="CSV with path,label[,track_id,split,artist]."),
    workers: int = typer.Option(None, "--workers", min=1, help="Worker processes (default: all cores)."),
    sr: int = typer.Option(SPEC["sr"], "--sr", help="Sample rate to resample to."),
    n_fft: int = typer.Option(SPEC["n_fft"], "--n-fft"),
    hop_length: int = typer.Option(SPEC["hop_length"], "--hop-length"),
    n_mels: int = typer.Option(SPEC["n_mels"], "--n-mels"),
    n_mfcc: int = typer.Option(SPEC["n_mfcc"], "--n-mfcc"),
    fmin: float = typer.Option(SPEC["fmin"], "--fmin"),
    fmax: float = typer.Option(SPEC["fmax"], "--fmax", help="Highest mel frequency (default: sr / 2)."),
    features: str = typer.Option(
        ",".join(SPEC["features"]), "--features", help=f"Comma-separated: {', '.join(FEATURES)}."
    ),
    logmel_dtype: LogmelDtype = typer.Option(SPEC["logmel_dtype"], "--logmel-dtype", help="On-disk dtype of log-mel."),
    preset: Preset = typer.Option(
        None,
        "--preset",
        help="A named spec instead of the options above: musicnn (16 kHz, 96 bands, log10(1 + 10000 x mel power)), "
        "for stores that --store runs of mgc predict/embed musicnn-msd read.",
    ),
    offset: float = typer.Option(None, "--offset", help="Start of the window to use, seconds."),
    duration: float = typer.Option(None, "--duration", help="Seconds of audio to use per track (default: all)."),
    shard_size: int = typer.Option(None, "--shard-size", min=1, help="Tracks per shard for a new store."),
    compression: Compression = typer.Option(
        DEFAULT_COMPRESSION,
        "--compression",
        help="none (fastest to read), lzf (13% smaller, h5py only), gzip (22% smaller).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an existing store and start again."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero if any track failed."),
    verify: bool = typer.Option(
        False,
        "--verify",
        help="Write nothing: open every shard and compare the store with the corpus; list what a run would redo "
        "(exit 1 if anything).",
    ),
    scheduler: str = typer.Option(
        None,
        "--scheduler",
        help="Run the shard tasks on Dask: tcp://HOST:8786 (a running scheduler) or local[:N] (a LocalCluster "
        "of N processes). Needs pip install 'mgc[dask]' and a store folder every worker can reach.",
    ),
) -> None:
    """Extract features of every track of CORPUS into the sharded HDF5 store STORE (resumable)."""
    import contextlib

    from mgc.engine import ExtractFailed, extract, load_corpus

    spec = FeatureSpec(
        sr=sr,
        n_fft=n_fft,
        hop_length=hop_length,
        n_mels=n_mels,
        n_mfcc=n_mfcc,
        fmin=fmin,
        fmax=fmax,
        features=tuple(f.strip() for f in features.split(",") if f.strip()),
        logmel_dtype=logmel_dtype.value,
    )
    if preset is not None:
        spec = FeatureSpec.from_dict(SPEC_PRESETS[preset.value])
    tracks = load_corpus(corpus, manifest)
    if verify:
        _verify_store(tracks, store)
        return
    try:
        with contextlib.ExitStack() as stack:
            executor = _dask(stack, scheduler)
            view = stack.enter_context(ProgressView())
            result = extract(
                tracks,
                store,
                spec,
                workers=workers,
                executor=executor,
                offset=offset,
                duration=duration,
                overwrite=overwrite,
                strict=strict,
                progress=view,
                shard_size=shard_size,
                compression=compression.value,
            )
    except ExtractFailed as exc:
        console.print(_extract_table(exc.result))
        fail(str(exc), code=1)
    console.print(_extract_table(result))


def _dask(stack, scheduler: str | None):
    """The executor of a Dask session entered on ``stack`` (None without ``--scheduler``), announced on stderr."""
    if not scheduler:
        return None
    from mgc.engine.cluster import dask_executor

    session = stack.enter_context(dask_executor(scheduler))
    where = "started a local cluster" if session.local else "connected to"
    console.print(
        Text(
            f"dask: {where} {session.address} with {session.n_workers} workers"
            + (f"; dashboard {session.dashboard_link}" if session.dashboard_link else "")
        )
    )
    return session.executor


SCHEDULER_HELP = (
    "Decode on Dask: tcp://HOST:8786 (a running scheduler) or local[:N] (a LocalCluster of N processes); "
    "the network runs here. Needs pip install 'mgc[dask]' and files every worker can reach."
)


def _store_tables(summary: dict) -> Group:
    spec = summary["spec"]
    ratio = summary["compression_ratio"]
    head = key_value_table(
        f"store {shown(summary['store'])}",
        [
            ("spec", f"{summary['spec_hash']}  " + ", ".join(f"{k}={v}" for k, v in spec.items())),
            ("run", ", ".join(f"{k}={v}" for k, v in summary["run"].items())),
            ("tracks", f"{summary['tracks']} ({summary['frames']} frames, {summary['hours']:.3f} h)"),
            ("shards", summary["shards"]),
            ("size on disk", format_bytes(summary["bytes_on_disk"])),
            (
                "compression",
                f"{ratio}x vs uncompressed on-disk dtypes, {summary['compression_ratio_vs_float32']}x vs float32"
                if ratio
                else "n/a",
            ),
        ],
    )
    labels = Table(title="per label")
    for column in ("label", "tracks", "frames", "hours"):
        labels.add_column(column, justify="right" if column != "label" else "left")
    for name, row in summary["labels"].items():
        labels.add_row(Text(shown(name)), str(row["tracks"]), str(row["frames"]), f"{row['hours']:.3f}")
    parts = [head, labels]
    failures = summary["failures"]
    if failures["count"]:
        rows = [(shown(row["track_id"]), row["kind"], shown(row["message"])) for row in failures["list"]]
        table = _failures_table(
            f"failures ({failures['count']})", rows, failures["count"], 100, "mgc inspect --json lists them all"
        )
        table.caption = "by reason: " + ", ".join(f"{kind}: {n}" for kind, n in sorted(failures["by_kind"].items()))
        parts.append(table)
    return Group(*parts)


@command("inspect")
def inspect_command(
    store: str = typer.Argument(..., help="A store made by `mgc extract`."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout (for scripts)."),
) -> None:
    """Describe a store: spec, tracks and frames per label, failures, size on disk, compression."""
    from mgc.engine import summarize_store

    summary = summarize_store(store)
    if as_json:
        print_json(summary)
    else:
        stdout.print(_store_tables(summary))


# --- model commands (demo, train, evaluate, predict) ----------------------------------------


@command("demo")
def demo_command(
    out: str = typer.Option(
        "mgc-demo", "--out", "-o", help="Folder for every artefact; re-running reuses what is complete."
    ),
    tracks_per_genre: int = typer.Option(
        None, "--tracks-per-genre", "-n", min=2, help="Corpus size per genre (10 genres)."
    ),
    quick: bool = typer.Option(False, "--quick", help="A small run of the same path (under 2 minutes)."),
    workers: int = typer.Option(None, "--workers", min=1, help="Extraction processes (default: all cores)."),
) -> None:
    """Synthesise a corpus, extract features, train, evaluate and predict: the whole system in one command."""
    from mgc.models import DemoConfig, run_demo

    overrides = {k: v for k, v in {"tracks_per_genre": tracks_per_genre, "workers": workers}.items() if v is not None}
    config = DemoConfig.quick(**overrides) if quick else DemoConfig(**overrides)
    started = time.perf_counter()
    with ProgressView() as view:
        report = run_demo(out, config, progress=view)
    rows = [(f"{stage} time", f"{seconds:.1f} s") for stage, seconds in report.stages.items()]
    rows += [
        ("total time", f"{time.perf_counter() - started:.1f} s"),
        ("test tracks", report.n_test),
        ("test accuracy", f"{report.test_accuracy:.3f} (chance {report.chance:.3f})"),
        ("test macro-F1", f"{report.test_macro_f1:.3f}"),
        ("fresh tracks right", f"{sum(r['predicted'] == r['genre'] for r in report.fresh)}/{len(report.fresh)}"),
    ] + [(name, path) for name, path in report.artefacts.items()]
    typer.echo("")
    stdout.print(key_value_table(f"mgc demo: {out}", rows))
    fresh = Table(title="fresh tracks (another seed, never seen)")
    for column in ("file", "genre", "predicted", "p"):
        fresh.add_column(column)
    for row in report.fresh:
        predicted = Text(str(row["predicted"])) + (Text("") if row["predicted"] == row["genre"] else Text(" x", "red"))
        fresh.add_row(Text(row["path"].rsplit("/", 1)[-1]), row["genre"], predicted, f"{row['probability']:.2f}")
    stdout.print(fresh)


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


@command("train")
def train_command(
    store: str = typer.Argument(..., help="Feature store made by `mgc extract`."),
    out: str = typer.Option(..., "--out", "-o", help="Model folder to write (checkpoints, metrics log, splits)."),
    epochs: int = typer.Option(
        None, help=f"Epochs of training: one pass over the tracks unless --epoch-examples (default: {TRAIN['epochs']})."
    ),
    steps: int = typer.Option(None, "--steps", min=1, help="Optimizer steps of the whole run (instead of --epochs)."),
    crops_per_track: int = typer.Option(
        None,
        "--crops-per-track",
        min=1,
        help="Random crops of each track per pass (default: 0, meaning ceil(4096 / tracks), 1 to 8).",
    ),
    epoch_examples: int = typer.Option(
        None, "--epoch-examples", min=1, help="Examples per epoch (validation, checkpoint) (default: one pass)."
    ),
    precision: Precision = typer.Option(
        None,
        help=f"bfloat16: compute in bfloat16 for GPUs/TPUs, parameters float32 (default: {TRAIN['precision']}).",
    ),
    memory_limit_mb: float = typer.Option(
        None,
        "--memory-limit-mb",
        help=f"Log-mel the input may hold: all of it when it fits, else shuffle windows (default: "
        f"{TRAIN['memory_limit_mb']:g}).",
    ),
    batch_size: int = typer.Option(
        None,
        "--batch-size",
        help=f"Global batch size, a multiple of the device count (default: {TRAIN['batch_size']}).",
    ),
    lr: float = typer.Option(None, help=f"Peak learning rate (warm-up then cosine) (default: {TRAIN['lr']})."),
    crop_seconds: float = typer.Option(
        None, "--crop-seconds", help=f"Length of the random training crops (default: {TRAIN['crop_seconds']})."
    ),
    parallel: Parallel = typer.Option(
        None, help=f"jit (jax.jit over a device mesh) or pmap (default: {TRAIN['parallel']})."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --out."),
    seed: int = typer.Option(
        None, help=f"Seeds initialisation, splits, crops and augmentation (default: {TRAIN['seed']})."
    ),
    mixup: float = typer.Option(
        None, help=f"Mixup Beta(alpha, alpha); 0 turns it off (default: {TRAIN['mixup_alpha']})."
    ),
    checkpoint_every: int = typer.Option(
        None, "--checkpoint-every", help="Also checkpoint every N steps (default: once per epoch)."
    ),
    split_file: list[str] = typer.Option(
        None, "--split-file", help="NAME=PATH with one track id per line (repeat for train, valid, test)."
    ),
    widths: str = typer.Option(
        None, help="Channels per conv block, e.g. 16,32,64 (depth = count) (default: 32,64,64,128,128)."
    ),
    model_kind: ModelKind = typer.Option(
        "cnn",
        "--model",
        help="cnn (the short-chunk CNN) or stats (a --head on per-track MFCC and log-mel statistics).",
    ),
    backbone: Backbone = typer.Option(
        None,
        "--backbone",
        help="Train a head on this pretrained network's embeddings of each track's audio (frozen unless --fine-tune).",
    ),
    c: float = typer.Option(1.0, "--c", min=0.0, help="Inverse L2 strength of a stats or backbone head (> 0)."),
    head: HeadKind = typer.Option(
        "linear", "--head", help="A stats or backbone head: linear (logistic regression) or mlp (one hidden layer)."
    ),
    hidden: int = typer.Option(256, "--hidden", min=1, help="Hidden units of an mlp head."),
    fine_tune: int = typer.Option(
        0,
        "--fine-tune",
        min=0,
        help="With --backbone: then train the backbone and head together for N passes over the training tracks.",
    ),
    fine_tune_lr: float = typer.Option(1e-5, "--fine-tune-lr", min=0.0, help="Peak learning rate of --fine-tune."),
    vectors: str = typer.Option(
        None,
        "--vectors",
        help="A head's per-track vector cache, shareable by heads on the same store and featurizer "
        "(default: OUT/vectors).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Train a genre model on a feature store: the CNN on every local device, or a head on one vector per track."""
    from mgc.models import ModelConfig, train

    if backbone is not None or model_kind.value != "cnn":
        featurizer = backbone.value if backbone is not None else model_kind.value
        options = {"head": head.value, "hidden": hidden, "c": c, "fine_tune_epochs": fine_tune, "vectors_dir": vectors}
        _train_head(store, out, featurizer, options | {"fine_tune_lr": fine_tune_lr}, seed, split_file, json_out)
        return
    if fine_tune or head.value != "linear" or vectors:
        fail("--head, --fine-tune and --vectors apply to --model stats and --backbone heads, not to the CNN")

    given = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "crop_seconds": crop_seconds,
        "parallel": parallel.value if parallel else None,
        "seed": seed,
        "mixup_alpha": mixup,
        "checkpoint_every": checkpoint_every,
        "steps": steps,
        "crops_per_track": crops_per_track,
        "epoch_examples": epoch_examples,
        "precision": precision.value if precision else None,
        "memory_limit_mb": memory_limit_mb,
    }
    # Overrides of the defaults for a new run, checked against the saved run on --resume.
    given = {k: v for k, v in given.items() if v is not None}
    model_config = None
    if widths:
        try:
            block_widths = tuple(int(w) for w in widths.split(","))
        except ValueError:
            fail(f"--widths takes comma-separated integers, got {widths!r}")
        # n_mels and n_classes are placeholders here: train() takes them from the store.
        model_config = ModelConfig(widths=block_widths, n_mels=2 ** len(block_widths))
    with ProgressView() as view:
        summary = train(
            store,
            out,
            given,
            model_config=model_config,
            resume=resume,
            split_files=_parse_split_files(split_file),
            progress=view,
        )
    if json_out:
        print_json(summary)
        return
    last = summary["last"] or {}
    best = summary["best_val_accuracy"]
    console.print(
        Text(
            f"trained {summary['steps']} steps on {summary['devices']} device(s) ({summary['parallel']}); "
            f"last train loss {last.get('train_loss', float('nan')):.4f}; best validation accuracy "
            f"{'-' if best is None else f'{best:.3f}'}; model in {summary['model_dir']}"
        )
    )


def _train_head(store, out, featurizer, options, seed, split_file, json_out) -> None:
    from mgc.models import train_head

    with ProgressView() as view:
        summary = train_head(
            store, out, featurizer, seed=seed or 0, split_files=_parse_split_files(split_file), progress=view, **options
        )
    if json_out:
        print_json(summary)
        return
    valid = summary["valid_accuracy"]
    steps = "L-BFGS iterations" if summary["head"] == "linear" else "Adam steps"
    tuned = summary.get("fine_tune")
    tuning = (
        f"; fine-tuned {tuned['steps']} steps in {tuned['seconds']:.1f} s, kept pass {tuned['best_epoch']}"
        if tuned
        else ""
    )
    console.print(
        Text(
            f"trained a {summary['head']} {featurizer} head in {summary['seconds']:.1f} s ({summary['iterations']} "
            f"{steps}; vectors {summary['vector_seconds']:.1f} s{tuning}); train accuracy "
            f"{summary['train_accuracy']:.3f}, validation accuracy {'-' if valid is None else f'{valid:.3f}'}; "
            f"model in {summary['model_dir']}"
        )
    )


@command("evaluate")
def evaluate_command(
    model_dir: str = typer.Argument(..., help="Model folder written by `mgc train`."),
    store: str = typer.Argument(..., help="Feature store made with the model's FeatureSpec."),
    split: Split = typer.Option("test", help="The model's saved split, or all labelled tracks."),
    out: str = typer.Option(
        None, "--out", "-o", help="Where to write metrics.json and the PNGs (default: MODEL_DIR/eval-SPLIT)."
    ),
    max_crops: int = typer.Option(
        None, "--max-crops", min=1, help="Cap on crops per track (default: cover the track)."
    ),
    checkpoint: Which = typer.Option("best", help="best (by validation accuracy) or latest."),
    k: int = typer.Option(
        10, "--k", min=1, help="Neighbours per track for genre precision at k (similarity of the embeddings)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Track-level accuracy, macro-F1, per-class precision/recall, a confusion matrix and genre precision at k."""
    from mgc.models import evaluate

    metrics = evaluate(
        model_dir, store, split=split.value, out_dir=out, max_crops=max_crops, which=checkpoint.value, precision_k=k
    )
    if json_out:
        print_json(metrics)
        return
    names = metrics["label_names"]
    per_class = Table(
        title=f"{split.value}: {metrics['n_tracks']} tracks, accuracy {metrics['accuracy']:.3f}, "
        f"macro-F1 {metrics['macro_f1']:.3f}"
    )
    for column in ("label", "precision", "recall", "F1", "tracks"):
        per_class.add_column(column, justify="left" if column == "label" else "right")
    for i, name in enumerate(names):
        per_class.add_row(
            Text(name),
            f"{metrics['precision'][i]:.3f}",
            f"{metrics['recall'][i]:.3f}",
            f"{metrics['f1'][i]:.3f}",
            str(metrics["support"][i]),
        )
    stdout.print(per_class)
    # Columns are numbered so that ten or more labels still fit a terminal.
    confusion = Table(title="confusion matrix (rows: true label, columns: predicted label number)")
    confusion.add_column("true label", no_wrap=True)
    for j in range(len(names)):
        confusion.add_column(str(j), justify="right")
    for i, (name, row) in enumerate(zip(names, metrics["confusion"])):
        confusion.add_row(Text(f"{i} {name}"), *(str(v) for v in row))
    stdout.print(confusion)
    stdout.print(_neighbours_line(metrics["genre_precision_at_k"]), highlight=False)
    for kind, path in metrics["files"].items():
        stdout.print(Text(f"{kind}: {path}"), highlight=False)


def _skipped(what, error: str) -> None:
    """``skipped WHAT: why`` on stderr, for an input that could not be used."""
    console.print(Text("skipped ", style="yellow") + Text(f"{shown(what)}: {error}"), highlight=False, soft_wrap=True)


def _one_source(inputs, store) -> None:
    """Audio inputs or ``--store``: exactly one of the two."""
    if not inputs and not store:
        fail("give audio files, folders or manifests, or --store STORE")
    if inputs and store:
        fail("give either inputs or --store, not both")


def _neighbours_line(result: dict) -> Text:
    return Text(
        f"genre precision at {result['k']}: {result['precision']:.3f} of each track's {result['k']} nearest "
        f"neighbours share its label (chance {result['chance']:.3f}; {result['queries']} tracks)"
    )


@command("predict")
def predict_command(
    model_dir: str = typer.Argument(..., help="Model folder written by `mgc train`."),
    inputs: list[str] = typer.Argument(None, help="Audio files, folders (searched recursively) or CSV manifests."),
    store: str = typer.Option(None, "--store", help="Predict every track of this feature store instead."),
    out: str = typer.Option(
        None, "--out", "-o", help="Write one line per track to FILE (JSON lines, or CSV for .csv); resumable."
    ),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Genres to show per track."),
    max_crops: int = typer.Option(
        None, "--max-crops", min=1, help="Cap on crops per track (default: cover the track; fewer is faster)."
    ),
    workers: int = typer.Option(None, "--workers", min=1, help="Decoding processes (default: all cores)."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Crops per network call."),
    scheduler: str = typer.Option(None, "--scheduler", help=SCHEDULER_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON list of results (without --out)."),
) -> None:
    """Predict the genres of audio files or of a store's tracks; unreadable files are reported and skipped."""
    import contextlib

    _one_source(inputs, store)
    with contextlib.ExitStack() as stack:
        _predict(
            model_dir, inputs, store, out, top_k, max_crops, workers, batch_size, json_out, _dask(stack, scheduler)
        )


def _predict(model_dir, inputs, store, out, top_k, max_crops, workers, batch_size, json_out, executor) -> None:
    from mgc.models import predict, predict_to_file

    options = {
        "store": store,
        "top_k": top_k,
        "max_crops": max_crops,
        "workers": workers,
        "batch_size": batch_size,
        "executor": executor,
    }
    if out:
        with ProgressView() as view:
            summary = predict_to_file(model_dir, out, inputs or (), progress=view, **options)
        console.print(
            Text(
                f"wrote {summary['written']} track(s) to {summary['out']} ({summary['failed']} failed; "
                f"{summary['skipped']} already there)"
            ),
            highlight=False,
        )
        if json_out:
            print_json(summary)
        if summary["written"] and summary["written"] == summary["failed"]:
            raise typer.Exit(1)
        return
    results = predict(model_dir, inputs or (), **options)
    if json_out:
        print_json(results)
    else:
        for result in results:
            if result["error"]:
                _skipped(result["path"], result["error"])
                continue
            top = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in result["top"])
            # One line per track, never wrapped, so that scripts can parse it.
            stdout.print(Text(f"{shown(result['track_id'])}: {top}"), highlight=False, soft_wrap=True)
    if not results:
        fail("no audio files found in the given paths")
    if all(r["error"] for r in results):
        raise typer.Exit(1)


@command("embed")
def embed_command(
    model_dir: str = typer.Argument(..., help="Model folder written by `mgc train`."),
    inputs: list[str] = typer.Argument(None, help="Audio files, folders (searched recursively) or CSV manifests."),
    out: str = typer.Option(..., "--out", "-o", help="Embedding store folder (created; resumed when it exists)."),
    store: str = typer.Option(None, "--store", help="Embed every track of this feature store instead."),
    dtype: EmbedDtype = typer.Option("float16", "--dtype", help="Stored precision of the vectors."),
    index: IndexPolicy = typer.Option(
        "auto", "--index", help="Approximate index: auto (from 20,000 vectors), ann (always) or none."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the embeddings in --out instead of resuming."),
    shard_tracks: int = typer.Option(
        4096, "--shard-tracks", min=1, help="Tracks per shard (a kill loses at most one shard of work)."
    ),
    max_crops: int = typer.Option(
        None, "--max-crops", min=1, help="Cap on crops per track (default: cover the track; fewer is faster)."
    ),
    workers: int = typer.Option(None, "--workers", min=1, help="Decoding processes (default: all cores)."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Crops per network call."),
    checkpoint: Which = typer.Option("best", help="best (by validation accuracy) or latest."),
    scheduler: str = typer.Option(None, "--scheduler", help=SCHEDULER_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Write one L2-normalised vector per track (the network's penultimate layer) into an embedding store."""
    import contextlib

    from mgc.models import embed

    _one_source(inputs, store)
    with contextlib.ExitStack() as stack:
        executor = _dask(stack, scheduler)
        view = stack.enter_context(ProgressView())
        summary = embed(
            model_dir,
            out,
            inputs or (),
            store=store,
            dtype=dtype.value,
            index=index.value,
            overwrite=overwrite,
            which=checkpoint.value,
            workers=workers,
            batch_size=batch_size,
            shard_tracks=shard_tracks,
            max_crops=max_crops,
            progress=view,
            executor=executor,
        )
    if json_out:
        print_json(summary)
    else:
        index_note = f"; index {summary['index']}" if summary["index"] else ""
        console.print(
            Text(
                f"embedded {summary['written']} track(s) into {summary['out']} ({summary['failed']} failed; "
                f"{summary['skipped']} already there; {summary['vectors']} vectors in all{index_note})"
            ),
            highlight=False,
        )
    if summary["written"] + summary["failed"] + summary["skipped"] == 0:
        fail("no audio files or tracks found in the given inputs")
    if summary["failed"] and summary["written"] == 0 and summary["skipped"] == 0:
        raise typer.Exit(1)


@command("similar")
def similar_command(
    embeddings: str = typer.Argument(..., help="Embedding store written by `mgc embed`."),
    queries: list[str] = typer.Argument(
        None, help="Track ids of the store, or audio files (embedded with the store's model)."
    ),
    k: int = typer.Option(10, "--k", min=1, help="Tracks to show per query."),
    exact: bool = typer.Option(False, "--exact", help="Search exactly even when an approximate index exists."),
    evaluate_k: bool = typer.Option(
        False, "--precision", help="Print genre precision at k over the store's labelled tracks instead."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """The tracks most similar to each query (cosine similarity of their embeddings)."""
    from mgc.engine.neighbours import store_precision_at_k
    from mgc.models import similar

    if evaluate_k:
        result = store_precision_at_k(embeddings, k, exact=True if exact else None)
        if json_out:
            print_json(result)
        else:
            stdout.print(_neighbours_line(result), highlight=False)
        return
    if not queries:
        fail("give track ids or audio files to search for (or --precision)")
    results = similar(embeddings, queries, k=k, exact=True if exact else None)
    if json_out:
        print_json(results)
        return
    for result in results:
        if result["error"]:
            _skipped(result["query"], result["error"])
            continue
        table = Table(title=f"nearest to {shown(result['query'])}", title_justify="left")
        for column in ("#", "score", "label", "track"):
            table.add_column(column, justify="right" if column in ("#", "score") else "left")
        for rank, hit in enumerate(result["results"], start=1):
            table.add_row(str(rank), f"{hit['score']:.3f}", Text(hit["label"]), Text(shown(hit["track_id"])))
        stdout.print(table)
    if all(r["error"] for r in results):
        raise typer.Exit(1)


@command("report")
def report_command(
    store: str = typer.Argument(..., help="Feature store to describe."),
    model_dir: str = typer.Option(None, "--model", help="Also a model: its test evaluation, F1, confusions, curves."),
    out: str = typer.Option(None, "--out", "-o", help="Report folder (default: STORE-report)."),
    sample: int = typer.Option(2000, "--sample", min=1, help="Tracks read for spectra, examples and the map."),
    seed: int = typer.Option(0, "--seed", help="Seeds the sample."),
) -> None:
    """Figures and numbers about a store (and a model) in a folder with an index.html."""
    from mgc.models import report

    folder = out or f"{store.rstrip('/')}-report"
    with ProgressView() as view:
        numbers = report(store, folder, model_dir=model_dir, sample=sample, seed=seed, progress=view)
    stdout.print(
        Text(f"report of {numbers['tracks']} tracks ({numbers['sampled']} sampled): {folder}/index.html"),
        highlight=False,
    )


if __name__ == "__main__":
    app()
