"""Cost of the analytics step (interaction measures, echo delay, the default rules) per call.

Workload: the 6 stereo sim calls, built from their references (times, acts, words) with the
decoded stereo audio, so loudness and the echo-delay estimate run on real sample arrays.
Timings are process CPU time (one thread), as the other benchmarks, because the shared
development machine is oversubscribed; the pipeline's own CPU time per audio minute is in
the README (12.7 CPU-s per audio minute + 4.3 s per call).

Run: ``.venv/bin/python -m benchmarks.bench_analytics [--json]``
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

SHARED = Path(os.environ.get("SPEECHPIPE_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def run() -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_exports_data import timed_call

    from speechpipe.analytics.call import analyse_call
    from speechpipe.audio import load_audio

    sim = SHARED / "audio" / "sim-calls"
    cpu = audio_s = 0.0
    n = 0
    for ref in sorted(sim.glob("dev-00[1-6].ref.json")):
        call = timed_call(ref)
        audio = load_audio(sim / ref.name.replace(".ref.json", ".stereo.flac"))
        for u in call.utterances:  # channels as the stereo diariser sets them
            u.channel = 0 if u.speaker == "counsellor" else 1
        analyse_call(call, audio)  # warm (imports, rule file)
        t = time.process_time()
        for _ in range(3):
            analyse_call(call, audio)
        cpu += (time.process_time() - t) / 3
        audio_s += audio.duration
        n += 1
    return {"calls": n, "audio_s": round(audio_s, 1), "analytics_cpu_s_per_call": round(cpu / n, 4),
            "analytics_cpu_s_per_audio_min": round(cpu / (audio_s / 60), 4)}


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    res = run()
    print(json.dumps(res) if "--json" in sys.argv else "\n".join(f"{k}: {v}" for k, v in res.items()))
