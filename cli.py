"""The ``mgc`` command line: a thin typer app over the library.

Each command parses its arguments, builds a config and calls one library
function. Errors a user can cause are printed without a traceback and exit
with status 2.
"""

from __future__ import annotations

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

# --- synth and demo commands ------------------------------------------------

# --- model commands (train, evaluate, predict) -------------------------------


if __name__ == "__main__":
    app()
