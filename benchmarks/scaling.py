"""Scaling: how time and memory grow with call length and with batch size.

Each measurement runs in a fresh interpreter so its peak RSS is its own.
Calls of 1, 10, 60 and 120 minutes are synthesised by concatenating the shared
8 kHz sim calls (realistic speech/turn density, see
:func:`benchmarks.make_call_wav`). Two modes per length:

- ``full``: the whole pipeline, Whisper included;
- ``stages``: decode, VAD, diarisation, prosody and tagging on the calls'
  reference utterances (ASR skipped), so hour-long calls fit in a benchmark
  run. Whisper's own cost is per 30 s window, measured by ``full``;
- ``io``: decode and VAD only, the memory floor every stage stands on.

Children run with the pipeline's default CPU layout (one single-threaded ASR
replica per core), so wall time is the speed a user gets on an idle machine;
CPU time is also recorded because it is robust to other jobs.

Writes ``docs/scaling.md`` (table) and ``docs/scaling.png`` (curve).

Run::

    .venv/bin/python -m benchmarks.scaling [--quick] [--lengths 1,10,60,120] [--full-max 10] \
        [--stages-max 120] [--batches 1,2,4,8]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import REPO, machine, make_call_wav, peak_rss_mb

LENGTHS_MIN = (1, 10, 60, 120)
BATCH_SIZES = (1, 2, 4, 8)
BATCH_CALL_S = 10.0


def _words(text: str, start: float, end: float):
    """Evenly spaced words over an utterance: the shape ASR output has."""
    from speechpipe.records import Word

    toks = text.split() or ["…"]
    step = (end - start) / len(toks)
    return [Word(t, start + i * step, start + (i + 1) * step) for i, t in enumerate(toks)]


def _pipeline(skipped: dict):
    """A one-thread CPU pipeline; optional stages that fail to build are skipped (and named)."""
    from speechpipe.asr.whisper import ASRConfig
    from speechpipe.pipeline import Pipeline, PipelineConfig

    # The defaults users get (one ASR replica per core): wall time is then the real speed.
    pipe = Pipeline(PipelineConfig(asr=ASRConfig(device="cpu")))
    for stage in ("prosody", "tag"):
        try:
            _ = pipe.prosody if stage == "prosody" else pipe.tagger
        except Exception as e:  # a stage landing in parallel may be broken for a while
            setattr(pipe.config, stage, False)
            skipped[stage] = f"{type(e).__name__}: {e}"[:200]
    return pipe


def one_length(seconds: float, mode: str) -> dict:
    """Child: synthesise one call, process it, report time per stage and peak RSS."""
    from speechpipe.audio import load_audio
    from speechpipe.audio.vad import speech_probabilities as _speech_probabilities
    from speechpipe.pipeline import _Job
    from speechpipe.records import Utterance

    skipped: dict = {}
    pipe = _pipeline(skipped)

    def measure(path: Path, refs: list[dict]):
        if mode == "full":
            return pipe.process(path)
        if mode == "io":  # decode + VAD only: what every stage's memory rests on
            t0 = time.perf_counter()
            audio = load_audio(path)
            t1 = time.perf_counter()
            _speech_probabilities(audio.samples[0])
            return {"decode": t1 - t0, "vad": time.perf_counter() - t1}
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        audio = load_audio(path)
        timings["decode"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        probs = [_speech_probabilities(audio.samples[0])]
        timings["vad"] = time.perf_counter() - t1
        utts = [Utterance("unknown", r["start"], r["end"], r["text"], words=_words(r["text"], r["start"], r["end"]))
                for r in refs]
        return pipe._finish(_Job(path.stem, audio, utts, [[]], probs, timings, t0))

    with tempfile.TemporaryDirectory(prefix="speechpipe-scaling-") as tmp:
        warm = Path(tmp) / "warm-up.wav"
        measure(warm, make_call_wav(20.0, warm))  # stages load their models lazily
        rss_models = peak_rss_mb()
        path = Path(tmp) / f"call-{seconds:.0f}s.wav"
        refs = make_call_wav(seconds, path)
        t, c = time.perf_counter(), time.process_time()
        res = measure(path, refs)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    if isinstance(res, dict):
        stage_s, n_utts = {k: round(v, 3) for k, v in res.items()}, None
    else:
        stage_s, n_utts = res.models["timings_s"], len(res.utterances)
    return {
        "mode": mode,
        "audio_s": round(seconds, 1),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),  # robust to other jobs on the machine, unlike wall time
        "x_realtime": round(seconds / wall, 2),
        "stage_s": stage_s,
        "utterances": n_utts,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_model_load_mb": rss_models,
        "skipped_stages": skipped,
    }


def one_batch(n: int) -> dict:
    """Child: ``n`` short calls through ``Pipeline.process_many``."""

    with tempfile.TemporaryDirectory(prefix="speechpipe-scaling-") as tmp:
        paths = []
        for i in range(n):
            p = Path(tmp) / f"call-{i}.wav"
            make_call_wav(BATCH_CALL_S, p)
            paths.append(p)
        skipped: dict = {}
        pipe = _pipeline(skipped)
        _ = pipe.asr
        pipe._build_finishers()
        pipe.process(paths[0])  # warm-up: stages that load lazily
        rss_models = peak_rss_mb()
        t, c = time.perf_counter(), time.process_time()
        out = list(pipe.process_many(paths))
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    failed = [str(r) for _, r in out if isinstance(r, Exception)]
    if failed:
        raise RuntimeError(failed[0])
    return {"batch": n, "audio_s": n * BATCH_CALL_S, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "s_per_call": round(wall / n, 2), "peak_rss_mb": peak_rss_mb(), "rss_after_warm_up_mb": rss_models,
            "skipped_stages": skipped}


def _child(args: list[str], timeout: float) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.scaling", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"scaling child {args} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(lines[-1])


def _slope_fit(xs, ys) -> dict:
    """Least-squares line and the worst relative deviation from it (linearity check)."""
    import numpy as np

    if len(xs) < 2:
        return {"per_unit": None, "max_rel_dev": None}
    a, b = np.polyfit(xs, ys, 1)
    pred = a * np.asarray(xs) + b
    dev = np.abs(np.asarray(ys) - pred) / np.maximum(pred, 1e-9)
    return {"per_unit": round(float(a), 4), "intercept": round(float(b), 3), "max_rel_dev": round(float(dev.max()), 3)}


def run(quick: bool = False, lengths_min=None, full_max_min: float = 10, stages_max_min: float = 120,
        batches=None, write_docs: bool = True, progress=print) -> dict:
    """Measure the scaling curves; write ``docs/scaling.{md,png}`` after every point.

    Parameters
    ----------
    quick : bool
        0.5/1/2-minute calls and batch sizes 1/2 (a couple of minutes).
    lengths_min : sequence of float
        Call lengths in minutes (default 1, 10, 60, 120). Each gets ``io``
        (decode + VAD); lengths up to ``stages_max_min`` also ``stages``, up to
        ``full_max_min`` also ``full`` (Whisper included).
    batches : sequence of int
        Batch sizes for ``process_many`` (default 1, 2, 4, 8).
    """
    lengths_min = lengths_min or ((0.5, 1, 2) if quick else LENGTHS_MIN)
    batches = batches or ((1, 2) if quick else BATCH_SIZES)
    result = {"lengths": [], "batches": [], "fits": {}, "machine": machine()}

    def save():
        rows, brows = result["lengths"], result["batches"]
        fits = {}
        for mode in ("io", "stages", "full"):
            r = [x for x in rows if x["mode"] == mode]
            mins = [x["audio_s"] / 60 for x in r]
            fits[f"{mode}_cpu_s_per_audio_min"] = _slope_fit(mins, [x["cpu_s"] for x in r])
            fits[f"{mode}_rss_mb_per_audio_min"] = _slope_fit(mins, [x["peak_rss_mb"] for x in r])
        fits["batch_cpu_s_per_call"] = _slope_fit([x["batch"] for x in brows], [x["cpu_s"] for x in brows])
        result["fits"] = fits
        if write_docs:
            write_docs_files(result)

    for m in lengths_min:
        modes = ["io"] + (["stages"] if m <= stages_max_min else []) + (["full"] if m <= full_max_min else [])
        for mode in modes:
            progress(f"scaling: {m} min, {mode}")
            result["lengths"].append(_child(["--one", str(m * 60), mode], timeout=max(600, m * 60 * 3)))
            save()
    for n in batches:
        progress(f"scaling: batch of {n}")
        result["batches"].append(_child(["--batch", str(n)], timeout=600 + n * 120))
        save()
    return result


def write_docs_files(result: dict, out: Path = REPO / "docs") -> None:
    """``scaling.md`` (tables) and ``scaling.png`` (time and peak RSS vs call length; batch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from speechpipe.outputs.writers import atomic_write_bytes, atomic_write_text

    rows, brows = result["lengths"], result["batches"]
    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    labels = {"io": "decode + VAD", "stages": "all stages but ASR (gold text)", "full": "whole pipeline"}
    for mode, style in (("io", "^-"), ("stages", "o-"), ("full", "s-")):
        r = [x for x in rows if x["mode"] == mode]
        if r:
            label = labels[mode]
            ax[0].plot([x["audio_s"] / 60 for x in r], [x["cpu_s"] for x in r], style, label=label)
            ax[1].plot([x["audio_s"] / 60 for x in r], [x["peak_rss_mb"] for x in r], style, label=label)
    ax[0].set(xlabel="call length (min)", ylabel="CPU time (s)", title="time vs call length")
    ax[1].set(xlabel="call length (min)", ylabel="peak RSS (MiB)", title="memory vs call length")
    ax[2].plot([x["batch"] for x in brows], [x["cpu_s"] for x in brows], "o-", label="CPU time (s)")
    ax2 = ax[2].twinx()
    ax2.plot(
        [x["batch"] for x in brows], [x["peak_rss_mb"] for x in brows], "s--", color="tab:red", label="peak RSS (MiB)"
    )
    ax2.set_ylim(bottom=0)
    ax[2].set(xlabel=f"calls in one process_many run ({BATCH_CALL_S:.0f} s each)", ylabel="CPU time (s)",
              title="batch size")
    for a in ax[:2]:
        a.legend()
        a.set_ylim(bottom=0)
    ax[2].set_ylim(bottom=0)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(out / "scaling.png", buf.getvalue())

    m = result["machine"]
    lines = [
        "# Scaling with call length and batch size",
        "",
        f"Measured by `python -m benchmarks.scaling` on {m['cpu']} ({m['cores']} cores, {m['ram_gb']} GB), "
        f"load average at start {m['load_avg_at_start']}; default CPU layout (one ASR replica per core).",
        "",
        "CPU time is the child's own (user + system), robust to the other jobs on the machine; wall time is not.",
        "",
        "| call | mode | CPU s | wall s | × real time (wall) | peak RSS MiB | utterances "
        "| decode | vad | asr | diarization | prosody | tagger |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in rows:
        s = x["stage_s"]
        lines.append(
            f"| {x['audio_s'] / 60:g} min | {x['mode']} | {x['cpu_s']} | {x['wall_s']} | {x['x_realtime']} "
            f"| {x['peak_rss_mb']} | "
            f"{x['utterances']} | "
            + " | ".join(str(s.get(k, "—")) for k in ("decode", "vad", "asr", "diarization", "prosody", "tagger"))
            + " |"
        )
    lines += [
        "",
        f"| calls ({BATCH_CALL_S:.0f} s each) | CPU s | wall s | wall s per call | peak RSS MiB |",
        "|---:|---:|---:|---:|---:|",
    ]
    for x in brows:
        lines.append(f"| {x['batch']} | {x['cpu_s']} | {x['wall_s']} | {x['s_per_call']} | {x['peak_rss_mb']} |")
    skipped = {k: v for x in rows + brows for k, v in x.get("skipped_stages", {}).items()}
    if skipped:
        lines += ["", "Stages skipped because they failed to build during this run: "
                  + "; ".join(f"{k} ({v})" for k, v in skipped.items())]
    lines += ["", "Linear fits (`max_rel_dev` = worst deviation of a point from the fitted line):", "",
              "```json", json.dumps(result["fits"], indent=1), "```", "", "![scaling](scaling.png)", ""]
    atomic_write_text(out / "scaling.md", "\n".join(lines))


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--one" in argv:
        i = argv.index("--one")
        print(json.dumps(one_length(float(argv[i + 1]), argv[i + 2])))
    elif "--batch" in argv:
        print(json.dumps(one_batch(int(argv[argv.index("--batch") + 1]))))
    else:
        kw = {}
        if "--lengths" in argv:
            kw["lengths_min"] = [float(v) for v in argv[argv.index("--lengths") + 1].split(",")]
        if "--full-max" in argv:
            kw["full_max_min"] = float(argv[argv.index("--full-max") + 1])
        if "--stages-max" in argv:
            kw["stages_max_min"] = float(argv[argv.index("--stages-max") + 1])
        if "--batches" in argv:
            kw["batches"] = [int(v) for v in argv[argv.index("--batches") + 1].split(",")]
        res = run(quick="--quick" in argv, **kw)
        print(json.dumps(res))
