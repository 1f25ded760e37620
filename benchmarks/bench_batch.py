"""Batch throughput: local engine vs Ray with 1 and 2 workers; peak memory on a long call.

Speed is reported as a ratio against the local engine measured in the same
run (the machine is shared and noisy). Each engine run includes its model
loading, as a real batch does; the calls are cut from the shared simulated
telephone calls (8 kHz μ-law).

    .venv/bin/python -m benchmarks.bench_batch [--quick] [--long-call HOURS]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPEECHPIPE_SHARED", REPO.parent / "shared"))


def make_calls(dest: Path, n: int, seconds: float) -> list[Path]:
    import soundfile as sf

    src = sorted((SHARED / "audio/sim-calls").glob("*.mono.wav"))
    out = []
    for i in range(n):
        x, sr = sf.read(src[i % len(src)], dtype="int16")
        start = int(sr * 20 * (i // len(src)))
        p = dest / f"call-{i:03d}.wav"
        sf.write(p, x[start : start + int(sr * seconds)], sr, subtype="ULAW")
        out.append(p)
    return out


def _config():
    from speechpipe.asr.whisper import ASRConfig
    from speechpipe.pipeline import PipelineConfig

    # One thread per worker, so 1 vs 2 workers compares 1 vs 2 cores.
    return PipelineConfig(asr=ASRConfig(device="cpu", cpu_threads=1), prosody=False, tag=False)


def run(quick: bool = False) -> dict:
    """Throughput of the local engine and Ray with 1 and 2 workers (calls/s, audio-h/s, ratio)."""
    from speechpipe import offline

    offline.enforce_env()
    from speechpipe.batch.runner import discover, run_batch

    n, seconds = (4, 8.0) if quick else (8, 30.0)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        make_calls(tmp / "in", n, seconds)
        for name, kw in (("local", {"engine": "local"}), ("ray-1", {"engine": "ray", "workers": 1}),
                         ("ray-2", {"engine": "ray", "workers": 2})):
            t = time.perf_counter()
            s = run_batch(discover(tmp / "in"), tmp / name, _config(), **kw)
            wall = time.perf_counter() - t
            rows[name] = {"wall_s": round(wall, 2), "calls": s.done, "calls_per_s": round(s.done / wall, 4),
                          "audio_h_per_s": round(s.audio_seconds / 3600 / wall, 6), "failed": s.failed}
    base = rows["local"]["wall_s"]
    for r in rows.values():
        r["speedup_vs_local"] = round(base / r["wall_s"], 3)
    rows["ray_2_vs_1"] = round(rows["ray-1"]["wall_s"] / rows["ray-2"]["wall_s"], 3)
    rows["setup"] = {"calls": n, "seconds_each": seconds, "cpu_count": os.cpu_count(), "cpu_threads_per_worker": 1}
    return rows


def long_call_memory(hours: float = 2.0) -> dict:
    """Peak RSS of one pipeline run on a synthetic ``hours``-long 8 kHz call (a subprocess)."""
    import numpy as np
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        parts, total, i = [], 0, 0
        src = sorted((SHARED / "audio/sim-calls").glob("*.mono.wav"))
        while total < hours * 3600 * 8000:
            x, _ = sf.read(src[i % len(src)], dtype="int16")
            parts.append(x)
            total += len(x)
            i += 1
        sf.write(path, np.concatenate(parts)[: int(hours * 3600 * 8000)], 8000, subtype="ULAW")
        del parts
        code = (
            "import resource,sys,time;from speechpipe.pipeline import Pipeline,PipelineConfig;"
            "from speechpipe.asr.whisper import ASRConfig;t=time.time();"
            "r=Pipeline(PipelineConfig(asr=ASRConfig(device='cpu'))).process(sys.argv[1]);"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024, time.time()-t, len(r.utterances))"
        )
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
        peak, wall, n = out.stdout.split()[-3:]
    return {"hours": hours, "peak_rss_mb": round(float(peak)), "wall_s": round(float(wall)), "utterances": int(n)}


def _table(res: dict) -> str:
    lines = [f"{'engine':8} {'wall s':>8} {'calls/s':>9} {'audio-h/s':>10} {'× local':>8}"]
    for k in ("local", "ray-1", "ray-2"):
        r = res[k]
        lines.append(
            f"{k:8} {r['wall_s']:8.1f} {r['calls_per_s']:9.3f} {r['audio_h_per_s']:10.5f} {r['speedup_vs_local']:8.2f}"
        )
    lines.append(f"ray 2 workers vs 1: ×{res['ray_2_vs_1']:.2f}   ({res['setup']})")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--long-call", type=float, default=None, metavar="HOURS", help="also measure peak RSS on one long call"
    )
    a = ap.parse_args()
    print(_table(run(quick=a.quick)))
    if a.long_call:
        print(long_call_memory(a.long_call))
