"""``speechpipe bench``: throughput of every stage and the whole pipeline (``benchmarks/``)."""

from __future__ import annotations

import typer


def register(app, eval_app):
    @app.command()
    def bench(
        quick: bool = typer.Option(False, "--quick", help="Short audio, few repetitions (about a minute)."),
        as_json: bool = typer.Option(False, "--json", help="End stdout with one JSON object of all figures."),
        smoke: bool = typer.Option(
            False, "--smoke", hidden=True, help="A few seconds per stage: checks the JSON contract only."
        ),
        scaling: bool = typer.Option(
            False,
            "--scaling",
            help="Also measure time/memory vs call length and batch size (long; writes docs/scaling.*).",
        ),
    ):
        """Measure ASR, diarisation, prosody, tagger and end-to-end speed on this machine."""
        try:
            from benchmarks import bench as orchestrator
        except ImportError as e:
            typer.echo(f"benchmarks package not importable ({e}); install speechpipe from its source tree", err=True)
            raise typer.Exit(1) from None
        argv = [
            f for f, on in (("--quick", quick), ("--json", as_json), ("--smoke", smoke), ("--scaling", scaling)) if on
        ]
        raise typer.Exit(orchestrator.main(argv))
