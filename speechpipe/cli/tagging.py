"""``speechpipe tag``, ``speechpipe train-tagger`` and ``speechpipe eval tagger``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

MODEL = typer.Option(
    None, "--model", help="Tagger model (STEM, STEM.json or STEM.npz); default: the shipped models/tagger-v3."
)
FAST = typer.Option(False, "--fast", help="Use tagger-v3-fast: no sentence embeddings (archive re-tags at full speed; "
                    "a little less accurate, see models/tagger-card.md).")


def _load(model, con, fast: bool = False):
    from speechpipe.tagging.tagger import TaggerError, load_tagger

    try:
        return load_tagger(model, fast=fast)
    except TaggerError as e:
        con.print(f"[red]error[/red] {e}")
        raise typer.Exit(1) from None


def _metrics_table(title: str, m: dict):
    from rich.table import Table

    t = Table("measure", "value", title=title)
    for k in ("act_micro_f1", "act_macro_f1", "phase_accuracy"):
        t.add_row(k, f"{m[k]:.3f}" if m[k] is not None else "–")
    t.add_row("structure right", f"{m['structure_right']}/{m['calls']}")
    t.add_row("reopenings right", f"{m['reopenings_right']}/{m['calls']}")
    t.add_row("utterances", str(m["utterances"]))
    for a, f in m["per_act_f1"].items():
        t.add_row(f"  F1 {a}", f"{f:.3f}")
    return t


def check_transcript(call: dict, con) -> None:
    """Times must be finite numbers (not booleans) with start <= end; a speaker outside the
    contract becomes ``other``, with a warning. Raises ValueError naming the utterance and field."""
    import math

    from speechpipe.vocabulary import SPEAKERS

    for i, u in enumerate(call["utterances"]):
        for field in ("start", "end"):
            v = getattr(u, field)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"utterance {i}: '{field}' must be a finite number of seconds, not {v!r}")
        if u.start is not None and u.end is not None and u.end < u.start:
            raise ValueError(f"utterance {i}: 'end' ({u.end}) is before 'start' ({u.start})")
        if u.speaker not in SPEAKERS:
            con.print(f"[yellow]warning[/yellow] {call['path']}: utterance {i}: speaker {u.speaker!r} "
                      f"is not one of {', '.join(SPEAKERS)}; tagged as 'other'")
            u.speaker = "other"


def _tag_table_file(tagger, path: Path, out: Path, con, redact: bool = False) -> int:
    """Re-tag one utterance table; returns 1 if it failed (reported and logged), else 0."""
    from speechpipe.errors import fail_line, failure_reason, log_failure
    from speechpipe.tagging.table import TableError, tag_parquet

    try:
        utts, calls, n_utt, n_calls = tag_parquet(tagger, path, out, redact=redact)
    except TableError as e:
        con.print(fail_line(path, e.reason))
        log_failure(out, path, e.reason, e)
        return 1
    except Exception as e:  # one bad file never stops the others
        reason = failure_reason(e)
        con.print(fail_line(path, reason))
        log_failure(out, path, reason, e)
        return 1
    con.print(f"[green]done[/green] {path} → {utts} ({n_utt} utterances), {calls} ({n_calls} calls)")
    return 0


def register(app, eval_app):
    @app.command("tag")
    def tag(
        transcripts: List[Path] = typer.Argument(
            ...,
            help="Transcripts in the gold format (utterances with speaker and text), "
            "or utterance tables (.parquet: call_id, speaker, text, as `run` exports them).",
        ),
        out: Path = typer.Option(..., "--out", "-o", help="Output directory for DIR/<call_id>.json."),
        redact: bool = typer.Option(
            False, "--redact", help="Replace personal numbers, phones, accounts, e-mails, addresses."
        ),
        model: Optional[Path] = MODEL,
        rules: Optional[Path] = typer.Option(
            None, "--rules", help="Category rule file (YAML); default: the shipped NKS set."
        ),
        fast: bool = FAST,
    ):
        """Tag acts, phases and call structure from text; gold labels in the files are ignored.

        A .parquet utterance table is re-tagged as a table (columnar, bounded memory):
        OUT/<stem>.parquet gets its rows with acts, phase and evidence, OUT/<stem>.calls.parquet
        one row per call with the call measures.
        """
        from speechpipe.cli.common import console, out_dir
        from speechpipe.errors import fail_line, failure_reason, log_failure
        from speechpipe.outputs import write_outputs
        from speechpipe.privacy import unique_stems
        from speechpipe.records import CallResult
        from speechpipe.redact import redact_id
        from speechpipe.tagging.train import GoldError, load_gold

        con = console()
        out = out_dir(out)  # a usage error before any work
        tagger = _load(model, con, fast)
        from speechpipe.analytics.call import analyse_call
        from speechpipe.cli.common import check_rules

        rules_path = check_rules(rules)
        calls, failed = [], 0
        for path in transcripts:
            if path.suffix.lower() == ".parquet":
                failed += _tag_table_file(tagger, path, out, con, redact)
                continue
            try:
                call = load_gold(path)
                check_transcript(call, con)
                calls.append(call)
            except (GoldError, ValueError) as e:
                failed += 1
                reason = e.reason if isinstance(e, GoldError) else str(e)
                con.print(fail_line(path, reason))
                log_failure(out, path, reason, e)
        # One vectorised pass over every call with speech; an empty transcript is a valid call without speech.
        spoken = [c for c in calls if c["utterances"]]
        tagged = dict(zip(map(id, spoken), tagger.tag_calls([c["utterances"] for c in spoken]) if spoken else []))
        # Two transcripts with one call id (or ids that make the same file name) get -2, -3 … as in batch.
        stems = unique_stems([redact_id(c["call_id"]) if redact else c["call_id"] for c in calls])
        for c, stem in zip(calls, stems):
            summary = tagged.get(id(c)) or {"no_speech_reason": "the transcript has no utterances"}
            try:
                result = CallResult(call_id=c["call_id"], utterances=c["utterances"], models={"tagger": tagger.name},
                                    summary=summary)
                if redact:
                    from speechpipe.redact import redact_call

                    result = redact_call(result)
                analyse_call(result, None, rules_path)  # interaction measures (when timed), categories
                written = write_outputs(result, out, ("json",), stem=stem)[0]
                note = "" if stem == c["call_id"] else f" (call id {result.call_id!r})"
                con.print(f"[green]done[/green] {c['path']} → {written}{note}")
            except Exception as e:  # one bad call never stops the others
                failed += 1
                reason = failure_reason(e)
                con.print(fail_line(c["path"], reason))
                log_failure(out, c["path"], reason, e)
        raise typer.Exit(2 if failed else 0)

    @app.command("train-tagger")
    def train_tagger(
        gold: Path = typer.Option(..., "--gold", help="Directory of gold transcripts (e.g. ../shared/tagger-dev)."),
        out: Optional[Path] = typer.Option(
            None, "--out", help="Model stem to write (default models/tagger-v3, with --fast models/tagger-v3-fast)."
        ),
        c: float = typer.Option(0.5, "--C", help="Inverse L2 regularisation strength of the act models."),
        tune: int = typer.Option(
            0, "--tune-thresholds", help="Inner CV folds that choose each act's threshold (0: all 0.5)."
        ),
        no_cv: bool = typer.Option(
            False, "--no-cv", help="Skip cross-validation (then the act confidences are not calibrated)."
        ),
        folds: Optional[int] = typer.Option(None, "--folds", help="CV folds (default: leave one call out)."),
        fast: bool = typer.Option(False, "--fast", help="Train the fast model (no sentence embeddings)."),
        by_writer: bool = typer.Option(
            False, "--writer-groups", help="Cross-validate by the four writer groups of tagger-dev (4 folds)."
        ),
    ):
        """Learn the tagger's weights from gold calls (reproducible: fixed seed). The cross-validation also
        calibrates the act confidences, so it is part of training unless --no-cv."""
        from speechpipe.cli.common import console
        from speechpipe.tagging.tagger import FAST_STEM, MODEL_DIR, MODEL_STEM
        from speechpipe.tagging.train import FAST as FAST_KW
        from speechpipe.tagging.train import V3, GoldError
        from speechpipe.tagging.validate import train_and_save

        con = console()
        kw = dict(FAST_KW if fast else V3, C=c, tune_thresholds=tune)
        stem = out or MODEL_DIR / (FAST_STEM if fast else MODEL_STEM)
        try:
            res = train_and_save(gold, stem, cv=not no_cv, folds=folds, by_writer=by_writer, name=stem.name, **kw)
        except GoldError as e:
            con.print(f"[red]error[/red] {e}")
            raise typer.Exit(2) from None
        con.print(f"wrote {res['json']} and {res['npz']}")
        cv = res["cross_validation"]
        if cv:
            con.print(_metrics_table(f"leave-calls-out ({cv['folds']} folds), clean text", cv["clean"]))
            con.print(_metrics_table("same, ASR-like text", cv["asr_like"]))
            if "single" in cv:
                con.print(f"single utterances out of context: exact act set {cv['single']['exact_set_accuracy']:.3f}")
            con.print(f"act confidence ECE (out of fold): {cv['reliability']['ece']:.3f}; "
                      f"training CPU s: {cv.get('training_cpu_s')}")

    @eval_app.command("tagger")
    def eval_tagger(
        gold: Path = typer.Option(..., "--gold", help="Directory of gold transcripts with acts and phases."),
        model: Optional[Path] = MODEL,
        fast: bool = FAST,
        asr_like: bool = typer.Option(
            False, "--asr-like", help="Also score an ASR-like copy (lower case, no punctuation, errors)."
        ),
        json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics as JSON here."),
    ):
        """Act F1, phase accuracy and structure against your own gold transcripts."""
        from speechpipe.cli.common import console
        from speechpipe.outputs.writers import write_json
        from speechpipe.tagging.train import GoldError, asr_copy, load_gold_dir, score, tag_gold

        con = console()
        tagger = _load(model, con, fast)
        try:
            calls = load_gold_dir(gold)
        except GoldError as e:
            con.print(f"[red]error[/red] {e}")
            raise typer.Exit(2) from None
        res = {"model": tagger.name, "clean": score(tag_gold(tagger, calls), calls)}
        if asr_like:
            noisy = [asr_copy(c, 1000 + i) for i, c in enumerate(calls)]
            res["asr_like"] = score(tag_gold(tagger, noisy), noisy)
        from rich.console import Console

        out = Console()
        out.print(_metrics_table(f"{tagger.name} on {gold}", res["clean"]))
        if asr_like:
            out.print(_metrics_table("ASR-like copy", res["asr_like"]))
        if json_out:
            write_json(json_out, res)
