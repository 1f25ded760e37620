"""Command line: ``speechpipe run|tag|batch|sample|eval|bench|train-tagger``.

Exit status (output contract): 0 all good, 2 when any input failed (each
failure is one line in ``DIR/errors.jsonl``), 1 for a usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import offline

offline.enforce_env()  # before any hub-aware library is imported

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Offline analysis of recorded NKS calls: ASR, speakers, prosody, phases and empathic acts.",
)
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate against gold files: asr | diarization | tagger.")
app.add_typer(eval_app, name="eval")


def console():
    from rich.console import Console

    return Console(stderr=True)


def fail_line(path, reason) -> str:
    return f"[red]failed[/red] {path}: {reason}"


def failure_reason(e: BaseException) -> str:
    """One line for the user; AudioError already names the problem."""
    from .audio import AudioError

    if isinstance(e, AudioError):
        return e.reason
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}"[:300]


def log_failure(out: Path, path, reason: str, e: BaseException) -> None:
    """errors.jsonl gets the one-line reason; speechpipe.log the traceback."""
    import traceback

    from .writers import append_jsonl

    append_jsonl(out / "errors.jsonl", {"file": str(path), "reason": reason})
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    import os

    # owner-only like every other output: tracebacks name the input files
    with open(out / "speechpipe.log", "a", encoding="utf-8", opener=lambda p, fl: os.open(p, fl, 0o600)) as f:
        f.write(f"--- {path}\n{tb}\n")


def asr_options(
    asr_model: Optional[str],
    device: str,
    compute_type: Optional[str],
    beam_size: int,
    initial_prompt: Optional[str],
    nav_prompt: bool,
    vad_threshold: float,
    vad_min_silence_ms: int,
    cpu_threads: int,
    asr_workers: int = 0,
):
    from .asr import NAV_PROMPT, ASRConfig

    model = None if asr_model in (None, "embedded", "base") else asr_model
    return ASRConfig(
        model=model,
        device=device,
        compute_type=compute_type,
        beam_size=beam_size,
        initial_prompt=initial_prompt or (NAV_PROMPT if nav_prompt else None),
        vad_threshold=vad_threshold,
        vad_min_silence_ms=vad_min_silence_ms,
        cpu_threads=cpu_threads,
        num_workers=asr_workers,
    )


# Options shared by `run` and `batch`; typer needs them spelled per command.
ASR_MODEL = typer.Option(None, "--asr-model", help="Local CTranslate2 Whisper directory (e.g. NB-Whisper). Default: embedded base model.")
DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda")
COMPUTE = typer.Option(None, "--compute-type", help="CTranslate2 compute type; default int8 on CPU, float16 on GPU.")
BEAM = typer.Option(5, "--beam-size", min=1, help="Beam size for decoding.")
PROMPT = typer.Option(None, "--initial-prompt", help="Initial prompt (vocabulary) for the decoder; default none.")
NAV_PROMPT_OPT = typer.Option(False, "--nav-prompt", help="Use the built-in NAV vocabulary as initial prompt.")
VAD_T = typer.Option(0.5, "--vad-threshold", min=0.0, max=1.0, help="Silero VAD speech probability threshold.")
VAD_S = typer.Option(500, "--vad-min-silence-ms", min=0, help="Silence (ms) that splits speech chunks.")
THREADS = typer.Option(0, "--cpu-threads", min=0, help="CTranslate2 threads per ASR replica (0: the cores shared out between replicas).")
ASR_WORKERS = typer.Option(0, "--asr-workers", min=0, help="ASR model replicas decoding in parallel (0: one per core on the CPU, at most 4; 1 on a GPU).")
DIARIZER = typer.Option("auto", "--diarizer", help="auto | stereo | embedded | pyannote")
PYANNOTE = typer.Option(None, "--pyannote-pipeline", help="Local pyannote pipeline directory (with --diarizer pyannote).")
COUNSELLOR = typer.Option("auto", "--counsellor-channel", help="left | right | auto (stereo calls).")
REDACT = typer.Option(False, "--redact", help="Replace personal numbers, phones, accounts, e-mails, addresses in all text outputs.")
FORMATS = typer.Option("all", "--formats", help="Comma list of json,rttm,vtt,srt,textgrid,eaf,parquet,html or 'all'.")
PSEUDO = typer.Option(False, "--pseudonymise", help="Name outputs by a keyed hash instead of the file name (key: SPEECHPIPE_PSEUDONYM_KEY).")


def pipeline_config(asr, diarizer, pyannote_pipeline, counsellor_channel, redact, no_prosody=False, no_tag=False):
    from .pipeline import PipelineConfig

    if counsellor_channel not in ("left", "right", "auto"):
        raise typer.BadParameter("--counsellor-channel must be left, right or auto")
    if diarizer not in ("auto", "stereo", "embedded", "pyannote"):
        raise typer.BadParameter("--diarizer must be auto, stereo, embedded or pyannote")
    if diarizer == "pyannote" and not pyannote_pipeline:
        raise typer.BadParameter("--diarizer pyannote needs --pyannote-pipeline DIR")
    return PipelineConfig(
        asr=asr,
        diarizer=diarizer,
        pyannote_pipeline=pyannote_pipeline,
        counsellor_channel=counsellor_channel,
        prosody=not no_prosody,
        tag=not no_tag,
        redact=redact,
    )


@app.command()
def run(
    audio: List[Path] = typer.Argument(..., help="Call recordings (WAV, FLAC, MP3, OGG; mono or stereo)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
    asr_model: Optional[str] = ASR_MODEL,
    device: str = DEVICE,
    compute_type: Optional[str] = COMPUTE,
    beam_size: int = BEAM,
    initial_prompt: Optional[str] = PROMPT,
    nav_prompt: bool = NAV_PROMPT_OPT,
    vad_threshold: float = VAD_T,
    vad_min_silence_ms: int = VAD_S,
    cpu_threads: int = THREADS,
    asr_workers: int = ASR_WORKERS,
    diarizer: str = DIARIZER,
    pyannote_pipeline: Optional[str] = PYANNOTE,
    counsellor_channel: str = COUNSELLOR,
    redact: bool = REDACT,
    formats: str = FORMATS,
    pseudonymise: bool = PSEUDO,
    no_prosody: bool = typer.Option(False, "--no-prosody", help="Skip the prosody stage."),
    no_tag: bool = typer.Option(False, "--no-tag", help="Skip the phase/act tagger."),
):
    """Analyse call recordings; write DIR/<call_id>.json and the research exports."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .asr import ASRError
    from .outputs import parse_formats, write_outputs
    from .pipeline import Pipeline
    from .records import call_id_for

    con = console()
    fmts = parse_formats(formats)
    asr = asr_options(asr_model, device, compute_type, beam_size, initial_prompt, nav_prompt, vad_threshold,
                      vad_min_silence_ms, cpu_threads, asr_workers)
    cfg = pipeline_config(asr, diarizer, pyannote_pipeline, counsellor_channel, redact, no_prosody, no_tag)
    pipe = Pipeline(cfg)
    if pseudonymise:
        from .redact import require_pseudonym_key

        require_pseudonym_key()  # a usage error before any file is read
    failed = 0
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:.0f} s audio"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=con, transient=True,
    ) as bar:
        for path in audio:
            task = bar.add_task(path.name, total=None)

            def progress(done, total, task=task):
                bar.update(task, completed=done, total=total)

            try:
                call_id = call_id_for(path)
                if pseudonymise:
                    from .redact import pseudonymise_id

                    call_id = pseudonymise_id(path)
                result = pipe.process(path, call_id=call_id, progress=progress)
                if pseudonymise and result.audio:
                    result.audio["path"] = None  # the file name is what the pseudonym hides
                written = write_outputs(result, out, fmts)
                con.print(f"[green]done[/green] {path} → {written[0]}")
            except ASRError as e:  # the model itself is unusable: no point going on
                con.print(f"[red]error[/red] {e}")
                raise typer.Exit(2)
            except Exception as e:  # one bad file never stops the run
                failed += 1
                reason = failure_reason(e)
                con.print(fail_line(path, reason))
                log_failure(out, path, reason, e)
            finally:
                bar.remove_task(task)
    raise typer.Exit(2 if failed else 0)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point; maps usage errors to exit status 1 (output contract)."""
    try:  # typer vendors its own click; fall back to click for older typer
        from typer._click import exceptions as cx
    except ImportError:  # pragma: no cover
        import click.exceptions as cx

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


from .commands import register_all  # noqa: E402  (commands need `app` defined)

register_all(app, eval_app)

if __name__ == "__main__":
    main()
