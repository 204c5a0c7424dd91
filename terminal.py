"""The terminal side of the ``mgc`` CLI: one-line errors and warnings, help as its text spells it, tables, bars.

``cli.py`` declares the commands; this module holds what every command shares: the typer command and
group classes (usage mistakes and option ranges are one ``error:`` line, exit 2, before any work),
:func:`fail` and :func:`explain` for a user's mistakes, the ``warning:`` line of an ``MgcWarning``,
the text helpers and tables (markup off: a file name is printed as it is), and :func:`run`, which
renders the library's progress events as bars and connects to Dask. Importing it loads no JAX.
"""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer >= 0.29 vendors click; no public name
from typer.core import TyperCommand, TyperGroup

from mgc.engine import MgcError, MgcWarning, ProgressEvent, check_at_least
from mgc.engine.cluster import dask_executor

#: What an interrupted command kept, and how to go on (Ctrl-C prints it, exit 130).
RESUME = {
    "extract": "shards already written are kept; the same command resumes",
    "train": "checkpoints already written are kept; the same command with --resume continues",
    "predict": "with --out, lines already written are kept and the same command resumes; without it, nothing is kept",
    "embed": "shards already written are kept; the same command resumes",
    "synth": "files already written are kept; the same command redoes the rest",
    "demo": "what is complete is kept; the same command reuses it",
}
#: Commands whose every write is committed when they return: the program ends without the interpreter's
#: teardown (JAX's takes about 0.4 s of a one-file ``mgc predict``).
QUICK_EXIT = {"predict", "embed", "similar", "evaluate", "inspect", "devices"}

console = Console(stderr=True)  # progress, status and errors
_joined = False  # this process joined a multi-process run (program() then ends it without JAX's teardown)
stdout = Console()  # results


def at_least(low, *, strict: bool = False):
    """An option callback refusing a value below ``low`` (``strict``: not above it), in the library's wording."""

    def check(_ctx, param, value):
        for one in value if isinstance(value, (list, tuple)) else [value]:
            check_at_least(param.opts[0], one, low, strict=strict)
        return value

    return check


def above(low):
    """An option callback refusing a value that is not above ``low``."""
    return at_least(low, strict=True)


def fail(message: str, code: int = 2) -> None:
    """Print a user-facing error (markup off) without a traceback and exit non-zero."""
    console.print(Text("error: ", style="bold red") + Text(str(message)), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def explain(error: BaseException) -> str:
    """One line for a user's mistake: an OSError as ``PATH: what`` (not ``[Errno 17] ...``)."""
    if isinstance(error, OSError) and error.strerror:
        where = f"{shown(error.filename)}: " if error.filename is not None else ""
        return f"{where}{error.strerror[:1].lower()}{error.strerror[1:]}"
    return str(error)


def warned(python_way):
    """The CLI's ``warnings.showwarning``: an MgcWarning is one ``warning:`` line; others go ``python_way``."""

    def show(message, category, *args, **kwargs) -> None:
        if not issubclass(category, MgcWarning):
            return python_way(message, category, *args, **kwargs)
        console.print(Text("warning: ", style="bold yellow") + Text(shown(message)), highlight=False, soft_wrap=True)

    return show


def usage_checked(parse):
    """``parse`` (a ``parse_args``) whose usage mistakes and option checks (callbacks) print one line, exit 2."""

    @functools.wraps(parse)
    def checked(ctx, args):
        try:
            return parse(ctx, args)
        except NoArgsIsHelpError:
            raise
        except UsageError as error:
            message = error.format_message().replace("Value error, ", "").rstrip(".")
            fail(f"{message[:1].lower()}{message[1:]} (see `{ctx.command_path} --help`)")
        except MgcError as error:
            fail(str(error))

    return checked


def tidy(params) -> None:
    """Help as the text spells it: arguments in capitals, flags without a type, lists as ``<str>...``."""
    for param in params:
        if param.param_type_name == "argument":
            param.metavar = param.name.upper()
        elif getattr(param, "is_flag", False):
            param.metavar = ""
        if param.multiple or param.nargs != 1:
            param.display_type_rich = lambda ctx: "<str>..."


class FlagHelp:
    """Shows ``--help`` as the flag it is (no ``<bool>``), for a command or a group (a mixin before typer's class)."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class MgcCommand(FlagHelp, TyperCommand):
    """A command whose help spells arguments as its text does (CORPUS, INPUTS...) and shows flags as flags.

    Its usage mistakes are one line each (:func:`usage_checked`).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.parse_args = usage_checked(super().parse_args)
        tidy(self.params)

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar]
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces


class MgcGroup(FlagHelp, TyperGroup):
    """The ``mgc`` group: an unknown command or option is one line too."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.parse_args = usage_checked(super().parse_args)
        self.resolve_command = usage_checked(super().resolve_command)
        tidy(self.params)


def say(text: str | Text, out: Console = console) -> None:
    """One line as it is (no markup, no highlighting, never wrapped) on stderr, or on ``out``."""
    out.print(text if isinstance(text, Text) else Text(text), highlight=False, soft_wrap=True)


def print_json(data) -> None:
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


def duration(seconds: float) -> str:
    """Seconds of audio for a person: ``42 s``, ``7.5 min``, ``3.20 h``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.2f} h"


def count(n: int, noun: str) -> str:
    """``1 step``, ``2 steps``, ``2 processes``."""
    return f"{n} {noun}{'' if n == 1 else 'es' if noun.endswith('s') else 's'}"


def table(title: str, columns, rows, right=(), **options) -> Table:
    """A table of ``rows`` as plain text (``columns`` None: key-value rows); the ``right`` columns align right."""
    result = Table(title=title, show_header=columns is not None, **options)
    for column in columns or ("", ""):
        result.add_column(column, justify="right" if column in right else "left")
    for row in rows:
        result.add_row(*(cell if isinstance(cell, Text) else Text(str(cell)) for cell in row))
    return result


def failures_table(title: str, rows: list, count: int, limit: int, more: str) -> Table:
    """The first ``limit`` of ``count`` failures (track, kind, message); ``more`` says where the rest are."""
    extra = [("...", "", f"{count - limit} more: {more}")] if count > limit else []
    return table(title, ("track", "kind", "message"), rows[:limit] + extra)


def status_text(event: ProgressEvent, state: dict) -> str:
    """The text beside a task's bar, from its event's ``info``."""
    info = event.info
    if event.task == "extract":
        elapsed, hours = max(info.get("elapsed", 0.0), 1e-9), info.get("audio_seconds", 0.0) / 3600
        return f"{event.done / elapsed:.1f} tracks/s, {hours / elapsed:.2f} audio h/s, {info.get('failed', 0)} failed"
    if event.task == "train":
        if event.kind == "start":
            state["epochs"] = info.get("epochs", 0)
            return "compiling"
        if info.get("val_accuracy") is not None:
            state["val"] = f"{info['val_accuracy']:.3f}"
        if "loss" in info:
            state["status"] = (
                f"epoch {info['epoch'] + 1}/{state.get('epochs', '?')}  {info['examples_per_s']:.0f} ex/s  "
                f"loss {info['loss']:.4f}  val acc {state.get('val', '-')}"
            )
        return state.get("status", "")
    if event.task == "fine-tune" and "loss" in info:
        return f"pass {info['epoch']}  loss {info['loss']:.4f}"
    return f"{info['failed']} failed" if "failed" in info else ""  # predict, embed


def show(bars: Progress, states: dict, event: ProgressEvent) -> None:
    """Render one :class:`ProgressEvent` of any task: a bar per task on ``bars``, a line per ``stage`` event."""
    if event.kind == "stage":
        return bars.console.print(Text(f"{event.info.get('stage', event.task):>8} ", "bold cyan") + Text(event.message))
    state = states.setdefault(event.task, {})
    if event.task == "train" and event.kind == "start" and "precision" in event.info:  # the choices of the run
        info = event.info
        readers = info.get("reader_processes") or 0
        bars.console.print(
            Text(
                f"train: {count(info['devices'], 'device')} ({info['backend']})"
                + (f" in {count(info['processes'], 'process')}" if info.get("processes", 1) > 1 else "")
                + f", precision {info['precision']}, batch {info['batch_size']}, "
                + (f"{count(readers, 'reader process')}" if readers else "batches built in this process")
            ),
            highlight=False,
        )
    status, bar = status_text(event, state), {"completed": event.done, "total": event.total}
    if "id" not in state or event.kind == "start" and state["ended"]:
        state["id"], state["ended"] = bars.add_task(event.task, unit=event.unit, status=status, **bar), False
    bars.update(state["id"], status=status, **bar)
    state["ended"] = state["ended"] or event.kind == "end"


Coordinator = Annotated[
    str, typer.Option("--coordinator", help="HOST:PORT of process 0: one training over several processes.")
]
NumProcesses = Annotated[int, typer.Option("--num-processes", callback=at_least(1), help="Processes of the run.")]
ProcessId = Annotated[int, typer.Option("--process-id", callback=at_least(0), help="This process: 0 to N-1.")]
Distributed = Annotated[
    Literal["auto"], typer.Option("--distributed", help="auto: join the cluster JAX detects (SLURM, MPI, TPU).")
]
JoinTimeout = Annotated[
    float, typer.Option("--join-timeout", callback=above(0), help="Seconds to wait for every process (default: 300).")
]
#: The options of a multi-process training (CNN only).
MULTI_PROCESS = {"coordinator", "num_processes", "process_id", "distributed", "join_timeout"}


def join_processes(params: dict, store: str) -> None:
    """Join a multi-process run when the command's ``params`` ask for one (``--coordinator`` or ``--distributed``).

    Every process must run the same command but for ``--process-id``: the store's index, ``--out`` and
    every training option are compared through a digest before JAX's runtime starts.
    """
    global _joined
    coordinator, auto = params.get("coordinator"), params.get("distributed") == "auto"
    if coordinator is None and not auto:
        if params.get("num_processes") is not None or params.get("process_id") is not None:
            fail("--num-processes and --process-id go with --coordinator HOST:PORT")
        return
    if coordinator is not None and auto:
        fail("--coordinator and --distributed auto exclude each other: give one")
    from mgc.models.training import distributed

    try:
        index = (Path(store) / "index.json").read_bytes()
    except OSError:
        index = b""  # the training refuses the store with its own message
    skip = {"process_id", "store", "json_out", "join_timeout"}
    digest = distributed.settings_digest(index, {k: v for k, v in sorted(params.items()) if k not in skip})
    timeout = params.get("join_timeout") or 300.0
    distributed.join(coordinator, params.get("num_processes"), params.get("process_id"), digest=digest,
                     timeout=timeout, auto=auto)  # fmt: skip
    _joined = True


def devices_tables(report: dict) -> Group:
    """``mgc devices``: one row per device under the backend, versions and choices; a warning line when due."""
    versions = ", ".join(f"{name} {version}" for name, version in report["versions"].items() if version)
    title = (
        f"JAX backend {report['backend']}: {versions}; --precision auto = {report['precision']}, "
        f"inference batch {report['inference_batch']}"
    )
    rows = [
        (
            d["id"],
            d["platform"],
            d["kind"],
            d["process"],
            format_bytes(d["memory_bytes"]) if "memory_bytes" in d else "-",
        )
        for d in report["devices"]
    ]
    result = table(title, ("device", "platform", "kind", "process", "memory"), rows, ("device", "process"))
    warning = [Text("warning: ", style="bold yellow") + Text(report["warning"])] if report["warning"] else []
    return Group(result, *warning)


def neighbours_line(result: dict) -> str:
    """The genre-precision line of ``similar --precision`` and ``evaluate --k``."""
    note = f"\nnote: {result['note']}" if result.get("note") else ""
    return (
        f"genre precision at {result['k']}: {result['precision']:.3f} of each track's {result['k']} nearest "
        f"neighbours share its label (chance {result['chance']:.3f}; {result['queries']} tracks){note}"
    )


def trained_line(s: dict) -> str:
    """The line ``mgc train`` prints after a run (CNN or head)."""
    if "head" not in s:
        last, best = s["last"] or {}, s["best_val_accuracy"]
        processes = f" in {count(s['processes'], 'process')}" if s.get("processes", 1) > 1 else ""
        return (
            f"trained {count(s['steps'], 'step')} on {count(s['devices'], 'device')}{processes} ({s['parallel']}); "
            f"last train loss {last.get('train_loss', float('nan')):.4f}; best validation accuracy "
            f"{'-' if best is None else f'{best:.3f}'}; model in {s['model_dir']}"
        )
    valid, steps, tuning = s["valid_accuracy"], "L-BFGS iterations" if s["head"] == "linear" else "Adam steps", ""
    if tuned := s.get("fine_tune"):
        tuning = (
            f"; fine-tuned {count(tuned['steps'], 'step')} in {tuned['seconds']:.1f} s, kept pass {tuned['best_epoch']}"
        )
    level = s.get("level", "track")
    on = f"patch-level ({s['vectors_fitted']:,} patches) " if level == "patch" else "track-level "
    return (
        f"trained a {on}{s['head']} {s['featurizer']} head in {s['seconds']:.1f} s ({s['iterations']} {steps}; "
        f"vectors {s['vector_seconds']:.1f} s{tuning}); train accuracy {s['train_accuracy']:.3f}, "
        f"validation accuracy {'-' if valid is None else f'{valid:.3f}'}; model in {s['model_dir']}"
    )


def run(function, *args, scheduler: str | None = None, progress: bool = True, **kwargs):
    """``function(*args, **kwargs)`` with progress bars, and on Dask with ``scheduler`` (announced on stderr)."""
    with contextlib.ExitStack() as stack:
        if scheduler:
            session = stack.enter_context(dask_executor(scheduler))
            where = "started a local cluster" if session.local else "connected to"
            link = f"; dashboard {session.dashboard_link}" if session.dashboard_link else ""
            console.print(Text(f"dask: {where} {session.address} with {session.n_workers} workers{link}"))
            kwargs["executor"] = session.executor
        if progress:
            columns = [TextColumn("[bold]{task.description:>7}"), BarColumn(), MofNCompleteColumn()]
            columns += [TextColumn("{task.fields[unit]}"), TextColumn("{task.fields[status]}"), TimeElapsedColumn()]
            bars = stack.enter_context(Progress(*columns, TimeRemainingColumn(), console=console))
            kwargs["progress"] = functools.partial(show, bars, {})
        return function(*args, **kwargs)


def program(app) -> None:
    """Run the typer ``app`` as a program; after a :data:`QUICK_EXIT` command, end without the interpreter's teardown.

    Not when a decode pool started ahead was never used: its shutdown releases semaphores that the
    resource tracker would otherwise report.
    """
    import os
    import sys

    from mgc.engine import prestarted

    try:
        app()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
        if done.code is not None and not isinstance(done.code, int):
            print(done.code, file=sys.stderr)
    if _joined:  # a multi-process run: leave it together after success; after an error, at once
        from mgc.models.training import distributed

        if code == 0:
            try:
                distributed.shutdown()
            except Exception as exc:  # a peer that died at the very end
                console.print(Text(f"warning: leaving the multi-process run: {exc}"), highlight=False)
        distributed.leave(code)
        distributed.exit_now(code)  # JAX's exit handler would wait for (and abort on) a process that is gone
    if len(sys.argv) > 1 and sys.argv[1] in QUICK_EXIT and not prestarted():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _rate(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 or digits == 0 else f"{value:.{digits}f}"


def _bench_row(section: str, r: dict, context: dict) -> tuple:
    """One row of a ``mgc bench`` table (the columns of :data:`BENCH_COLUMNS` for ``section``)."""
    core, whole, seconds = r.get("per_core", {}), r.get("machine", {}), r["seconds"]
    first = f"{r['first_seconds'] * 1e3:,.0f}" if r.get("first_seconds") else "-"
    if section == "decode":
        per_track = seconds / max(1, r.get("tracks", 1))
        return (
            r["name"],
            f"{per_track * 1e3:,.1f}",
            _rate(core["x_realtime"]),
            _rate(core["tracks_per_s"], 1),
            _rate(whole["audio_hours_per_s"], 2),
        )
    if section == "kernels":
        fft = context["fft"]
        versus = f"{seconds / fft['seconds']:.2f}x" if fft else "-"
        return (
            r["name"],
            f"{seconds * 1e3:,.2f}",
            _rate(core["x_realtime"]),
            _rate(whole["audio_hours_per_s"], 2),
            versus,
            first,
        )
    if section == "peers":
        feature = r["name"].rsplit(" ", 1)[1]
        ours = context["mgc"].get(feature)
        parity = "-" if r.get("parity") is None else f"{r['parity']:.2g}"
        return (
            r["name"],
            f"{seconds * 1e3:,.2f}",
            _rate(core["x_realtime"]),
            f"{seconds / ours:.2f}x" if ours else "-",
            parity,
            first,
        )
    if section == "limits":
        note = (
            f"{r['bytes'] / seconds / 1e9:.1f} GB/s" if r.get("bytes") else ("fastest" if r is context["fft"] else "")
        )
        return (r["name"], f"{seconds * 1e3:,.2f}", _rate(core["x_realtime"]), note)
    one = context["one_worker"]
    scaling = f"{one / seconds:.2f}x" if one and r.get("workers") != 1 else "-"
    cores = f"{r['cpu_seconds'] / seconds:.1f}" if r.get("cpu_seconds") else "-"
    return (
        r["name"],
        f"{seconds:,.2f}",
        _rate(whole["tracks_per_s"], 1),
        _rate(whole["audio_hours_per_s"], 2),
        _rate(whole["x_realtime"]),
        cores,
        _rate(core["x_realtime"]),
        scaling,
    )


#: Section -> column headings of its ``mgc bench`` table (the first is the row's name).
BENCH_COLUMNS = {
    "decode": ("what", "ms/track", "x real time", "tracks/s", "machine h/s"),
    "kernels": ("kernel", "ms", "x real time", "machine h/s", "vs fastest FFT", "1st call ms"),
    "peers": ("peer", "ms", "x real time", "time vs mgc", "max diff", "1st call ms"),
    "limits": ("what", "ms", "x real time", "note"),
    "extract": ("run", "seconds", "tracks/s", "audio h/s", "x real time", "cores busy", "per core", "vs 1 worker"),
}


def bench_tables(result: dict) -> Group:
    """``mgc bench``: the machine and corpus lines, then a table per section (decode ... extract)."""
    from mgc.engine.bench.plot import SECTION_TITLES

    machine, corpus = result["machine"], result["corpus"]
    libraries = ", ".join(f"{name} {version}" for name, version in machine["libraries"].items())
    formats = ", ".join(f"{n} {fmt}" for fmt, n in corpus["formats"].items())
    where = "a generated corpus" if corpus["generated"] else corpus["path"]
    head = [
        Text(f"machine: {machine['cpu']}, {machine['cores']} cores; BLAS {'; '.join(machine['blas'])}"),
        Text(f"libraries: {libraries}"),
        Text(f"corpus: {corpus['tracks']} tracks ({formats}) of {where}"),
        Text(
            f"one thread per figure, in a fresh process: median of {result['repeat']} rounds after a warm-up; "
            "per core, except 'machine' (per core x cores) and extract (measured, pool start included; "
            "its per core is per CPU second where measured); "
            "max diff: largest difference from librosa (dB for log-mel)"
        ),
    ]
    rows_of = {section: [r for r in result["rows"] if r["section"] == section] for section in SECTION_TITLES}
    ffts = [r for r in rows_of["limits"] if r.get("seconds") and r.get("frames") and not r["name"].startswith("mgc")]
    one = [r["seconds"] for r in rows_of["extract"] if r.get("workers") == 1 and r.get("seconds")]
    context = {
        "fft": min(ffts, key=lambda r: r["seconds"]) if ffts else None,
        "mgc": {r["name"].split(" ", 1)[1]: r["seconds"] for r in rows_of["peers"] if r["name"].startswith("mgc ")},
        "one_worker": one[0] if one else None,
    }
    tables = []
    for section, title in SECTION_TITLES.items():
        columns = BENCH_COLUMNS[section]
        rows = [
            _bench_row(section, r, context)
            if r.get("seconds")
            else (r["name"], *["-"] * (len(columns) - 2), r.get("error") or "not measured")
            for r in rows_of[section]
        ]
        if rows:
            tables.append(table(title, columns, rows, right=columns[1:]))
    return Group(*head, *tables)
