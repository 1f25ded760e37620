"""Command line: ``speechpipe run|tag|batch|sample|eval|bench|train-tagger``.

Exit status (output contract): 0 all good, 2 when any input failed (each
failure is one line in ``DIR/errors.jsonl``), 1 for a usage error.
"""

from __future__ import annotations

import sys

import typer

from speechpipe import offline

offline.enforce_env()  # before any hub-aware library is imported

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Offline analysis of recorded NKS calls: ASR, speakers, prosody, phases and empathic acts.",
)
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate against gold files: asr | diarization | tagger.")
app.add_typer(eval_app, name="eval")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; maps usage errors to exit status 1 (output contract)."""
    try:  # typer vendors its own click; fall back to click for older typer
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover
        import click.exceptions as cx

    from speechpipe.cli.common import quiet_warnings

    quiet_warnings()
    try:
        rv = app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except cx.NoArgsIsHelpError as e:
        e.show()
        sys.exit(0)
    except cx.ClickException as e:  # usage errors: click would exit 2, which means "an input failed" here
        e.show()
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


from speechpipe.cli.commands_registry import register_all  # noqa: E402  (commands need `app` defined)

register_all(app, eval_app)

if __name__ == "__main__":
    main()
