"""``speechpipe overview``: the aggregate page over a batch (or a directory of call JSONs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app, eval_app):
    @app.command()
    def overview(
        batch_dir: Path = typer.Argument(..., help="A batch output directory (calls.parquet) or call JSONs."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="The page to write (default DIR/overview.html)."),
    ):
        """Write overview.html: distributions across calls and calls per category (aggregates only, no ranking)."""
        from speechpipe.cli.common import console
        from speechpipe.errors import failure_reason
        from speechpipe.outputs.overview import load_rows, write_overview

        con = console()
        if not batch_dir.is_dir():
            con.print(f"[red]error[/red] {batch_dir}: not a directory")
            raise typer.Exit(1)
        try:
            rows = load_rows(batch_dir)
            if not rows:
                con.print(f"[red]error[/red] {batch_dir}: no calls.parquet and no call JSON files")
                raise typer.Exit(1)
            path = write_overview(batch_dir, out, rows=rows)
        except typer.Exit:
            raise
        except Exception as e:  # never a traceback for the user
            con.print(f"[red]error[/red] {batch_dir}: {failure_reason(e)}")
            raise typer.Exit(1) from None
        con.print(f"{len(rows)} call(s) → {path}")
