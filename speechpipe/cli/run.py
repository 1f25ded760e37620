"""``speechpipe run``: analyse recordings one after another into DIR."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from speechpipe.cli.common import (
    ASR_MODEL,
    ASR_WORKERS,
    BEAM,
    COMPUTE,
    COUNSELLOR,
    DEVICE,
    DIARIZER,
    FORMATS,
    LAYOUT,
    NAV_PROMPT_OPT,
    PROMPT,
    PSEUDO,
    PYANNOTE,
    REDACT,
    REPORT_AUDIO,
    RULES,
    THREADS,
    VAD_S,
    VAD_T,
    asr_options,
    check_device,
    console,
    out_dir,
    pipeline_config,
)
from speechpipe.errors import fail_line, failure_reason, log_failure, traceback_text


def register(app, eval_app):
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
        channel_layout: str = LAYOUT,
        redact: bool = REDACT,
        formats: str = FORMATS,
        pseudonymise: bool = PSEUDO,
        no_prosody: bool = typer.Option(False, "--no-prosody", help="Skip the prosody stage."),
        no_tag: bool = typer.Option(False, "--no-tag", help="Skip the phase/act tagger."),
        rules: Optional[Path] = RULES,
        report_audio: bool = REPORT_AUDIO,
    ):
        """Analyse call recordings; write DIR/<call_id>.json and the research exports.

        Two inputs with the same name get DIR/<name>.json and DIR/<name>-2.json (as in batch).
        """
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from speechpipe.asr.whisper import ASRError
        from speechpipe.outputs import parse_formats, write_outputs
        from speechpipe.pipeline import Pipeline
        from speechpipe.privacy import Pseudonymiser, safe_stem, unique_stems
        from speechpipe.records import call_id_for

        con = console()
        # Every usage error before any model loads or file is read.
        fmts = parse_formats(formats)
        out = out_dir(out)
        check_device(device)
        pseudo = Pseudonymiser(pseudonymise)
        pseudo.check()
        asr = asr_options(asr_model, device, compute_type, beam_size, initial_prompt, nav_prompt, vad_threshold,
                          vad_min_silence_ms, cpu_threads, asr_workers)
        cfg = pipeline_config(asr, diarizer, pyannote_pipeline, counsellor_channel, redact, no_prosody, no_tag, rules,
                              channel_layout)
        pipe = Pipeline(cfg)
        ids = [pseudo.call_id(p, call_id_for(p)) for p in audio]
        if redact:
            from speechpipe.redact import redact_id

            names = [redact_id(i) for i in ids]
        else:
            names = ids
        stems = unique_stems(names)  # one name in two folders: NAME, NAME-2 (as batch names them)
        failed = 0
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:.0f} s audio"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=con, transient=True,
        ) as bar:
            for path, call_id, name, stem in zip(audio, ids, names, stems):
                task = bar.add_task(path.name, total=None)

                def progress(done, total, task=task):
                    bar.update(task, completed=done, total=total)

                try:
                    result = pseudo.result(pipe.process(path, call_id=call_id, progress=progress))
                    written = write_outputs(result, out, fmts, stem=stem,
                                            report_audio=report_audio and not pseudonymise)
                    note = "" if stem == safe_stem(name) else " (name already used)"
                    con.print(f"[green]done[/green] {path} → {written[0]}{note}")
                except ASRError as e:  # the model itself is unusable: no point going on
                    con.print(f"[red]error[/red] {e}")
                    raise typer.Exit(2) from None
                except Exception as e:  # one bad file never stops the run
                    failed += 1
                    reason = failure_reason(e)
                    con.print(fail_line(path, reason))
                    log_failure(out, pseudo.shown(path, call_id), pseudo.scrub(reason, path, call_id),
                                pseudo.scrub(traceback_text(e), path, call_id))
                finally:
                    bar.remove_task(task)
        raise typer.Exit(2 if failed else 0)
