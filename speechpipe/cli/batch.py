"""``speechpipe batch`` (resumable runs over whole archives) and ``speechpipe sample``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from speechpipe.cli import common
from speechpipe.errors import fail_line, failure_reason


def _progress(con):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[cps]:.2f} calls/s"), TextColumn("{task.fields[ahps]:.4f} audio-h/s"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=con,
    )


def _summary_table(s):
    from rich.table import Table

    t = Table(title="batch summary", show_header=False)
    for k, v in (
        ("done", s.done), ("failed", s.failed), ("skipped (already done)", s.skipped),
        ("audio hours processed", f"{s.audio_seconds / 3600:.3f}"),
        ("wall time", f"{s.wall_seconds:.1f} s"),
        ("real-time factor", "—" if s.rtf is None else f"{s.rtf:.3f} (×{1 / s.rtf:.1f} real time)" if s.rtf else "—"),
    ):
        t.add_row(k, str(v))
    return t


def register(app, eval_app):

    @app.command()
    def batch(
        source: Path = typer.Argument(
            ...,
            help="Directory of recordings (walked recursively), a path list (.txt) or a CSV manifest "
            "(path[,call_id,counsellor_channel,…]).",
        ),
        out: Path = typer.Option(
            ..., "--out", "-o", help="Output directory (manifest, per-call outputs, tables, errors)."
        ),
        resume: bool = typer.Option(
            False, "--resume", help="Skip inputs already done with the same content and settings."
        ),
        engine: str = typer.Option("local", "--engine", help="local | ray"),
        workers: int = typer.Option(
            1, "--workers", min=1, help="Ray actors (one per GPU, or per --cpu-threads cores)."
        ),
        address: Optional[str] = typer.Option(
            None, "--address", help="Existing Ray cluster (e.g. ray://head:10001 or auto); default a private local one."
        ),
        asr_model: Optional[str] = common.ASR_MODEL,
        device: str = common.DEVICE,
        compute_type: Optional[str] = common.COMPUTE,
        beam_size: int = common.BEAM,
        initial_prompt: Optional[str] = common.PROMPT,
        nav_prompt: bool = common.NAV_PROMPT_OPT,
        vad_threshold: float = common.VAD_T,
        vad_min_silence_ms: int = common.VAD_S,
        cpu_threads: int = common.THREADS,
        asr_workers: int = common.ASR_WORKERS,
        diarizer: str = common.DIARIZER,
        pyannote_pipeline: Optional[str] = common.PYANNOTE,
        counsellor_channel: str = common.COUNSELLOR,
        channel_layout: str = common.LAYOUT,
        redact: bool = common.REDACT,
        formats: str = common.FORMATS,
        pseudonymise: bool = common.PSEUDO,
        no_prosody: bool = typer.Option(False, "--no-prosody", help="Skip the prosody stage."),
        no_tag: bool = typer.Option(False, "--no-tag", help="Skip the phase/act tagger."),
        rules: Optional[Path] = common.RULES,
        report_audio: bool = common.REPORT_AUDIO,
    ):
        """Process every call of an archive; resumable, one failure never stops the batch.

        Writes DIR/manifest.sqlite, DIR/<call_id>.json (+ exports), DIR/calls.parquet,
        DIR/utterances.parquet, DIR/errors.jsonl and DIR/speechpipe.log. Exit 2 if any input failed.
        """
        import time

        from speechpipe.batch.runner import BatchError, discover, run_batch
        from speechpipe.outputs import parse_formats

        con = common.console()
        if engine not in ("local", "ray"):
            raise typer.BadParameter("--engine must be local or ray")
        # Every usage error before any input is read or model loaded.
        fmts = parse_formats(formats)
        out = common.out_dir(out)
        if not address:  # a cluster's GPUs are not visible from here
            common.check_device(device)
        if pseudonymise:
            from speechpipe.privacy import require_pseudonym_key

            require_pseudonym_key()
        asr = common.asr_options(asr_model, device, compute_type, beam_size, initial_prompt, nav_prompt,
                              vad_threshold, vad_min_silence_ms, cpu_threads, asr_workers)
        cfg = common.pipeline_config(asr, diarizer, pyannote_pipeline, counsellor_channel, redact, no_prosody, no_tag,
                                     rules, channel_layout)
        try:
            items = discover(source, pseudonymise=pseudonymise)
        except Exception as e:  # BatchError, unreadable list, missing pseudonym key
            con.print(f"[red]error[/red] {failure_reason(e) if not isinstance(e, BatchError) else e}")
            raise typer.Exit(1) from None
        if not items:
            con.print(f"[yellow]no audio files found in {source}[/yellow]")

        t0 = time.perf_counter()
        stats = {"n": 0, "audio": 0.0}
        with _progress(con) as bar:
            task = bar.add_task("calls", total=len(items), cps=0.0, ahps=0.0)

            def report(event, item, oc):
                if event == "failed":
                    bar.console.print(fail_line(item.input, oc.reason), soft_wrap=True)
                elif event == "done":
                    stats["n"] += 1
                    stats["audio"] += float((oc.result.audio or {}).get("duration") or 0.0)
                dt = max(time.perf_counter() - t0, 1e-6)
                bar.update(task, advance=1, cps=stats["n"] / dt, ahps=stats["audio"] / 3600 / dt)

            try:
                summary = run_batch(items, out, cfg, fmts, pseudonymise=pseudonymise, resume=resume,
                                    engine=engine, workers=workers, address=address, report=report,
                                    report_audio=report_audio)
            except BatchError as e:
                con.print(f"[red]error[/red] {e}")
                raise typer.Exit(2) from None
            except Exception as e:  # a bug or a full disk: one line here, the traceback in the log
                from speechpipe.errors import log_text, traceback_text

                con.print(f"[red]error[/red] batch stopped: {failure_reason(e)} (details in {out / 'speechpipe.log'})")
                try:
                    log_text(out, "batch stopped", traceback_text(e))
                except OSError:
                    pass
                raise typer.Exit(2) from None
        con.print(_summary_table(summary))
        if summary.failed:
            con.print(
                f"{summary.failed} input(s) failed: reasons in {out / 'errors.jsonl'}, "
                f"details in {out / 'speechpipe.log'}"
            )
        raise typer.Exit(2 if summary.failed else 0)

    @app.command()
    def sample(
        batch_dir: Path = typer.Argument(..., help="Output directory of a batch (with calls.parquet)."),
        n: int = typer.Option(20, "--n", min=1, help="Number of calls to draw."),
        seed: int = typer.Option(1, "--seed", help="Random seed (same seed, same sample)."),
        stratify: Optional[str] = typer.Option(
            None, "--stratify", help="Column of calls.parquet to stratify by, e.g. structure."
        ),
        where: Optional[str] = typer.Option(
            None,
            "--where",
            help='SQL condition on calls.parquet columns, e.g. "n_heavy_breaths > 0" or "category_long_hold".',
        ),
        out: Optional[Path] = typer.Option(
            None, "--out", "-o", help="Where to write the sample (default DIR/samples/<name>)."
        ),
    ):
        """Draw a reproducible random sample of processed calls; write the list and their reports."""
        from speechpipe.batch.sample import SampleError, draw_sample, write_sample

        con = common.console()
        try:
            rows = draw_sample(batch_dir, n=n, seed=seed, stratify=stratify, where=where)
            dest = write_sample(batch_dir, rows, out=out, name=None, seed=seed, stratify=stratify, where=where)
        except SampleError as e:
            con.print(f"[red]error[/red] {e}")
            raise typer.Exit(1) from None
        except Exception as e:  # never a traceback for the user
            con.print(f"[red]error[/red] {batch_dir}: {failure_reason(e)}")
            raise typer.Exit(1) from None
        con.print(f"{len(rows)} call(s) sampled → {dest}")
