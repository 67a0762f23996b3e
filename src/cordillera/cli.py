"""The `cordillera` command line (typer + rich). Sub-commands are registered here; each calls
into its module's one entry point."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


def main() -> None:
    app()
