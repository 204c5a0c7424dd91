"""The docs cannot drift from the code.

Every ``mgc COMMAND`` and ``--option`` written in README.md and docs/*.md must
exist in the CLI, every CLI command must be in the README's table and every
option must be documented, every relative link (and its #anchor) must resolve,
and the README stays a short front door.

What counts as a mention:

- a command line in a code block, or an inline code span, that starts with
  ``mgc`` or ``python -m mgc.cli`` (after an optional ``$`` prompt, environment
  assignments or a ``time``/``nice`` wrapper, or after ``;``, ``&&``, ``||`` or
  `` | `` on the same line); its options are every ``--long`` and ``-s`` token up
  to the end of the command (indented or backslash continuation lines included,
  ``# comments`` excluded);
- an inline code span that starts with an option (``--head mlp``) in prose. It
  is checked against the commands of the section it is in (the nearest heading
  that names ``mgc`` commands) when the paragraph names no other ``mgc``
  command; otherwise it must be an option of some command. After a span that
  runs another program (``python benchmarks/store.py``, ``dask worker``) in the
  same paragraph, option spans belong to that program and are not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer

import mgc.cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 300

#: Programs other than mgc that the docs run; options in a span after one of these are theirs.
FOREIGN_PROGRAMS = {"python", "python3", "pip", "dask", "ln", "ruff", "pytest", "git", "h5dump", "bash", "sh", "jq"}
#: Wrappers in front of a command: skipped to find the command they run.
WRAPPERS = {"time", "/usr/bin/time", "nice", "sudo", "env"}

_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*([-*+]|\d+\.)\s")
_INLINE_CODE = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_LONG = re.compile(r"(?<![\w./~-])--[A-Za-z][\w-]*")
_SHORT = re.compile(r"(?<![\w./~-])-[A-Za-z](?![\w-])")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")
_MGC = re.compile(r"^(?:mgc|python3? -m mgc\.cli)(?:\s+|$)")


# --- the CLI ---------------------------------------------------------------------------------------


def cli_options() -> dict[str | None, list[set[str]]]:
    """Command name (None: the ``mgc`` group itself) -> one set of names per option, ``--help`` included."""
    group = typer.main.get_command(mgc.cli.app)

    def options(command) -> list[set[str]]:
        # Options are the parameters named with dashes (typer's own click types are not click.Option).
        names = [{o for o in [*p.opts, *p.secondary_opts] if o.startswith("-")} for p in command.params]
        return [n for n in names if n] + [{"--help"}]

    found: dict[str | None, list[set[str]]] = {None: options(group)}
    for name, command in group.commands.items():
        found[name] = options(command)
    return found


# --- reading markdown ------------------------------------------------------------------------------


@dataclass
class Mention:
    """One ``mgc ...`` command line (``command`` None for ``mgc --option``) or one prose option span."""

    where: str
    command: str | None
    options: list[str]
    #: For a prose option span: the commands it is checked against (None: any command).
    candidates: set[str] | None = None
    prose: bool = False


@dataclass
class Scan:
    """What one markdown text names: command lines, prose option spans, links and heading anchors."""

    mentions: list[Mention] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (where, target)
    anchors: set[str] = field(default_factory=set)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _split_commands(line: str) -> list[str]:
    """Split a shell line at ``;``, ``&&``, ``||`` and `` | `` outside ``[...]`` (usage synopses use ``a | b``)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(line):
        char = line[i]
        depth += (char == "[") - (char == "]")
        if depth <= 0:
            if line.startswith(("&&", "||"), i):
                parts.append(line[start:i])
                start = i = i + 2
                continue
            if char == ";" or (char == "|" and line[i - 1 : i] == " " and line[i + 1 : i + 2] == " "):
                parts.append(line[start:i])
                start = i + 1
        i += 1
    return parts + [line[start:]]


def _unwrap(text: str) -> str:
    """Drop a ``$`` prompt, ``NAME=value`` assignments and wrappers such as ``/usr/bin/time -v``."""
    words = text.strip().removeprefix("$ ").split()
    while words and (_ENV.match(words[0]) or words[0] in WRAPPERS):
        wrapper = words.pop(0)
        while wrapper in WRAPPERS and words and words[0].startswith("-"):
            words.pop(0)
    return " ".join(words)


def _options(text: str) -> list[str]:
    return [m.group() for m in sorted([*_LONG.finditer(text), *_SHORT.finditer(text)], key=lambda m: m.start())]


def _command_mention(text: str, where: str) -> Mention | None:
    """The mention in one command (one segment of a shell line), or None when it does not run mgc."""
    text = _unwrap(text)
    match = _MGC.match(text)
    if not match:
        return None
    rest = text[match.end() :]
    first = rest.split(maxsplit=1)[0] if rest.split() else ""
    if first.startswith("-"):
        return Mention(where, None, _options(rest))
    if not re.fullmatch(r"[a-z][a-z0-9-]*", first):
        return None  # `mgc COMMAND --help`, `mgc [OPTIONS]`: a placeholder, not a command
    return Mention(where, first, _options(rest[len(first) :]))


def _is_foreign(text: str) -> bool:
    """True when an inline span runs another program (``python benchmarks/x.py``, ``dask worker``)."""
    words = _unwrap(text).split()
    if not words or _MGC.match(" ".join(words)):
        return False
    program = words[0]
    return program in FOREIGN_PROGRAMS or program.endswith(".py") or program.startswith(("./", "benchmarks/", ".ci/"))


def _code_lines(lines: list[tuple[int, str]], name: str, scan: Scan) -> None:
    """Command lines of one code block: continuation lines joined, comments dropped."""
    logical: list[tuple[int, str]] = []
    for number, line in lines:
        text = re.sub(r"(^|\s)#.*$", "", line).rstrip()
        stripped = text.strip()
        joins_previous = logical and (
            logical[-1][1].endswith("\\")
            or (
                line[:1].isspace()
                and stripped
                and not _MGC.match(_unwrap(stripped))
                and _MGC.match(_unwrap(logical[-1][1]))
            )
        )
        if joins_previous:
            logical[-1] = (logical[-1][0], logical[-1][1].removesuffix("\\") + " " + stripped)
        else:
            logical.append((number, text))
    for number, text in logical:
        for part in _split_commands(text):
            mention = _command_mention(part, f"{name}:{number}")
            if mention:
                scan.mentions.append(mention)


def _blocks(lines: list[str]) -> list[tuple[int, str, bool]]:
    """Prose outside code blocks as (first line number, text, is_heading): paragraphs, list items, table rows."""
    blocks: list[tuple[int, list[str], bool]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            blocks.append((number, [], False))
            continue
        heading = bool(_HEADING.match(line))
        new = heading or line.lstrip().startswith("|") or _LIST_ITEM.match(line)
        if new or not blocks or not blocks[-1][1] or blocks[-1][2]:
            blocks.append((number, [line], heading))
        else:
            blocks[-1][1].append(line)
    return [(number, " ".join(part.strip() for part in text), heading) for number, text, heading in blocks if text]


def scan_text(text: str, name: str) -> Scan:
    """Everything the checks need from one markdown text (``name`` is used in messages)."""
    scan = Scan()
    prose: list[str] = []
    fence: str | None = None
    block: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if fence is None and match:
            fence, block = match.group(1)[0] * 3, []
            prose.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                _code_lines(block, name, scan)
                fence = None
            else:
                block.append((number, line))
            prose.append("")
        elif line.startswith("    ") and _MGC.match(_unwrap(line.strip())):
            _code_lines([(number, line.strip())], name, scan)  # an indented code block
            prose.append("")
        else:
            prose.append(line)

    section: dict[int, set[str]] = {}  # heading level -> the mgc commands it names
    slugs: dict[str, int] = {}
    for number, text_, is_heading in _blocks(prose):
        where = f"{name}:{number}"
        spans = [m.group(2).strip() for m in _INLINE_CODE.finditer(text_)]
        commands = [m for m in (_command_mention(span, where) for span in spans) if m and m.command]
        if is_heading:
            level, title = _HEADING.match(text_).groups()
            base = slug(title)
            count = slugs.get(base, 0)
            slugs[base] = count + 1
            scan.anchors.add(base if count == 0 else f"{base}-{count}")
            section = {k: v for k, v in section.items() if k < len(level)}
            section[len(level)] = {m.command for m in commands}
        heading_commands = next((cmds for _, cmds in sorted(section.items(), reverse=True) if cmds), set())
        in_section = {m.command for m in commands} <= heading_commands
        candidates = heading_commands if heading_commands and in_section else None
        foreign = False
        for span in spans:
            mention = _command_mention(span, where)
            if mention:
                scan.mentions.append(mention)
                foreign = False
            elif _is_foreign(span):
                foreign = True
            elif span.startswith("-") and not foreign:
                scan.mentions.append(Mention(where, None, _options(span), candidates=candidates, prose=True))
        text_no_code = _INLINE_CODE.sub("", text_)
        scan.links += [(where, m.group(1)) for m in _LINK.finditer(text_no_code)]
    return scan


# --- the checks ------------------------------------------------------------------------------------


def check_mentions(scan: Scan, cli: dict[str | None, list[set[str]]]) -> list[str]:
    """Problems: commands the CLI lacks, and options that the command (or no candidate command) has."""

    def names(command: str | None) -> set[str]:
        return set().union(*cli.get(command, []))

    problems = []
    for mention in scan.mentions:
        if mention.prose:
            pool = mention.candidates if mention.candidates is not None else [c for c in cli if c is not None]
            known = set().union(*(names(c) for c in pool))
            for option in mention.options:
                if option not in known:
                    where = ", ".join(f"mgc {c}" for c in sorted(pool)) if mention.candidates else "any command"
                    problems.append(f"{mention.where}: {option} is not an option of {where}")
        elif mention.command is not None and mention.command not in cli:
            problems.append(f"{mention.where}: `mgc {mention.command}` is not a command of the CLI")
        else:
            known = names(mention.command)
            shown = f"mgc {mention.command}" if mention.command else "mgc"
            problems += [
                f"{mention.where}: {option} is not an option of `{shown}`"
                for option in mention.options
                if option not in known
            ]
    return problems


def check_links(scan: Scan, source: Path, anchors_of) -> list[str]:
    """Problems: relative links to files that do not exist, or to #anchors no heading makes."""
    problems = []
    for where, target in scan.links:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        file = (source.parent / path).resolve() if path else source
        if not file.exists():
            problems.append(f"{where}: link to {target} (no such file: {file})")
        elif anchor and file.suffix == ".md" and anchor not in anchors_of(file):
            problems.append(f"{where}: link to {target} (no heading with the anchor #{anchor})")
    return problems


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def scan_file(path: Path) -> Scan:
    return scan_text(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


@pytest.fixture(scope="module")
def cli():
    return cli_options()


@pytest.fixture(scope="module")
def scans():
    return {path: scan_file(path) for path in doc_files()}


def test_the_docs_exist():
    assert DOCS.is_dir() and len(doc_files()) > 1


def test_commands_and_options_in_the_docs_exist(scans, cli):
    problems = [problem for scan in scans.values() for problem in check_mentions(scan, cli)]
    assert not problems, "\n".join(problems)


def test_every_command_is_in_the_readme(scans, cli):
    named = {m.command for m in scans[README].mentions if not m.prose}
    missing = sorted(c for c in cli if c is not None and c not in named)
    assert not missing, f"README.md's table of commands lacks: {', '.join(missing)}"


def test_every_option_is_documented(scans, cli):
    documented: dict[str, set[str]] = {}
    for scan in scans.values():
        for mention in scan.mentions:
            for command in (mention.candidates or ()) if mention.prose else [mention.command]:
                documented.setdefault(command, set()).update(mention.options)
    missing = [
        f"mgc {command} {'/'.join(sorted(option))}"
        for command, options in cli.items()
        if command is not None
        for option in options
        if "--help" not in option and not option & documented.get(command, set())
    ]
    assert not missing, "options no page of the docs mentions:\n" + "\n".join(missing)


def test_links_resolve(scans):
    anchors: dict[Path, set[str]] = {path.resolve(): scan.anchors for path, scan in scans.items()}

    def anchors_of(file: Path) -> set[str]:
        if file not in anchors:
            anchors[file] = scan_file(file).anchors if file.is_relative_to(ROOT) else set()
        return anchors[file]

    problems = [problem for path, scan in scans.items() for problem in check_links(scan, path, anchors_of)]
    assert not problems, "\n".join(problems)


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/ (at most {README_MAX_LINES})"


# --- the checker can fail --------------------------------------------------------------------------

MADE_UP = """\
# Made up

Run `mgc nosuchcommand STORE` first.

```bash
mgc extract CORPUS STORE \\
    --workers 2 --no-such-option
mgc train STORE --out MODEL; mgc evaluate MODEL STORE --bogus
```

## Extraction: `mgc extract`

Then `--top-k 3` is not extract's, but `--workers 1` is; after `python benchmarks/x.py`, `--repeat` is not ours.

See [the missing page](missing.md), [a missing anchor](#nowhere) and [this section](#extraction-mgc-extract).
"""


def test_the_checker_reports_made_up_commands_options_and_links(cli, tmp_path):
    source = tmp_path / "made-up.md"
    source.write_text(MADE_UP)
    scan = scan_text(MADE_UP, "made-up.md")
    problems = "\n".join(check_mentions(scan, cli) + check_links(scan, source, lambda _file: scan.anchors))
    assert "`mgc nosuchcommand` is not a command" in problems
    assert "made-up.md:6: --no-such-option is not an option of `mgc extract`" in problems
    assert "--bogus is not an option of `mgc evaluate`" in problems
    assert "--top-k is not an option of mgc extract" in problems
    assert "--workers" not in problems and "--repeat" not in problems and "--out" not in problems
    assert "missing.md" in problems and "#nowhere" in problems and "#extraction-mgc-extract" not in problems


_SYNOPSIS_VALUE = re.compile(r"\[(--[\w-]+) ([^\]|\s]+)\]")


def test_numbers_in_the_synopses_are_the_defaults():
    """``[--top-k 3]`` in a usage line of the docs is the option's default: the docs say what a command does."""
    commands = typer.main.get_command(mgc.cli.app).commands
    checked = 0
    for path in [README, *sorted(DOCS.glob("*.md"))]:
        command = None
        for line in path.read_text(encoding="utf-8").splitlines():
            found = re.match(r"\s*mgc (\w+) ", line)
            command = found.group(1) if found else command if line.startswith(" ") else None
            for flag, value in _SYNOPSIS_VALUE.findall(line) if command in commands else ():
                try:
                    number = float(value)
                except ValueError:
                    continue
                option = next(p for p in commands[command].params if flag in p.opts)
                default = option.default
                if default is None:  # train's CNN options: the default is TrainConfig's, named in the help
                    assert f"(default: {value}" in option.help or f"(default: {number:g}" in option.help, (path, flag)
                else:
                    assert float(default) == number, f"{path.name}: mgc {command} {flag} {value}, default {default}"
                checked += 1
    assert checked >= 10
