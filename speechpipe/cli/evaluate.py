"""``speechpipe eval asr``: word error rate against reference transcripts."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app, eval_app):
    @eval_app.command("asr")
    def eval_asr(
        audio: List[Path] = typer.Argument(
            ..., help="Recordings; each needs a reference AUDIO_STEM.ref.txt beside it (or in --refs)."
        ),
        refs: Optional[Path] = typer.Option(None, "--refs", help="Directory holding STEM.ref.txt references."),
        asr_model: Optional[str] = typer.Option(
            None, "--asr-model", help="Local CTranslate2 Whisper directory; default embedded."
        ),
        device: str = typer.Option("auto", "--device"),
        beam_size: int = typer.Option(5, "--beam-size"),
    ):
        """Transcribe each file and report WER (jiwer, normalised text)."""
        from rich.console import Console
        from rich.table import Table

        from speechpipe.asr.whisper import ASRConfig, WhisperTranscriber
        from speechpipe.audio import AudioError, load_audio
        from speechpipe.evaluation import word_error_rate

        con = Console()
        asr = WhisperTranscriber(ASRConfig(model=asr_model, device=device, beam_size=beam_size))
        table = Table("file", "WER", "words", title=f"ASR: {asr.name}")
        refs_all, hyps_all, failed = [], [], 0
        for path in audio:
            stem = path.name.split(".")[0]
            ref_path = (refs or path.parent) / f"{stem}.ref.txt"
            try:
                if not ref_path.exists():
                    raise AudioError(path, f"no reference {ref_path}")
                a = load_audio(path)
                hyp = " ".join(u.text for u in asr.transcribe(a.mono))
            except AudioError as e:
                con.print(f"[red]failed[/red] {e}")
                failed += 1
                continue
            ref = ref_path.read_text(encoding="utf-8")
            refs_all.append(ref)
            hyps_all.append(hyp)
            table.add_row(path.name, f"{word_error_rate([ref], [hyp]):.3f}", str(len(ref.split())))
        if refs_all:
            table.add_row(
                "[bold]all",
                f"[bold]{word_error_rate(refs_all, hyps_all):.3f}",
                str(sum(len(r.split()) for r in refs_all)),
            )
        con.print(table)
        raise typer.Exit(2 if failed else 0)
