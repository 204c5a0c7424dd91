"""The ``mgc`` command line: a thin typer app over the library.

Each command parses its arguments, calls one library function and renders what it returns (bars,
tables and one-line errors come from :mod:`mgc.terminal`). Choices and defaults come from the library;
a shared option is declared once.
What a command works on is positional; ``--out/-o`` names what it writes, ``--json`` prints JSON on
stdout. ``mgc train`` refuses an option that does not apply to the kind of model. Errors a user can
cause (``MgcError``) print one line and exit 2 (1 when a run finished but failed, e.g. ``--strict``).
Importing this module loads no JAX.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import traceback
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Group
from rich.text import Text

from mgc import __version__, engine, models
from mgc.engine import ON_CORRUPT, SPEC_PRESETS, FeatureSpec, MgcError, MgcWarning
from mgc.engine.neighbours import ANN_MIN_VECTORS, store_precision_at_k
from mgc.engine.schema import COMPRESSIONS, DEFAULT_COMPRESSION
from mgc.engine.spec import FEATURES, LOGMEL_DTYPES
from mgc.engine.vectors import DTYPES, SHARD_TRACKS
from mgc.engine.verify import verify as check_store
from mgc.models import config
from mgc.terminal import (
    MULTI_PROCESS,
    RESUME,
    Coordinator,
    Distributed,
    JoinTimeout,
    MgcCommand,
    MgcGroup,
    NumProcesses,
    ProcessId,
    above,
    at_least,
    bench_tables,
    console,
    devices_tables,
    duration,
    explain,
    fail,
    failures_table,
    format_bytes,
    join_processes,
    neighbours_line,
    print_json,
    run,
    say,
    shown,
    stdout,
    table,
    trained_line,
    warned,
)
from mgc.terminal import program as terminal_program

SPEC, TRAIN, HEAD, WIDTHS = FeatureSpec(), config.TrainConfig(), config.HeadConfig(), config.ModelConfig.widths


SCHEDULER_HELP = "Dask: tcp://HOST:8786 or local[:N]; needs pip install 'mgc\\[dask]' and paths every worker reads."
ModelDir = Annotated[
    str,
    typer.Argument(
        help=f"Model folder written by `mgc train`, or a built-in model: {', '.join(config.BUILTIN_MODELS)}."
    ),
]
Inputs = Annotated[list[str], typer.Argument(help="Audio files, folders (searched recursively) or CSV manifests.")]
Store = Annotated[str, typer.Option("--store", help="Use every track of this feature store instead of INPUTS.")]
Workers = Annotated[int, typer.Option("--workers", callback=at_least(1), help="Worker processes (default: all cores).")]
Scheduler = Annotated[str, typer.Option("--scheduler", help=SCHEDULER_HELP)]
ALL_FILES_HELP = "List every file of a folder, not only known audio extensions (cover images then fail as unreadable)."
AllFiles = Annotated[bool, typer.Option("--all-files", help=ALL_FILES_HELP)]
MaxCrops = Annotated[
    int, typer.Option("--max-crops", callback=at_least(1), help="Cap on crops per track (default: cover it).")
]
BATCH_HELP = "Crops per network call (default: {cpu} on a CPU, {accelerator} on a GPU or TPU).".format(
    **config.INFERENCE_BATCH
)
BatchSize = Annotated[int, typer.Option("--batch-size", callback=at_least(1), help=BATCH_HELP)]
Checkpoint = Annotated[Literal[config.CHECKPOINTS], typer.Option(help="best (by validation accuracy) or latest.")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (for scripts).")]
#: Shared options whose help and default differ per command: their names (see :func:`shared`).
SHARED = {"out": ("--out", "-o"), "duration": ("--duration",), "tracks_per_genre": ("--tracks-per-genre", "-n")}


def shared(name: str, help: str, default: Any = ..., **kwargs) -> Any:
    """The shared option ``name`` (:data:`SHARED`) with this command's help and default (``...``: required)."""
    return typer.Option(default, *SHARED[name], help=help, **kwargs)


def command(name: str):
    """Register a command whose MgcError or OSError is printed by :func:`fail`: the one catch of the CLI.

    Ctrl-C prints what was kept (:data:`RESUME`); any other exception is a bug in mgc: its traceback is
    shown with a line asking to report it.
    """

    def register(function):
        @functools.wraps(function)
        def checked(*args, **kwargs):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("always", MgcWarning)
                    warnings.showwarning = warned(warnings.showwarning)
                    return function(*args, **kwargs)
            except (MgcError, OSError) as error:  # a full disk or a read-only place is one line too
                fail(explain(error))
            except typer.Exit:
                raise
            except KeyboardInterrupt:
                fail(f"interrupted: {RESUME.get(name, 'nothing was written; run the command again')}", 130)
            except Exception:
                traceback.print_exc()
                fail(f"mgc {__version__} hit an internal error (a bug): please report it with the traceback above", 1)

        return app.command(name, cls=MgcCommand)(checked)

    return register


app = typer.Typer(name="mgc", cls=MgcGroup, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version."),
) -> None:
    """Music genre classification at corpus scale: extract features, train, evaluate, predict."""


@command("synth")
def synth_command(
    out: str = shared("out", "Folder to write the corpus into (created if missing)."),
    tracks_per_genre: int = shared("tracks_per_genre", "Tracks per genre.", 10, callback=at_least(1)),
    duration: float = shared("duration", "Seconds of audio per track.", 30.0, callback=above(0)),
    seed: int = typer.Option(0, help="Seed; the same seed gives bit-identical files."),
    format: str = typer.Option("wav", "--format", "-f", help="wav, flac, ogg or mp3."),
    sr: int = typer.Option(22050, help="Sample rate in Hz.", callback=at_least(1)),
    channels: Literal[1, 2] = typer.Option(1, help="1 (mono) or 2 (stereo)."),
    genres: str = typer.Option("", help="Comma-separated subset of genres (default: all)."),
) -> None:
    """Write a synthetic multi-genre corpus (folder per genre + manifest.csv)."""
    from mgc.engine.synth import make_corpus

    subset = [g.strip() for g in genres.split(",") if g.strip()] or None
    audio = {"seconds": duration, "format": format, "sr": sr, "channels": channels}
    manifest = run(make_corpus, out, tracks_per_genre=tracks_per_genre, seed=seed, genres=subset, **audio)
    typer.echo(f"tracks:   {manifest.parent}/<genre>/<genre>.NNNNN.{format}")
    typer.echo(f"manifest: {manifest}")


def _extract_tables(result) -> Group:
    hours, elapsed = result.audio_seconds / 3600, max(result.elapsed, 1e-9)
    rows = [
        ("tracks in corpus", result.corpus_tracks),
        ("processed by this run", f"{result.processed_tracks} ({result.skipped_tracks} already done, skipped)"),
        ("failed in this run", len(result.failures)),
        ("stored in the store", f"{result.stored_tracks} ({result.failed_tracks} failures recorded)"),
        ("audio decoded", duration(result.audio_seconds)),
        ("time", f"{result.elapsed:.1f} s"),
        ("speed", f"{result.processed_tracks / elapsed:.1f} tracks/s, {hours / elapsed:.3f} audio h/s"),
        ("shards", f"{result.shards_written} written, {result.shards_skipped} skipped"),
        ("spec", result.spec.hash),
    ]
    failed = [(shown(track_id), kind, shown(message)) for track_id, _path, kind, message in result.failures]
    tables = [failures_table("failures in this run", failed, len(failed), 50, "see `mgc inspect`")] if failed else []
    kept = [(shown(track_id), "damaged", shown(damage)) for track_id, _path, damage in result.damaged]
    tables += [failures_table("kept from damaged files (--on-corrupt keep)", kept, len(kept), 50, "")] if kept else []
    return Group(table(f"extract -> {result.store}", None, rows), *tables)


def _verify_store(tracks, store: str) -> None:
    """Print what ``mgc extract --verify`` found; exit 1 when a run would redo anything."""
    check = check_store(tracks, store)
    console.print(table(f"verify {shown(check.store)}", None, check.counts().items()))
    lines = [f"damaged {name}: {reason}" for name, reason in check.damaged_shards[:50]]
    lines += [f"changed {shown(track)} (in {name}): {shown(what)}" for name, track, what in check.changed_tracks[:50]]
    for line in lines + [f"new {shown(track_id)}" for track_id in check.new_tracks[:20]]:
        say(line)
    if check.clean:
        return say("the store is complete and matches the corpus: a run would do nothing")
    say("run the same command without --verify to redo what is listed (it resumes)")
    raise typer.Exit(1)


@command("extract")
def extract_command(
    corpus: str = typer.Argument(help="Folder (one sub-folder per label, or plain) or a CSV manifest."),
    store: str = typer.Argument(help="Store folder to create or resume."),
    manifest: str = typer.Option(None, help="CSV with path,label[,track_id,split,artist]."),
    workers: Workers = None,
    all_files: AllFiles = False,
    sr: int = typer.Option(SPEC.sr, help="Sample rate to resample to.", callback=at_least(1)),
    n_fft: int = typer.Option(SPEC.n_fft, help="FFT window in samples.", callback=at_least(1)),
    hop_length: int = typer.Option(SPEC.hop_length, help="Samples between frames.", callback=at_least(1)),
    n_mels: int = typer.Option(SPEC.n_mels, help="Mel bands.", callback=at_least(1)),
    n_mfcc: int = typer.Option(SPEC.n_mfcc, help="MFCCs per frame (at most --n-mels).", callback=at_least(1)),
    fmin: float = typer.Option(SPEC.fmin, help="Lowest mel frequency.", callback=at_least(0)),
    fmax: float = typer.Option(SPEC.fmax, help="Highest mel frequency (default: sr / 2).", callback=above(0)),
    features: str = typer.Option(",".join(SPEC.features), help=f"Comma-separated: {', '.join(FEATURES)}."),
    logmel_dtype: Literal[LOGMEL_DTYPES] = typer.Option(SPEC.logmel_dtype, help="On-disk dtype of log-mel."),
    preset: Literal[tuple(SPEC_PRESETS)] = typer.Option(None, help="A named spec instead: musicnn (for musicnn-*)."),
    offset: float = typer.Option(None, help="Start of the window to use, seconds.", callback=at_least(0)),
    duration: float = shared("duration", "Seconds of audio to use per track (default: all).", None, callback=above(0)),
    shard_size: int = typer.Option(None, callback=at_least(1), help="Tracks per shard for a new store."),
    compression: Literal[COMPRESSIONS] = typer.Option(DEFAULT_COMPRESSION, help="none, lzf (13% smaller), gzip (22%)."),
    on_corrupt: Literal[ON_CORRUPT] = typer.Option("skip", help="A damaged file: skip it, or keep what decodes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete an existing store and start again."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero if any track failed."),
    verify: bool = typer.Option(False, "--verify", help="Write nothing: list what a run would redo (exit 1 if any)."),
    scheduler: Scheduler = None,
) -> None:
    """Extract features of every track of CORPUS into the sharded HDF5 store STORE (resumable)."""
    chosen = tuple(f.strip() for f in features.split(",") if f.strip())
    spec = {"sr": sr, "n_fft": n_fft, "hop_length": hop_length, "n_mels": n_mels, "n_mfcc": n_mfcc, "fmin": fmin}
    spec = FeatureSpec(**spec, fmax=fmax, features=chosen, logmel_dtype=logmel_dtype)
    spec = FeatureSpec.from_dict(SPEC_PRESETS[preset]) if preset else spec
    tracks = engine.load_corpus(corpus, manifest, all_files=all_files)
    if verify:
        return _verify_store(tracks, store)
    with warnings.catch_warnings(action="ignore", category=MgcWarning):  # extract warns, once
        engine.check_settings(store, spec, offset=offset, duration=duration, on_corrupt=on_corrupt, overwrite=overwrite)
    options = {"offset": offset, "duration": duration, "overwrite": overwrite, "strict": strict, "workers": workers}
    options |= {"shard_size": shard_size, "compression": compression, "on_corrupt": on_corrupt}
    try:
        result = run(engine.extract, tracks, store, spec, scheduler=scheduler, **options)
    except engine.ExtractFailed as exc:
        console.print(_extract_tables(exc.result))
        fail(str(exc), code=1)
    console.print(_extract_tables(result))


def _store_tables(summary: dict) -> Group:
    ratio, failures = summary["compression_ratio"], summary["failures"]
    compression = (
        f"{ratio}x smaller than the raw on-disk dtypes, {summary['compression_ratio_vs_float32']}x than float32"
        if ratio and ratio >= 1
        else f"no gain: the feature arrays take {1 / ratio:.2f}x their raw bytes"
        if ratio
        else "n/a"
    )
    rows = [
        ("spec", f"{summary['spec_hash']}  " + ", ".join(f"{k}={v}" for k, v in summary["spec"].items())),
        ("run", ", ".join(f"{k}={v}" for k, v in summary["run"].items())),
        ("tracks", f"{summary['tracks']} ({summary['frames']} frames, {duration(summary['hours'] * 3600)} of audio)"),
        ("shards", summary["shards"]),
        ("kept damaged", f"{summary['damaged']['count']} (--on-corrupt keep; see --json)"),
        ("size on disk", format_bytes(summary["bytes_on_disk"])),
        ("compression", compression),
    ]
    labels = [(shown(k), v["tracks"], v["frames"], duration(v["hours"] * 3600)) for k, v in summary["labels"].items()]
    columns = ("label", "tracks", "frames", "audio")
    tables = [table(f"store {shown(summary['store'])}", None, rows), table("per label", columns, labels, columns[1:])]
    if failures["count"]:
        failed = [(shown(row["track_id"]), row["kind"], shown(row["message"])) for row in failures["list"]]
        more = "mgc inspect --json lists them all"
        tables.append(failures_table(f"failures ({failures['count']})", failed, failures["count"], 100, more))
        tables[-1].caption = "by reason: " + ", ".join(f"{k}: {n}" for k, n in sorted(failures["by_kind"].items()))
    return Group(*tables)


@command("inspect")
def inspect_command(store: str = typer.Argument(help="A store made by `mgc extract`."), json_out: Json = False) -> None:
    """Describe a store: spec, tracks and frames per label, failures, size on disk, compression."""
    summary = engine.summarize_store(store)
    print_json(summary) if json_out else stdout.print(_store_tables(summary))


@command("demo")
def demo_command(
    out: str = shared("out", "Folder for every artefact; re-running reuses what is complete.", config.DEMO_OUT),
    tracks_per_genre: int = shared(
        "tracks_per_genre", "Corpus size per genre (10 genres).", None, callback=at_least(2)
    ),
    quick: bool = typer.Option(False, "--quick", help="A small run of the same path (about 35 s on 2 cores)."),
    workers: Workers = None,
) -> None:
    """Synthesise a corpus, extract features, train, evaluate and predict: the whole system in one command."""
    overrides = {k: v for k, v in {"tracks_per_genre": tracks_per_genre, "workers": workers}.items() if v is not None}
    started, demo_config = time.perf_counter(), (models.DemoConfig.quick if quick else models.DemoConfig)(**overrides)
    demo = run(models.run_demo, out, demo_config)
    right = [r["predicted"] == r["genre"] for r in demo.fresh]
    rows = [(f"{stage} time", f"{seconds:.1f} s") for stage, seconds in demo.stages.items()]
    rows += [
        ("total time", f"{time.perf_counter() - started:.1f} s"),
        ("test tracks", demo.n_test),
        ("test accuracy", f"{demo.test_accuracy:.3f} (chance {demo.chance:.3f})"),
        ("test macro-F1", f"{demo.test_macro_f1:.3f}"),
        ("fresh tracks right", f"{sum(right)}/{len(demo.fresh)}"),
        *demo.artefacts.items(),
    ]
    typer.echo("")
    stdout.print(table(f"mgc demo: {out}", None, rows))
    mark = [Text(str(r["predicted"])) + Text("" if ok else " x", "red") for r, ok in zip(demo.fresh, right)]
    fresh = [(r["path"].rsplit("/", 1)[-1], r["genre"], m, f"{r['probability']:.2f}") for r, m in zip(demo.fresh, mark)]
    stdout.print(table("fresh tracks (another seed, never seen)", ("file", "genre", "predicted", "p"), fresh))


#: ``mgc train``'s parameters that only the CNN takes (TrainConfig's fields, --resume, --widths), only heads take
#: (HeadConfig's, --vectors) and only backbone heads: from the library's configs, so that they cannot drift.
CNN_ONLY = {f.name for f in dataclasses.fields(config.TrainConfig)} - {"seed"} | {"resume", "widths"} | MULTI_PROCESS
HEAD_ONLY = {f.name for f in dataclasses.fields(config.HeadConfig)} - {"featurizer"} | {"vectors_dir"}
BACKBONE_ONLY = {"fine_tune_epochs", "fine_tune_lr"}


def given(ctx: typer.Context, name: str) -> bool:
    return ctx.get_parameter_source(name).name not in ("DEFAULT", "DEFAULT_MAP")


def refuse(ctx: typer.Context, names: set[str], kind: str, family: str) -> None:
    """Exit 2 naming the first option of ``names`` that was given: it does not apply to ``kind``."""
    flags = [(param.name, param.opts[0]) for param in ctx.command.params if param.name in names]
    if found := [flag for name, flag in flags if given(ctx, name)]:
        fail(f"{found[0]} does not apply to {kind}; {family}: {', '.join(flag for _, flag in flags)}")


def cnn_option(help: str, default_of: str | None = None, *names: str, **kwargs) -> Any:
    """A CNN-only ``mgc train`` option: None unless given (``--resume`` checks those); names its TrainConfig default."""
    default = f" (default: {getattr(TRAIN, default_of)})" if default_of else ""
    return typer.Option(None, *names, help=f"{help}{default}.", **kwargs)


@command("train")
def train_command(
    ctx: typer.Context,
    store: str = typer.Argument(help="Feature store made by `mgc extract`."),
    out: str = shared("out", "Model folder to write (checkpoints, metrics log, splits)."),
    epochs: int = cnn_option(
        "Epochs of training: one pass over the tracks unless --epoch-examples", "epochs", callback=at_least(1)
    ),
    steps: int = cnn_option("Optimizer steps of the whole run (instead of --epochs)", callback=at_least(1)),
    crops_per_track: int = cnn_option(
        "Random crops per track per pass (default: ceil(4096 / tracks), 1 to 8)", callback=at_least(1)
    ),
    epoch_examples: int = cnn_option(
        "Examples per epoch (validation, checkpoint) (default: one pass)", callback=at_least(1)
    ),
    precision: Literal[config.PRECISIONS] = cnn_option("auto: bfloat16 on a GPU or TPU, float32 on a CPU", "precision"),
    reader_processes: int = cnn_option("Processes building the batches", "reader_processes", callback=at_least(0)),
    memory_limit_mb: float = cnn_option(
        "Log-mel held in memory, else windows are shuffled", "memory_limit_mb", callback=at_least(0)
    ),
    batch_size: int = cnn_option(
        "Global batch size, a multiple of the device count", "batch_size", callback=at_least(1)
    ),
    lr: float = cnn_option("Peak learning rate (warm-up then cosine)", "lr", callback=above(0)),
    crop_seconds: float = cnn_option("Length of the random training crops", "crop_seconds", callback=above(0)),
    parallel: Literal[config.PARALLELS] = cnn_option("jit (jax.jit over a device mesh) or pmap", "parallel"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in --out."),
    seed: int = typer.Option(None, help=f"Seeds initialisation, splits, crops, augmentation (default: {TRAIN.seed})."),
    mixup_alpha: float = cnn_option(
        "Mixup Beta(alpha, alpha); 0 turns it off", "mixup_alpha", "--mixup", callback=at_least(0)
    ),
    checkpoint_every: int = cnn_option("Also checkpoint every N steps (default: once per epoch)", callback=at_least(1)),
    split_file: list[str] = typer.Option(None, help="NAME=PATH, one track id per line (train, valid, test)."),
    widths: str = cnn_option(f"Channels per conv block, e.g. 16,32,64 (default: {','.join(map(str, WIDTHS))})"),
    model_kind: Literal[config.MODEL_KINDS] = typer.Option(
        config.MODEL_KINDS[0],
        "--model",
        help="cnn (the short-chunk CNN) or stats (a head on MFCC and log-mel statistics).",
    ),
    backbone: Literal[config.BACKBONES] = typer.Option(
        None, help=f"A head on this pretrained network's layer (musicnn: {config.DEFAULT_BACKBONE}, measured best)."
    ),
    c: float = typer.Option(
        HEAD.c, "--c", callback=above(0), help="Inverse L2 strength of a stats or backbone head (> 0)."
    ),
    level: Literal[config.LEVELS] = typer.Option(
        HEAD.level, help="A head fitted on each 3 s patch (its track: their mean probability) or on one vector a track."
    ),
    patches: int = typer.Option(HEAD.patches, callback=at_least(1), help="--level patch: patches per track at most."),
    head: Literal[config.HEADS] = typer.Option(HEAD.head, help="linear (logistic regression) or mlp (a hidden layer)."),
    hidden: int = typer.Option(HEAD.hidden, callback=at_least(1), help="Hidden units of an mlp head."),
    max_iter: int = typer.Option(
        HEAD.max_iter, callback=at_least(1), help="L-BFGS iterations at most of a linear head."
    ),
    fine_tune_epochs: int = typer.Option(
        HEAD.fine_tune_epochs,
        "--fine-tune",
        callback=at_least(0),
        help="With --backbone: then train the backbone and head N passes.",
    ),
    fine_tune_lr: float = typer.Option(HEAD.fine_tune_lr, callback=above(0), help="Peak learning rate of --fine-tune."),
    vectors_dir: str = typer.Option(None, "--vectors", help="A head's vector cache, sharable (default: OUT/vectors)."),
    coordinator: Coordinator = None,
    num_processes: NumProcesses = None,
    process_id: ProcessId = None,
    distributed: Distributed = None,
    join_timeout: JoinTimeout = None,
    json_out: Json = False,
) -> None:
    """Train a genre model on a feature store: the CNN on every local device, or a head on a featurizer's vectors.

    --model stats or --backbone NAME trains a head (--level, --patches, --head, --hidden, --c, --max-iter,
    --vectors), by default on each 3 s patch of every training track; with a backbone, --fine-tune N then trains
    the backbone and the head together. An option of the other kind is refused.
    """
    kind = f"--backbone {backbone}" if backbone else f"--model {model_kind}"
    if backbone and given(ctx, "model_kind"):
        fail(f"--model does not apply to {kind} (a head on a featurizer's vectors): give --model or --backbone")
    if kind == "--model cnn":
        refuse(ctx, HEAD_ONLY, "the CNN (--model cnn)", "head-only options (--model stats and --backbone heads)")
    else:
        refuse(ctx, CNN_ONLY, f"{kind} (a head on a featurizer's vectors)", "CNN-only options")
        if not backbone:
            refuse(ctx, BACKBONE_ONLY, f"{kind} (no network to fine-tune)", "backbone-only options")
    if kind != "--model cnn":
        head = {name: ctx.params[name] for name in HEAD_ONLY} | {"seed": TRAIN.seed if seed is None else seed}
        s = run(models.train_head, store, out, backbone or model_kind, split_files=split_file or None, **head)
    else:  # the TrainConfig fields given: overrides for a new run, checked against the saved run on --resume
        given_config = {k: v for k, v in ctx.params.items() if k in CNN_ONLY | {"seed"} and hasattr(TRAIN, k)}
        overrides = {k: v for k, v in given_config.items() if v is not None}
        model, files = config.ModelConfig.with_widths(widths), split_file or None
        join_processes(ctx.params, store)  # --coordinator or --distributed auto: one run over several processes
        s = run(models.train, store, out, overrides, model_config=model, resume=resume, split_files=files)
    print_json(s) if json_out else say(trained_line(s))


@command("devices")
def devices_command(json_out: Json = False) -> None:
    """Show the devices JAX uses here and why: backend, devices, versions, the choices of `auto`."""
    from mgc.models.devices import describe

    report = describe()
    print_json(report) if json_out else console.print(devices_tables(report))


@command("bench")
def bench_command(
    corpus: str = typer.Argument(None, help="A folder or manifest; default: a generated corpus of 30 s tracks."),
    workers: str = typer.Option(None, "--workers", help="extract's worker counts, e.g. 1,2,N (default 1,N)."),
    peers: str = typer.Option("all", "--peers", help="Peers to measure: all, or names such as librosa,torchaudio."),
    tracks: int = typer.Option(20, "--tracks", min=1, help="Tracks to measure (spread over the corpus)."),
    repeat: int = typer.Option(5, "--repeat", min=1, help="Timed rounds per figure (the median is kept)."),
    plot: Path = typer.Option(None, "--plot", help="Also draw the table as bars into this new PNG file."),
    json_out: Json = False,
) -> None:
    """Measure feature throughput here: decode, resample, kernels, every peer installed, FFT limits, extract."""
    from mgc.engine import bench

    counts = bench.parse_workers(workers, bench.usable_cores())
    if plot:
        bench.check_plot_path(plot)  # refused before minutes of measuring, not after
    result = run(bench.bench, corpus, workers=counts, peers=bench.parse_peers(peers), tracks=tracks, repeat=repeat)
    if plot:
        bench.plot(result, plot)
    print_json(result) if json_out else stdout.print(bench_tables(result))


@command("evaluate")
def evaluate_command(
    model_dir: ModelDir,
    store: str = typer.Argument(help="Feature store made with the model's FeatureSpec."),
    split: Literal[config.EVAL_SPLITS] = typer.Option("test", help="The model's saved split, or all labelled tracks."),
    out: str = shared("out", "Where to write metrics.json and the PNGs (default: MODEL_DIR/eval-SPLIT).", None),
    max_crops: MaxCrops = None,
    checkpoint: Checkpoint = config.CHECKPOINTS[0],
    k: int = typer.Option(
        config.NEAREST_K,
        callback=at_least(1),
        help="Neighbours per track for genre precision at k (similarity of the embeddings).",
    ),
    json_out: Json = False,
) -> None:
    """Track-level accuracy, macro-F1, per-class precision/recall, a confusion matrix and genre precision at k."""
    options = {"split": split, "out_dir": out, "max_crops": max_crops, "which": checkpoint, "precision_k": k}
    m = run(models.evaluate, model_dir, store, **options)
    if json_out:
        return print_json(m)
    names, columns = m["label_names"], ("label", "precision", "recall", "F1", "tracks")
    scores = ([f"{v:.3f}" for v in m[key]] for key in ("precision", "recall", "f1"))
    title = f"{split}: {m['n_tracks']} tracks, accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}"
    stdout.print(table(title, columns, list(zip(names, *scores, m["support"])), columns[1:]))
    # Columns are numbered so that ten or more labels still fit a terminal.
    numbers = [str(j) for j in range(len(names))]
    rows = [(f"{i} {name}", *row) for i, (name, row) in enumerate(zip(names, m["confusion"]))]
    title = "confusion matrix (rows: true label, columns: predicted label number)"
    confusion = table(title, ("true label", *numbers), rows, numbers)
    confusion.columns[0].no_wrap = True
    stdout.print(confusion)
    say(neighbours_line(m["genre_precision_at_k"]), stdout)
    names = {"confusion_png": "confusion matrix (PNG)", "curves_png": "training curves (PNG)"}
    for kind, path in m["files"].items():
        say(f"{names.get(kind, kind)}: {path}", stdout)


def _skipped(what, error: str) -> None:
    say(Text("skipped ", style="yellow") + Text(f"{shown(what)}: {error}"))


@command("predict")
def predict_command(
    model_dir: ModelDir,
    inputs: Inputs = None,
    store: Store = None,
    out: str = shared("out", "Write one line per track to FILE (JSON lines, or CSV for .csv); resumable.", None),
    top_k: int = typer.Option(config.TOP_K, callback=at_least(1), help="Genres to show per track."),
    max_crops: MaxCrops = None,
    workers: Workers = None,
    all_files: AllFiles = False,
    batch_size: BatchSize = None,
    scheduler: Scheduler = None,
    json_out: Json = False,
) -> None:
    """Predict the genres of audio files or of a store's tracks; unreadable files are reported and skipped."""
    options = {"store": store, "top_k": top_k, "max_crops": max_crops, "workers": workers, "batch_size": batch_size}
    options["all_files"] = all_files
    if inputs and not scheduler and workers != 1:  # a decoder warms up on another core while JAX loads
        engine.prestart_pool(workers)
    if out:
        s = run(models.predict_to_file, model_dir, out, inputs or (), scheduler=scheduler, **options)
        say(f"wrote {s['written']} track(s) to {s['out']} ({s['failed']} failed; {s['skipped']} already there)")
        if json_out:
            print_json(s)
        if s["written"] and s["written"] == s["failed"]:
            raise typer.Exit(1)
        return
    results = run(models.predict, model_dir, inputs or (), scheduler=scheduler, **options)
    if json_out:
        print_json(results)
    for result in [] if json_out else results:
        if result["error"]:
            _skipped(result["path"], result["error"])
        else:  # one line per track, never wrapped, so that scripts can parse it
            top = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in result["top"])
            say(f"{shown(result['track_id'])}: {top}", stdout)
    if results and all(r["error"] for r in results):
        raise typer.Exit(1)


@command("embed")
def embed_command(
    model_dir: ModelDir,
    inputs: Inputs = None,
    out: str = shared("out", "Embedding store folder (created; resumed when it exists)."),
    store: Store = None,
    dtype: Literal[DTYPES] = typer.Option(config.EMBED_DTYPE, help="Stored precision of the vectors."),
    index: Literal[config.EMBED_INDEXES] = typer.Option(
        config.EMBED_INDEX, help=f"Approximate index: auto (from {ANN_MIN_VECTORS:,} vectors), ann (always) or none."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the embeddings in --out instead of resuming."),
    shard_tracks: int = typer.Option(
        SHARD_TRACKS, callback=at_least(1), help="Tracks per shard (a kill loses at most one shard of work)."
    ),
    max_crops: MaxCrops = None,
    workers: Workers = None,
    all_files: AllFiles = False,
    batch_size: BatchSize = None,
    checkpoint: Checkpoint = config.CHECKPOINTS[0],
    scheduler: Scheduler = None,
    json_out: Json = False,
) -> None:
    """Write one L2-normalised vector per track (the network's penultimate layer) into an embedding store."""
    options = {"dtype": dtype, "index": index, "overwrite": overwrite, "which": checkpoint, "max_crops": max_crops}
    options |= {"store": store, "workers": workers, "batch_size": batch_size, "shard_tracks": shard_tracks}
    if inputs and not scheduler and workers != 1:
        engine.prestart_pool(workers)
    s = run(models.embed, model_dir, out, inputs or (), scheduler=scheduler, all_files=all_files, **options)
    index_note = f"; index {s['index']}" if s["index"] else ""
    counts = f"{s['failed']} failed; {s['skipped']} already there; {s['vectors']} vectors in all{index_note}"
    print_json(s) if json_out else say(f"embedded {s['written']} track(s) into {s['out']} ({counts})")
    if s["failed"] and s["written"] == 0 and s["skipped"] == 0:
        raise typer.Exit(1)


@command("similar")
def similar_command(
    embeddings: str = typer.Argument(help="Embedding store written by `mgc embed`."),
    queries: list[str] = typer.Argument(None, help="Track ids of the store, or audio files (embedded by its model)."),
    k: int = typer.Option(config.NEAREST_K, callback=at_least(1), help="Tracks to show per query."),
    exact: bool = typer.Option(False, "--exact", help="Search exactly even when an approximate index exists."),
    evaluate_k: bool = typer.Option(False, "--precision", help="Print genre precision at k of the store instead."),
    json_out: Json = False,
) -> None:
    """The tracks most similar to each query (cosine similarity of their embeddings)."""
    if evaluate_k:
        result = run(store_precision_at_k, embeddings, k, exact=True if exact else None)
        return print_json(result) if json_out else say(neighbours_line(result), stdout)
    results = models.similar(embeddings, queries, k=k, exact=True if exact else None)
    if json_out:
        return print_json(results)
    for result in results:
        if result["error"]:
            _skipped(result["query"], result["error"])
            continue
        rows = [(i, f"{h['score']:.3f}", h["label"], shown(h["track_id"])) for i, h in enumerate(result["results"], 1)]
        title = f"nearest to {shown(result['query'])}"
        stdout.print(table(title, ("#", "score", "label", "track"), rows, ("#", "score"), title_justify="left"))
    if results and all(r["error"] for r in results):
        raise typer.Exit(1)


@command("report")
def report_command(
    store: str = typer.Argument(help="Feature store to describe."),
    model_dir: str = typer.Option(None, "--model", help="Also a model: its test evaluation, F1, confusions, curves."),
    out: str = shared("out", "Report folder (default: STORE-report).", None),
    sample: int = typer.Option(
        config.REPORT_SAMPLE, callback=at_least(1), help="Tracks read for spectra, examples and the map."
    ),
    seed: int = typer.Option(0, help="Seeds the sample."),
) -> None:
    """Figures and numbers about a store (and a model) in a folder with an index.html."""
    folder = out or f"{store.rstrip('/')}-report"
    numbers = run(models.report, store, folder, model_dir=model_dir, sample=sample, seed=seed)
    say(f"report of {numbers['tracks']} tracks ({numbers['sampled']} sampled): {folder}/index.html", stdout)


def program() -> None:
    """The ``mgc`` program (the console script, and ``python -m mgc.cli``): :func:`mgc.terminal.program`."""
    terminal_program(app)


if __name__ == "__main__":
    program()
