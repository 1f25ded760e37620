"""``speechpipe eval diarization``: DER against reference RTTM files."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from speechpipe.config import DIARIZERS


def load_reference(rttm: Path, uri: str | None = None):
    """The Annotation for ``uri`` in an RTTM file (the only one when ``uri`` is None)."""
    from pyannote.database.util import load_rttm

    refs = load_rttm(str(rttm))
    if not refs:
        raise ValueError(f"{rttm}: no SPEAKER lines")
    if uri is not None and uri in refs:
        return refs[uri]
    if len(refs) == 1:
        return next(iter(refs.values()))
    raise ValueError(f"{rttm}: holds {len(refs)} recordings and none is named {uri!r}")


def register(app, eval_app):
    @eval_app.command("diarization")
    def eval_diarization(
        audio: Optional[List[Path]] = typer.Argument(None, help="Recordings to diarise (mono or stereo)."),
        ref: List[Path] = typer.Option(
            ...,
            "--ref",
            help="Reference RTTM, one per recording in the same order, "
            "or one RTTM holding every recording (matched by file stem).",
        ),
        diarizer: str = typer.Option("auto", "--diarizer", help=" | ".join(DIARIZERS)),
        pyannote_pipeline: Optional[str] = typer.Option(
            None, "--pyannote-pipeline", help="Local pyannote pipeline directory."
        ),
        collar: float = typer.Option(
            0.25,
            "--collar",
            min=0.0,
            help="Total no-score width around each reference boundary (pyannote "
            "convention: 0.25 = ±0.125 s; NIST md-eval's ±0.25 s is 0.5).",
        ),
        skip_overlap: bool = typer.Option(False, "--skip-overlap", help="Do not score overlapping speech."),
        from_output: Optional[Path] = typer.Option(
            None,
            "--from-output",
            help="Score the RTTM files a run/batch wrote in this folder (what users get) "
            "instead of diarising AUDIO; references matched by file stem.",
        ),
    ):
        """Diarise each recording and report DER, miss, false alarm, confusion (pyannote.metrics)."""
        from rich.console import Console
        from rich.table import Column, Table

        if from_output is not None:
            _score_output(from_output, ref, collar, skip_overlap)
            return
        if not audio:
            raise typer.BadParameter("give recordings to diarise, or --from-output DIR")

        from speechpipe.audio import AudioError, load_audio
        from speechpipe.config import ConfigError, PipelineConfig
        from speechpipe.speakers.diarization import DiarizationError, build_diarizer

        con = Console()
        if len(ref) not in (1, len(audio)):
            raise typer.BadParameter(f"give one --ref per recording ({len(audio)}) or one RTTM for all")
        try:
            cfg = PipelineConfig(diarizer=diarizer, pyannote_pipeline=pyannote_pipeline)
        except ConfigError as e:
            raise typer.BadParameter(str(e), param_hint=f"'--{e.setting.replace('_', '-')}'") from e
        try:
            d = build_diarizer(cfg)
        except DiarizationError as e:
            con.print(f"[red]error[/red] {e}")
            raise typer.Exit(2) from None
        from pyannote.metrics.diarization import DiarizationErrorRate

        from speechpipe.evaluation import scored_region

        total = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
        # fold, never ellipsise, the file name: rcdev-01.wav and rcdev-01.tel.wav must stay distinguishable
        table = Table(Column("file", overflow="fold"), "DER %", "miss %", "FA %", "confusion %", "speakers", "scored s",
                      title=f"Diarisation ({d.name}, collar {collar:g} s)",
                      caption="% of scored speech; FA = false alarm; speakers = reference/hypothesis")
        failed = 0
        for i, path in enumerate(audio):
            rttm = ref[i] if len(ref) > 1 else ref[0]
            try:
                if not rttm.is_file():
                    raise AudioError(rttm, "reference RTTM not found")
                try:
                    reference = load_reference(rttm, path.name.split(".")[0])
                except Exception as e:  # noqa: BLE001 - malformed RTTM: one line
                    raise AudioError(rttm, f"cannot read RTTM: {e}") from e
                a = load_audio(path)
                hyp = d.diarize(a)
            except (AudioError, DiarizationError) as e:
                con.print(f"[red]failed[/red] {e}")
                failed += 1
                continue
            uem = scored_region(reference, hyp)
            r = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)(reference, hyp, uem=uem, detailed=True)
            total(reference, hyp, uem=uem)
            tot = r["total"] or 1.0
            table.add_row(
                path.name,
                f"{100 * r['diarization error rate']:.1f}",
                f"{100 * r['missed detection'] / tot:.1f}",
                f"{100 * r['false alarm'] / tot:.1f}",
                f"{100 * r['confusion'] / tot:.1f}",
                f"{len(reference.labels())}/{len(hyp.labels())}",
                f"{r['total']:.1f}",
            )
        table.title = f"Diarisation ({d.name}, collar {collar:g} s)"
        if len(total.results_):
            c = total.accumulated_
            tot = c["total"] or 1.0
            table.add_row(
                "[bold]all",
                f"[bold]{100 * abs(total):.1f}",
                f"{100 * c['missed detection'] / tot:.1f}",
                f"{100 * c['false alarm'] / tot:.1f}",
                f"{100 * c['confusion'] / tot:.1f}",
                "",
                f"{c['total']:.1f}",
            )
        con.print(table)
        raise typer.Exit(2 if failed else 0)


def _score_output(out_dir: Path, refs: List[Path], collar: float, skip_overlap: bool) -> None:
    from rich.console import Console
    from rich.table import Column, Table

    from speechpipe.evaluation.diarization import score_output_dir

    con = Console()
    if not out_dir.is_dir():
        con.print(f"[red]error[/red] {out_dir}: not a directory")
        raise typer.Exit(2)
    refs = [q for r in refs for q in (sorted(r.glob("*.rttm")) if r.is_dir() else [r])]  # a folder: all its RTTMs
    missing = [r for r in refs if not r.is_file()]
    if missing:
        con.print(f"[red]error[/red] {missing[0]}: reference RTTM not found")
        raise typer.Exit(2)
    rows, pooled = score_output_dir(out_dir, refs, collar, skip_overlap)
    if not rows:
        con.print(f"[red]error[/red] {out_dir}: no RTTM file there matches a reference")
        raise typer.Exit(2)
    table = Table(Column("file", overflow="fold"), "DER %", "miss %", "FA %", "confusion %", "covered", "speakers",
                  "scored s", title=f"Exported RTTM in {out_dir} (collar {collar:g} s)",
                  caption="% of scored speech; covered = share of reference speech in the RTTM")
    for r in rows + [pooled]:
        table.add_row(r["file"], f"{100 * r['der']:.1f}", f"{100 * r['miss']:.1f}", f"{100 * r['fa']:.1f}",
                      f"{100 * r['confusion']:.1f}", f"{r['covered']:.3f}", r["speakers"], f"{r['total']:.1f}")
    con.print(table)
