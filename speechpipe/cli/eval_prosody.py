"""``speechpipe eval prosody``: backchannels, their intonation and breaths, scored from a run's output files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import typer


def register(app, eval_app):
    @eval_app.command("prosody")
    def eval_prosody(
        out_dir: Path = typer.Argument(..., help="Folder a run/batch wrote (CALL.json files)."),
        ref: List[Path] = typer.Option(..., "--ref", help="Reference *.ref.json (utterances with acts and "
                                       "intonation, breaths), matched to outputs by file stem; repeat the "
                                       "option, or give a folder for all its *.ref.json."),
    ):
        """Gold backchannels found with the right intonation, and breath P/R/F1, end to end."""
        from rich.console import Console
        from rich.table import Table

        from speechpipe.evaluation.diarization import stem
        from speechpipe.evaluation.prosody import prf, score_output
        from speechpipe.records import CallResult

        con = Console()
        outputs = {}
        for p in sorted(out_dir.glob("*.json")):
            try:
                d = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(d, dict) and "utterances" in d and "call_id" in d:
                outputs[stem(p)] = CallResult.from_dict(d)
        table = Table("call", "gold bc", "found", "right intonation", "spurious bc", "breaths ref/det/tp",
                      title=f"Prosody end to end: {out_dir}")
        tot = {"backchannel_gold": 0, "backchannel_found": 0, "backchannel_right_intonation": 0,
               "backchannel_spurious": 0, "breath_ref": 0, "breath_det": 0, "breath_tp": 0}
        failed = 0
        refs = [q for r in ref for q in (sorted(r.glob("*.ref.json")) if r.is_dir() else [r])]
        for r in refs:
            try:
                g = json.loads(r.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                con.print(f"[red]failed[/red] {r}: cannot read reference ({e})")
                failed += 1
                continue
            res = outputs.get(stem(r))
            if res is None:
                con.print(f"[red]failed[/red] {r}: no output for {stem(r)} in {out_dir}")
                failed += 1
                continue
            s = score_output(g, res)
            for k in tot:
                tot[k] += s[k]
            table.add_row(stem(r), str(s["backchannel_gold"]), str(s["backchannel_found"]),
                          str(s["backchannel_right_intonation"]), str(s["backchannel_spurious"]),
                          f"{s['breath_ref']}/{s['breath_det']}/{s['breath_tp']}")
        n = tot["backchannel_gold"] or 1
        p, rc, f1 = prf(tot["breath_tp"], tot["breath_det"], tot["breath_ref"])
        table.add_row("[bold]all", str(tot["backchannel_gold"]),
                      f"{tot['backchannel_found']} ({tot['backchannel_found'] / n:.1%})",
                      f"{tot['backchannel_right_intonation']} ({tot['backchannel_right_intonation'] / n:.1%})",
                      str(tot["backchannel_spurious"]), f"{tot['breath_ref']}/{tot['breath_det']}/{tot['breath_tp']}")
        con.print(table)
        found = tot["backchannel_found"] or 1
        con.print(f"intonation accuracy on found backchannels: {tot['backchannel_right_intonation'] / found:.1%}; "
                  f"breaths P {p:.2f} R {rc:.2f} F1 {f1:.2f}")
        raise typer.Exit(2 if failed else 0)
