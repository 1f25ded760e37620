"""``speechpipe bench``: every stage and the whole pipeline, one table, one JSON.

Each stage benchmark is a module ``benchmarks.bench_<stage>`` exposing
``run(quick: bool = False) -> dict``; in full runs this orchestrator runs each
in its own subprocess (so one stage's crash, or its memory, never affects
another's figures), with ``--quick``/``--smoke`` all stages in one subprocess
(start-up paid once; ``batch`` left out), and merges their metrics. A module that is missing or fails is marked
``unavailable``/``failed`` and its keys are ``null``: stages land independently.

Every speed figure is a ratio measured in the same run (see each module).

Run: ``.venv/bin/python -m benchmarks.bench [--quick] [--json] [--smoke] [--stages a,b] [--save-md FILE]``
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from importlib import import_module

from . import machine, peak_rss_mb

STAGES = ("asr", "pipeline", "diarization", "prosody", "tagger", "batch")
# --quick leaves out the batch engine (start-up of Ray and of CLI processes, not throughput).
# Diarisation before the pipeline: its first use (encoder load, torch start-up) warms the pipeline's.
QUICK_STAGES = ("asr", "diarization", "pipeline", "prosody", "tagger")

# Keys the JSON always carries (null when the stage that measures it is unavailable).
REQUIRED = {
    "pipeline_x_realtime_cpu": "pipeline",
    "asr_x_realtime": "asr",
    "diarization_x_realtime": "diarization",
    "prosody_x_realtime": "prosody",
    "prosody_speedup_vs_pyin": "prosody",
    "tagger_utterances_per_s": "tagger",
    "tagger_speedup_vs_reference": "tagger",
}
# The targets on a 2-core machine; shown beside the measured value.
TARGETS = {
    "pipeline_x_realtime_cpu": 8.0,
    "prosody_speedup_vs_pyin": 15.0,
    "tagger_speedup_vs_reference": 100.0,
    "asr_speedup_vs_plain_loop": None,  # ≥ 3 on GPU only
}
GPU_TARGETS = {"asr_speedup_vs_plain_loop": 3.0, "asr_x_realtime": 500.0}
# Wall-clock limits (s): per stage in full runs, for the one process of quick/smoke.
TIMEOUT = {"smoke": 300, "quick": 300, "full": 3600}


def _normalise(stage: str, metrics: dict) -> dict:
    """Accept ``x_realtime`` from ``bench_prosody`` as ``prosody_x_realtime`` etc."""
    out = {}
    for k, v in metrics.items():
        if k in REQUIRED or k.startswith(f"{stage}_") or f"{stage}_{k}" not in REQUIRED:
            out[k] = v
        else:
            out[f"{stage}_{k}"] = v
    return out


def run_stage(stage: str, quick: bool = False, smoke: bool = False) -> dict:
    """Import ``benchmarks.bench_<stage>`` and call its ``run`` (in this process)."""
    mod = import_module(f"benchmarks.bench_{stage}")
    kwargs = {"quick": quick or smoke}
    if smoke and "smoke" in inspect.signature(mod.run).parameters:
        kwargs["smoke"] = True
    metrics = dict(mod.run(**kwargs))
    metrics["peak_rss_mb"] = max(float(metrics.get("peak_rss_mb") or 0), peak_rss_mb())
    return _normalise(stage, metrics)


def _stage_available(stage: str) -> bool:
    from importlib.util import find_spec

    return find_spec(f"benchmarks.bench_{stage}") is not None


def run_child(stage: str, quick: bool, smoke: bool, timeout: float) -> tuple[str, dict]:
    """Run one stage in a fresh interpreter; return (status, metrics)."""
    if not _stage_available(stage):
        return "unavailable (no benchmarks/bench_%s.py yet)" % stage, {}
    cmd = [sys.executable, "-m", "benchmarks.bench", "--child", stage]
    cmd += ["--smoke"] if smoke else ["--quick"] if quick else []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return f"timeout after {timeout:.0f} s", {}
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    if proc.returncode < 0:
        return f"killed (signal {-proc.returncode})", {}
    if proc.returncode != 0 or not lines:
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"failed: {err[:200]}", {}
    return "ok", json.loads(lines[-1])


def run_group(stages, quick: bool, smoke: bool, timeout: float) -> dict[str, tuple[str, dict, float]]:
    """Run several stages in one fresh interpreter (quick/smoke: imports and start-up once).

    Returns ``{stage: (status, metrics, seconds)}``; a stage that fails is reported
    and the others still run.
    """
    out: dict[str, tuple[str, dict, float]] = {}
    todo = []
    for st in stages:
        if _stage_available(st):
            todo.append(st)
        else:
            out[st] = ("unavailable (no benchmarks/bench_%s.py yet)" % st, {}, 0.0)
    if not todo:
        return out
    cmd = [sys.executable, "-m", "benchmarks.bench", "--child", ",".join(todo)]
    cmd += ["--smoke"] if smoke else ["--quick"] if quick else []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    timed_out, stderr = False, ""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:  # keep the stages that finished in time
        timed_out = True
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
    got = {}
    for ln in stdout.splitlines():  # the child prints one JSON line per finished stage
        if ln.startswith("{") and '"stage"' in ln:
            rec = json.loads(ln)
            got[rec["stage"]] = rec
    for st in todo:
        if st in got:
            out[st] = (got[st]["status"], got[st]["metrics"], got[st]["seconds"])
        elif timed_out:
            out[st] = (f"timeout (the {timeout:.0f} s limit of the quick run)", {}, 0.0)
        else:
            err = (stderr.strip().splitlines() or ["no output"])[-1]
            out[st] = (f"failed: {err[:200]}", {}, 0.0)
    return out


def _child_group(stages: list[str], quick: bool, smoke: bool) -> None:
    """Run the stages here, printing one JSON line per stage as soon as it is done."""
    import gc

    for st in stages:
        gc.collect()  # one stage's garbage must not slow the next
        t = time.perf_counter()
        try:
            rec = {"stage": st, "status": "ok", "metrics": run_stage(st, quick=quick, smoke=smoke)}
        except Exception as e:  # one stage's failure must not hide the others' figures
            rec = {"stage": st, "status": f"failed: {type(e).__name__}: {e}"[:200], "metrics": {}}
        rec["seconds"] = round(time.perf_counter() - t, 1)
        print(json.dumps(rec, default=str), flush=True)


def run_all(quick: bool = False, smoke: bool = False, stages=STAGES, progress=None) -> dict:
    """Run the stage benchmarks and merge them into the one result object.

    Parameters
    ----------
    quick : bool
        Short audio, few repetitions (about a minute in all).
    smoke : bool
        A few seconds of audio per stage: checks the JSON contract, not speed.
    stages : iterable of str
        Which ``bench_<stage>`` modules to run.
    progress : callable, optional
        Called with each stage name before it runs.

    Examples
    --------
    >>> res = run_all(smoke=True, stages=("asr",))  # doctest: +SKIP
    >>> res["stages"]["asr"], res["asr_x_realtime"] > 0
    ('ok', True)
    """
    mode = "smoke" if smoke else "quick" if quick else "full"
    result: dict = {k: None for k in REQUIRED}
    result.update(mode=mode, machine=machine(), stages={}, stage_seconds={})
    peak = peak_rss_mb()
    t_all = time.perf_counter()
    if mode == "full":  # each stage alone: its memory and a crash stay its own
        def outcomes():
            for stage in stages:
                if progress:
                    progress(stage)
                t = time.perf_counter()
                status, metrics = run_child(stage, quick, smoke, TIMEOUT[mode])
                yield stage, status, metrics, round(time.perf_counter() - t, 1)
    else:  # one process for all: start-up once, so quick stays near a minute
        def outcomes():
            if progress:
                progress(",".join(stages))
            for stage, (status, metrics, secs) in run_group(stages, quick, smoke, TIMEOUT[mode]).items():
                yield stage, status, metrics, secs
    for stage, status, metrics, secs in outcomes():
        result["stage_seconds"][stage] = secs
        result["stages"][stage] = status
        peak = max(peak, float(metrics.pop("peak_rss_mb", 0) or 0))
        for k, v in metrics.items():
            # Stage-named keys go top level; anything else stays under its stage, so two
            # modules' "utterances" or "audio_s" never overwrite each other.
            if k in REQUIRED or k.startswith(f"{stage}_"):
                result[k] = v
            else:
                result.setdefault("details", {}).setdefault(stage, {})[k] = v
    result["peak_rss_mb"] = round(peak, 1)
    result["wall_seconds"] = round(time.perf_counter() - t_all, 1)
    return result


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.2f}"
    return str(v)


def render(result: dict, console=None) -> None:
    """Print the machine, the stage status and the headline figures as rich tables."""
    from rich.console import Console
    from rich.table import Table

    con = console or Console()
    m = result["machine"]
    con.print(
        f"[bold]speechpipe bench[/bold] ({result['mode']}) on {m['cpu']}, {m['cores']} cores, "
        f"{m['ram_gb']} GB RAM, {m['os']}; python {m['python']}, torch {m['torch']}, "
        f"ctranslate2 {m['ctranslate2']}; GPU: {m['gpu'] or 'none'}; load {m['load_avg_at_start']}"
    )
    gpu = bool(m.get("gpu"))
    t = Table("metric", "value", "target", "stage", title="Throughput (ratios measured in the same run)")
    keys = list(REQUIRED) + [k for k in (
        "asr_speedup_vs_plain_loop", "asr_baseline_x_realtime", "asr_wer_real_clips", "asr_baseline_wer_real_clips",
        "pipeline_sequential_x_realtime", "pipeline_overlapped_x_realtime", "pipeline_x_realtime_cpu_bound",
        "peak_rss_mb",
    ) if k in result]
    for k in keys:
        stage = REQUIRED.get(k, k.split("_")[0])
        target = (GPU_TARGETS if gpu else {}).get(k, TARGETS.get(k))
        v = result.get(k)
        mark = ""
        if target is not None and isinstance(v, (int, float)):
            mark = " [green]✓[/green]" if v >= target else " [red]✗[/red]"
        t.add_row(k, _fmt(v) + mark, "—" if target is None else f"≥ {target:g}", stage)
    con.print(t)
    s = Table("stage", "status", "seconds", title="Stages")
    for stage, status in result["stages"].items():
        colour = "green" if status == "ok" else "yellow" if status.startswith("unavailable") else "red"
        s.add_row(stage, f"[{colour}]{status}[/{colour}]", _fmt(result["stage_seconds"].get(stage)))
    con.print(s)
    for stage, why in (result.get("pipeline_skipped_stages") or {}).items():
        con.print(f"[yellow]pipeline measured without {stage}[/yellow]: {why}")
    if result.get("pipeline_stage_seconds"):
        p = Table("pipeline stage", "seconds", "share", title="Where the time goes (pipeline run)")
        for k, v in result["pipeline_stage_seconds"].items():
            p.add_row(k, f"{v:.2f}", f"{100 * result['pipeline_stage_share'][k]:.0f} %")
        con.print(p)


def to_markdown(result: dict) -> str:
    """The result as a markdown section (for ``docs/benchmarks.md``)."""
    m = result["machine"]
    gpu = bool(m.get("gpu"))
    lines = [
        f"Mode `{result['mode']}`, {result['wall_seconds']} s in all. Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['ram_gb']} GB RAM, {m['os']}, Python {m['python']}, torch {m['torch']}, CTranslate2 {m['ctranslate2']}, "
        f"faster-whisper {m['faster_whisper']}, GPU: {m['gpu'] or 'none'}; "
        f"load average at start {m['load_avg_at_start']}.",
        "",
        "| metric | value | target |",
        "|---|---:|---:|",
    ]
    skip = {"mode", "machine", "stages", "stage_seconds", "wall_seconds", "details"}
    for k, v in result.items():
        if k in skip or isinstance(v, (dict, list)):
            continue
        target = (GPU_TARGETS if gpu else {}).get(k, TARGETS.get(k))
        lines.append(f"| `{k}` | {_fmt(v)} | {'' if target is None else f'≥ {target:g}'} |")
    lines += ["", "| stage | status | seconds |", "|---|---|---:|"]
    for st, status in result["stages"].items():
        lines.append(f"| {st} | {status} | {result['stage_seconds'].get(st)} |")
    if result.get("pipeline_stage_seconds"):
        lines += ["", "Where the pipeline's time goes:", "", "| stage | seconds | share |", "|---|---:|---:|"]
        for k, v in result["pipeline_stage_seconds"].items():
            lines.append(f"| {k} | {v:.2f} | {100 * result['pipeline_stage_share'][k]:.0f} % |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--child" in argv:  # JSON on the last line of stdout
        names = argv[argv.index("--child") + 1].split(",")
        quick, smoke = "--quick" in argv, "--smoke" in argv
        if len(names) == 1 and not (quick or smoke):
            print(json.dumps(run_stage(names[0]), default=str))
        else:
            _child_group(names, quick, smoke)
        return 0
    from rich.console import Console

    as_json = "--json" in argv
    con = Console(stderr=as_json)  # with --json, stdout ends with exactly one JSON line
    stages = QUICK_STAGES if ("--quick" in argv or "--smoke" in argv) else STAGES
    if "--stages" in argv:  # e.g. --stages asr,pipeline
        stages = tuple(argv[argv.index("--stages") + 1].split(","))
    with con.status("benchmarking…") as status:
        result = run_all(
            quick="--quick" in argv,
            smoke="--smoke" in argv,
            stages=stages,
            progress=lambda st: status.update(f"benchmarking {st}…"),
        )
    if "--scaling" in argv:  # long: fresh processes per call length; writes docs/scaling.*
        from . import scaling

        sc = scaling.run(quick="--quick" in argv, progress=lambda msg: con.log(msg))
        result["scaling_fits"] = sc["fits"]
    render(result, con)
    if "--save-md" in argv:  # e.g. --save-md docs/benchmarks-latest.md
        from speechpipe.outputs.writers import atomic_write_text

        atomic_write_text(argv[argv.index("--save-md") + 1], to_markdown(result))
    if as_json:
        print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
