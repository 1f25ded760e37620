"""End-to-end speed: ``Pipeline`` on 8 kHz μ-law phone calls, on the CPU.

Two ways over the same calls in the same run: a plain loop of
``Pipeline.process`` (baseline) and ``Pipeline.process_many``, which runs the
CPU stages (diarisation, prosody, tagging) of one call while the next is being
recognised. ``pipeline_x_realtime_cpu`` is the faster of the two, in audio
seconds per wall second, models already loaded (loading is reported apart).

Run: ``.venv/bin/python -m benchmarks.bench_pipeline [--quick]``
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from . import make_call_wav, n_cpus, peak_rss_mb, sim_calls

QUICK_SECONDS = 20.0
SMOKE_SECONDS = 3.0
STAGES = ("decode", "vad", "asr", "diarization", "prosody", "tagger")


def bench_calls(quick: bool, workdir: Path, n_full: int = 2, seconds: float = QUICK_SECONDS) -> list[Path]:
    """Quick: two different ``seconds`` excerpts of 8 kHz calls; else whole sim calls."""
    if quick:
        import soundfile as sf

        both = workdir / "quick-calls.wav"
        make_call_wav(2 * seconds, both)
        data, sr = sf.read(both, dtype="int16")
        half = len(data) // 2
        paths = []
        for i, part in enumerate((data[:half], data[half:])):
            p = workdir / f"quick-call-{i}.wav"
            sf.write(p, part, sr, subtype="ULAW")
            paths.append(p)
        return paths
    calls = sim_calls(n_full, shortest=True)
    if not calls:
        raise FileNotFoundError("shared sim calls not found (set SPEECHPIPE_SHARED)")
    return calls


def run(quick: bool = False, paths: list[Path] | None = None, overlap: bool | None = None, smoke: bool = False) -> dict:
    """Measure the whole pipeline on CPU.

    Parameters
    ----------
    quick : bool
        Two 20 s calls, overlapped only.
    paths : list of Path, optional
        Recordings to use instead of the shared sim calls (tests).
    overlap : bool, optional
        Also time ``process_many`` (default: when there are two or more calls).
    smoke : bool
        One 3 s call: checks the code path, not the speed.

    Returns
    -------
    dict
        ``pipeline_x_realtime_cpu``, the sequential and overlapped figures,
        seconds per stage, model load time, peak RSS.
    """
    import soundfile as sf

    from speechpipe.asr.whisper import ASRConfig
    from speechpipe.pipeline import Pipeline, PipelineConfig

    with tempfile.TemporaryDirectory(prefix="speechpipe-bench-") as tmp:
        paths = paths or bench_calls(quick or smoke, Path(tmp), seconds=SMOKE_SECONDS if smoke else QUICK_SECONDS)
        audio_s = sum(sf.info(str(p)).duration for p in paths)
        pipe = Pipeline(PipelineConfig(asr=ASRConfig(device="cpu")))
        t = time.perf_counter()
        _ = pipe.asr
        skipped = {}
        for stage in ("prosody", "tag"):
            try:
                _ = pipe.prosody if stage == "prosody" else pipe.tagger
            except Exception as e:  # a stage landing in parallel may be broken for a while: say so
                setattr(pipe.config, stage, False)
                skipped[stage] = f"{type(e).__name__}: {e}"[:200]
        pipe._build_finishers()
        load_s = time.perf_counter() - t
        # Stages may load models lazily on first use: warm up on 3 s so only steady-state is timed.
        warm_s = None
        if not smoke:  # smoke checks the path, not the speed: no warm-up
            warm = Path(tmp) / "warm-up.wav"
            make_call_wav(3.0, warm)
            t = time.perf_counter()
            pipe.process(warm)
            warm_s = time.perf_counter() - t

        seq_s = seq_cpu = many_s = many_cpu = None
        results = []
        if not quick or smoke:  # quick: only the overlapped path (what batch runs use)
            t, c = time.perf_counter(), time.process_time()
            results = [pipe.process(p) for p in paths]
            seq_s, seq_cpu = time.perf_counter() - t, time.process_time() - c
        if (overlap if overlap is not None else len(paths) > 1) and not smoke:
            t, c = time.perf_counter(), time.process_time()
            outcomes = list(pipe.process_many(paths))
            many_s, many_cpu = time.perf_counter() - t, time.process_time() - c
            errors = [str(r) for _, r in outcomes if isinstance(r, Exception)]
            if errors:
                raise RuntimeError(f"process_many failed: {errors[0]}")
            results = results or [r for _, r in outcomes]
        stage_s = {k: round(sum(r.models["timings_s"].get(k, 0.0) for r in results), 3) for k in STAGES}

    best = min(t for t in (seq_s, many_s) if t is not None)
    cpu = seq_cpu if seq_cpu is not None else many_cpu
    return {
        "pipeline_x_realtime_cpu": round(audio_s / best, 2),
        "pipeline_sequential_x_realtime": None if seq_s is None else round(audio_s / seq_s, 2),
        "pipeline_overlapped_x_realtime": None if many_s is None else round(audio_s / many_s, 2),
        "pipeline_overlap_speedup": None if None in (many_s, seq_s) else round(seq_s / many_s, 2),
        # CPU seconds (all threads) per audio second: unlike wall time, not inflated by other
        # jobs; cores / this = the real-time factor an idle machine could reach at best.
        "pipeline_cpu_s_per_audio_s": round(cpu / audio_s, 3),
        "pipeline_x_realtime_cpu_bound": round(audio_s * n_cpus() / cpu, 2),
        "pipeline_audio_seconds": round(audio_s, 1),
        "pipeline_calls": len(paths),
        "pipeline_stage_seconds": stage_s,
        "pipeline_stage_share": {k: round(v / max(1e-9, sum(stage_s.values())), 3) for k, v in stage_s.items()},
        "pipeline_skipped_stages": skipped,
        "pipeline_models": {k: v for k, v in results[0].models.items() if k != "timings_s"},
        "pipeline_model_load_s": round(load_s, 2),
        "pipeline_warm_up_s": None if warm_s is None else round(warm_s, 2),
        "peak_rss_mb": peak_rss_mb(),
    }


def table(m: dict) -> str:
    lines = [f"Pipeline, CPU ({m['pipeline_calls']} call(s), {m['pipeline_audio_seconds']} s of 8 kHz audio)"]
    if m["pipeline_sequential_x_realtime"] is not None:
        lines.append(f"  sequential   {m['pipeline_sequential_x_realtime']:7.2f}× real time")
    if m["pipeline_overlapped_x_realtime"] is not None:
        lines.append(
            f"  overlapped   {m['pipeline_overlapped_x_realtime']:7.2f}× real time "
            f"({m['pipeline_overlap_speedup']}× vs sequential)"
        )
    for k, v in m["pipeline_stage_seconds"].items():
        lines.append(f"  {k:<12} {v:7.2f} s  ({100 * m['pipeline_stage_share'][k]:.0f} %)")
    return "\n".join(lines)


if __name__ == "__main__":
    metrics = run(quick="--quick" in sys.argv)
    print(table(metrics))
    print(json.dumps(metrics))
