"""Prosody stage: speed per CPU core, side by side with ``librosa.pyin``, plus its accuracy.

Speed: the whole stage (:class:`speechpipe.prosody.analyzer.ProsodyAnalyzer`: resampling,
frame features, two-pass Praat pitch, breaths, per-turn cues, jitter/shimmer)
on a simulated dev call with its reference turns, against ``librosa.pyin``
alone on the same audio (8 kHz, as the stage sees it), both timed as CPU
seconds in this run (the machine is shared and noisy; the ratio is what
counts). Accuracy (full run): backchannel intonation accuracy and breath
precision/recall/F1 on the 16 mono dev calls and the 6 stereo ones, and the
pitch gross-error rate of both trackers on a synthetic telephone-band signal
with known F0.

Run: ``.venv/bin/python -m benchmarks.bench_prosody [--quick]``
(single core: the module sets ``OMP_NUM_THREADS=1`` etc. when run as a script).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

SHARED = Path(os.environ.get("SPEECHPIPE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SIM = SHARED / "audio" / "sim-calls"


def _cpu(fn, *args, **kwargs):
    t = time.process_time()
    w = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.process_time() - t, time.perf_counter() - w


def _workload(seconds: float | None, stereo: bool = False):
    """(AudioData, utterances) of dev-001 (mono 8 kHz μ-law, or stereo), cut to ``seconds``;
    synthetic when no shared data."""
    import numpy as np

    from speechpipe.records import SAMPLE_RATE, AudioData, Utterance

    if (SIM / "dev-001.ref.json").exists():
        from speechpipe.audio import load_audio
        from speechpipe.evaluation.prosody import reference_utterances

        ref = json.loads((SIM / "dev-001.ref.json").read_text())
        name = "dev-001.stereo.flac" if stereo else "dev-001.mono.wav"
        audio = load_audio(SIM / name)
        utts = reference_utterances(ref, stereo=stereo)
        if seconds:
            n = int(seconds * SAMPLE_RATE)
            audio = AudioData(audio.path, audio.samples[:, :n], audio.orig_sample_rate)
            utts = [u for u in utts if u.end <= seconds]
        return audio, utts, name
    import soxr

    from speechpipe.evaluation.pitch import synth_telephone_voice

    dur = seconds or 120.0
    x, _, _ = synth_telephone_voice(dur, seed=0)
    y = soxr.resample(x, 8000, SAMPLE_RATE).astype(np.float32)[None]
    utts = [Utterance("caller" if i % 2 else "counsellor", i * 2.0, i * 2.0 + 1.8, "ja") for i in range(int(dur // 2))]
    return AudioData("synthetic", y, 8000), utts, "synthetic telephone voice"


def _stage_cpu(audio, utts, reps: int) -> tuple[float, float, dict]:
    from speechpipe.prosody.analyzer import ProsodyAnalyzer

    an = ProsodyAnalyzer()
    an.analyse(audio, utts)  # warm-up: imports, FFT plans
    runs = []
    for _ in range(reps):
        _, cpu, wall = _cpu(an.analyse, audio, utts)
        runs.append((cpu, wall, dict(an.last_timings)))
    return min(runs, key=lambda r: r[0])


def speed(seconds: float | None, reps: int) -> dict:
    import soxr

    from speechpipe.prosody.pitch import WIDE_CEILING, WIDE_FLOOR, PyinTracker

    audio, utts, name = _workload(seconds)
    cpu, wall, parts = _stage_cpu(audio, utts, reps)
    x8 = soxr.resample(audio.mono, audio.sample_rate, 8000).astype("float32")
    pyin = PyinTracker()
    pyin.track(x8[:8000], 8000, WIDE_FLOOR, WIDE_CEILING)  # warm-up (numba)
    _, pyin_cpu, pyin_wall = _cpu(pyin.track, x8, 8000, WIDE_FLOOR, WIDE_CEILING)
    dur = audio.duration
    stereo = {}
    if (SIM / "dev-001.stereo.flac").exists():
        sa, su, _ = _workload(seconds, stereo=True)
        s_cpu, _, _ = _stage_cpu(sa, su, reps)
        stereo = {"x_realtime_stereo": round(sa.duration / s_cpu, 1)}  # call seconds per CPU second, both channels
    return {
        "workload": f"{name}, {dur:.0f} s, {len(utts)} turns",
        "audio_s": round(dur, 1),
        "x_realtime": round(dur / cpu, 1),  # per CPU core (CPU seconds)
        "x_realtime_wall": round(dur / wall, 1),
        "pyin_x_realtime": round(dur / pyin_cpu, 1),
        "speedup_vs_pyin": round(pyin_cpu / cpu, 1),
        "stage_cpu_s": {k: round(v, 3) for k, v in parts.items()},
        "pyin_wall_s": round(pyin_wall, 2),
        **stereo,
    }


def accuracy(calls: list[str] | None = None) -> dict:
    from speechpipe.audio import load_audio
    from speechpipe.evaluation.prosody import prf, reference_utterances, score_call
    from speechpipe.prosody.analyzer import ProsodyAnalyzer

    an = ProsodyAnalyzer()
    out = {}
    for kind, suffix in (("mono", "mono.wav"), ("stereo", "stereo.flac")):
        tot = dict(n=0, ok=0, tp=0, det=0, ref=0, heavy=0, calls=0)
        for refp in sorted(SIM.glob("dev-*.ref.json")):
            cid = refp.name.split(".")[0]
            path = SIM / f"{cid}.{suffix}"
            if not path.exists() or (calls and cid not in calls):
                continue
            ref = json.loads(refp.read_text())
            utts = reference_utterances(ref, stereo=kind == "stereo")
            s = score_call(ref, utts, an.analyse(load_audio(path), utts))
            for k, src in (("n", "intonation_n"), ("ok", "intonation_correct"), ("tp", "breath_tp"),
                           ("det", "breath_det"), ("ref", "breath_ref"), ("heavy", "breath_heavy_agree")):
                tot[k] += s[src]
            tot["calls"] += 1
        if not tot["calls"]:
            continue
        p, r, f1 = prf(tot["tp"], tot["det"], tot["ref"])
        out[kind] = {
            "calls": tot["calls"],
            "intonation_accuracy": round(tot["ok"] / max(1, tot["n"]), 4),
            "backchannels": tot["n"],
            "breath_precision": round(p, 4),
            "breath_recall": round(r, 4),
            "breath_f1": round(f1, 4),
            "breaths": tot["ref"],
            "heavy_agreement": round(tot["heavy"] / max(1, tot["tp"]), 4),
        }
    return out


def pitch_errors(seconds: float) -> dict:
    from speechpipe.evaluation.pitch import gross_error_rate, synth_telephone_voice
    from speechpipe.prosody.pitch import WIDE_CEILING, WIDE_FLOOR, PraatACTracker, PyinTracker

    x, times, truth = synth_telephone_voice(seconds, seed=1)
    out = {}
    for key, tr in (("praat", PraatACTracker()), ("pyin", PyinTracker())):
        (t, f0), cpu, _ = _cpu(tr.track, x, 8000, WIDE_FLOOR, WIDE_CEILING)
        m = gross_error_rate(t, f0, times, truth)
        out[key] = {k: round(v, 4) for k, v in m.items()} | {"x_realtime": round(seconds / cpu, 1)}
    return out


def run(quick: bool = False, smoke: bool = False) -> dict:
    """Speed (always), accuracy and pitch errors (quick: 15 s, 1 call, 5 s; smoke: speed on 20 s only)."""
    seconds = 20.0 if smoke else 15.0 if quick else None
    res = speed(seconds, reps=1 if (smoke or quick) else 3)
    if not smoke:
        if SIM.exists():
            res["accuracy"] = accuracy(["dev-001"] if quick else None)
        res["pitch_gross_errors"] = pitch_errors(5.0 if quick else 30.0)
    return res


def _print(res: dict) -> None:
    print(f"\nprosody stage — {res['workload']}")
    print(f"{'':28}{'x real time / core':>20}{'ratio':>10}")
    print(f"{'prosody stage (Praat AC)':28}{res['x_realtime']:>20.1f}{res['speedup_vs_pyin']:>9.1f}×")
    print(f"{'librosa.pyin alone':28}{res['pyin_x_realtime']:>20.1f}{1.0:>9.1f}×")
    if "x_realtime_stereo" in res:
        print(f"{'prosody stage, stereo call':28}{res['x_realtime_stereo']:>20.1f}")
    print("stage CPU seconds:", ", ".join(f"{k} {v}" for k, v in res["stage_cpu_s"].items()))
    for kind, a in res.get("accuracy", {}).items():
        print(
            f"{kind:7} {a['calls']:2} calls: intonation {a['intonation_accuracy']:.1%} of {a['backchannels']}; "
            f"breaths P {a['breath_precision']:.2f} R {a['breath_recall']:.2f} F1 {a['breath_f1']:.2f} "
            f"of {a['breaths']}; heavy agrees {a['heavy_agreement']:.0%}"
        )
    for key, m in res.get("pitch_gross_errors", {}).items():
        print(
            f"synthetic telephone F0, {key:6}: gross errors {m['gross_error_rate']:.2%} "
            f"(voicing recall {m['voicing_recall']:.1%}, {m['x_realtime']:.0f}× real time)"
        )


if __name__ == "__main__":
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    result = run(quick="--quick" in sys.argv, smoke="--smoke" in sys.argv)
    _print(result)
    if "--json" in sys.argv:
        print(json.dumps(result))
