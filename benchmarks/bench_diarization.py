"""Diarisation: speed (real-time factor vs. the Silero VAD pass), DER, roles, memory on long calls.

Speed: the default mono diariser (``neural``: pyannote segmentation-3.0 + CAM++,
:mod:`speechpipe.speakers.neural`; ``--diarizer embedded`` for the previous one) on a
simulated call, against the Silero VAD pass alone on the same audio in the same run (the
machine is shared and noisy; the ratio is what counts), plus its real-time factor, with the
threads the process has (``OMP_NUM_THREADS``; the CLI's bench sets 1).
Accuracy (full run): DER with pyannote.metrics on the real two-speaker
recordings and the 16 mono sim calls, at collar 0.25 (pyannote: total width,
±0.125 s) and 0.5 (±0.25 s, NIST md-eval's usual collar); role accuracy on
the mono sim calls from timing alone (no transcript) = share of reference
speech time given the right role; stereo role decision on the stereo calls.
Memory: peak RSS of a child process diarising a 2-hour call built by concatenating the sim
calls (full runs only), and its speed there.

Run: ``.venv/bin/python -m benchmarks.bench_diarization [--quick] [--diarizer neural|embedded]``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import machine, peak_rss_mb, shared_dir, sim_calls
from speechpipe.evaluation import role_time_accuracy, scored_region


def _der(ref, hyp, collar):
    from pyannote.metrics.diarization import DiarizationErrorRate

    return DiarizationErrorRate(collar=collar)(ref, hyp, uem=scored_region(ref, hyp), detailed=True)


def _rttm(path: Path):
    from pyannote.database.util import load_rttm

    return next(iter(load_rttm(str(path)).values()))


def _status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _rss_mb():
    return _status_mb("VmRSS")


def _hwm_mb():
    return _status_mb("VmHWM")


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (Linux), so the peak *during* diarisation is measured."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _mono_diarizer(kind: str):
    from speechpipe.config import PipelineConfig
    from speechpipe.speakers.diarization import build_diarizer

    cfg = PipelineConfig(diarizer=kind)
    cfg.asr.device = "auto"  # CUDA when present
    return build_diarizer(cfg)


def _long_call(seconds: float, kind: str = "neural") -> dict:
    """Child-process body: diarise a ``seconds``-long call, report time and memory."""
    from benchmarks import make_call_wav
    from speechpipe.audio import load_audio
    from speechpipe.records import AudioData

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.wav"
        make_call_wav(seconds, path)
        d = _mono_diarizer(kind)
        audio = load_audio(path)
        d.diarize(AudioData("warm-up", audio.samples[:, : 60 * 16000], 16000))  # imports + model load
        base = _rss_mb()
        _reset_peak()
        t = time.perf_counter()
        ann = d.diarize(audio)
        wall = time.perf_counter() - t
        peak = _hwm_mb()
    return {"seconds": seconds, "wall_s": round(wall, 1), "rtf": round(wall / seconds, 4),
            "speakers": len(ann.labels()), "rss_before_mb": base, "peak_during_mb": peak,
            "growth_mb": round(peak - base, 1) if peak else None, "process_peak_mb": peak_rss_mb(),
            "audio_mb": round(seconds * 16000 * 4 / 2**20, 1)}


def run(quick: bool = False, kind: str = "neural") -> dict:
    from speechpipe.audio import load_audio
    from speechpipe.audio.vad import speech_probabilities
    from speechpipe.speakers.assign import assign_mono as _assign_mono
    from speechpipe.speakers.stereo import StereoConfig, StereoDiarizer

    root = shared_dir()
    if root is None:
        return {"skipped": "shared data not found"}
    out: dict = {"machine": machine()}
    d = _mono_diarizer(kind)
    out["diarizer"] = d.name
    out["device"] = getattr(d, "device", "cpu")

    # -- speed: one sim call, diariser vs its own VAD pass ------------------------------
    call = sim_calls(1, shortest=True)[0] if quick else root / "audio/sim-calls/dev-001.mono.wav"
    audio = load_audio(call)
    d.diarize(load_audio(root / "audio/realconv/rcdev-01.tel.wav"))  # warm-up: model load, librosa init
    from speechpipe.records import Utterance
    t = time.perf_counter()
    speech_probabilities(audio.mono)
    vad_s = time.perf_counter() - t
    t = time.perf_counter()
    d.diarize(audio)
    dia_s = time.perf_counter() - t
    out["speed"] = {"file": call.name, "audio_s": round(audio.duration, 1), "vad_s": round(vad_s, 2),
                    "diarize_s": round(dia_s, 2), "rtf": round(dia_s / audio.duration, 4),
                    "x_vad_time": round(dia_s / vad_s, 1)}
    out["diarization_x_realtime"] = round(audio.duration / dia_s, 1)

    # -- accuracy ---------------------------------------------------------------------
    real = [root / "audio/real/dev00.wav", root / "audio/real/sample.wav",
            root / "audio/realconv/rcdev-01.wav", root / "audio/realconv/rcdev-01.tel.wav"]
    if quick:  # about a minute for the whole quick bench: the short real files, one sim call
        real = real[2:]
    sims = sim_calls(1 if quick else None, shortest=quick)
    from pyannote.metrics.diarization import DiarizationErrorRate

    rows = []
    role_acc = []
    # pooled over files (pyannote's |metric|: total error time / total reference speech), as DER is
    # usually reported; the per-file means below weigh a 14 s clip like a 4-minute call
    pooled = {"real": DiarizationErrorRate(collar=0.25), "sim": DiarizationErrorRate(collar=0.25)}
    for f in real + sims:
        ref = _rttm(f.with_name(f.name.split(".")[0] + ".rttm"))
        a = load_audio(f)
        hyp = d.diarize(a)
        r25, r50 = _der(ref, hyp, 0.25), _der(ref, hyp, 0.5)
        pooled["sim" if f in sims else "real"](ref, hyp, uem=scored_region(ref, hyp))
        tot = r25["total"] or 1.0
        row = {"file": f.name, "der_c025": round(100 * r25["diarization error rate"], 1),
               "der_c05": round(100 * r50["diarization error rate"], 1),
               "miss": round(100 * r25["missed detection"] / tot, 1), "fa": round(100 * r25["false alarm"] / tot, 1),
               "conf": round(100 * r25["confusion"] / tot, 1),
               "speakers": f"{len(ref.labels())}/{len(hyp.labels())}"}
        if f in sims:  # roles from timing alone: utterances = diarised turns without text
            utts = [Utterance("unknown", s.start, s.end, "") for s in hyp.itersegments()]
            res, roles = _assign_mono(hyp, utts, d.name)
            acc = role_time_accuracy(ref, res)
            row["role_acc"] = round(acc, 3)
            row["counsellor_ok"] = role_time_accuracy(ref, res, only="counsellor") > 0.5
            role_acc.append(acc)
        rows.append(row)
    out["der"] = rows

    def mean(key, sel):
        v = [r[key] for r in rows if sel(r)]
        return round(sum(v) / len(v), 2) if v else None

    is_real = lambda r: not r["file"].startswith("dev-")  # noqa: E731
    is_sim = lambda r: r["file"].startswith("dev-")  # noqa: E731
    out["summary"] = {
        "real_der_c025": mean("der_c025", is_real),
        "real_der_c05": mean("der_c05", is_real),
        "sim_der_c025": mean("der_c025", is_sim),
        "sim_der_c05": mean("der_c05", is_sim),
        "real_der_c025_pooled": round(100 * abs(pooled["real"]), 2),
        "sim_der_c025_pooled": round(100 * abs(pooled["sim"]), 2),
        "sim_role_acc": round(sum(role_acc) / len(role_acc), 3) if role_acc else None,
        "sim_counsellor_ok": f"{sum(r.get('counsellor_ok', False) for r in rows)}/{len(sims)}",
        # number of speakers found = reference's (dev-012 and dev-014 have a third voice)
        "speaker_count_ok": f"{sum(a == b for a, b in (r['speakers'].split('/') for r in rows))}/{len(rows)}",
    }

    # -- stereo roles ----------------------------------------------------------------
    st = StereoDiarizer(StereoConfig(split_voices=False))  # roles from the channels alone (no second-voice search)
    stereo = sorted((root / "audio/sim-calls").glob("*.stereo.flac"))[: 1 if quick else None]
    ok = 0
    for f in stereo:
        a = load_audio(f)
        ann = st.diarize(a)
        utts = [Utterance("unknown", s.start, s.end, "", channel=0 if lab == "left" else 1)
                for s, _, lab in ann.itertracks(yield_label=True)]
        _, roles = st.assign(a, utts)
        ok += roles["counsellor"] == "left"  # dev data: left is the counsellor
    out["stereo_roles_ok"] = f"{ok}/{len(stereo)}"

    # -- memory on a long call (child process; full runs only) -------------------------
    if quick:
        return out
    secs = 7200.0
    p = subprocess.run([sys.executable, "-m", "benchmarks.bench_diarization", "--long", str(secs), kind],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        out["long_call"] = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        out["long_call"] = {"error": (p.stderr or "no output").strip().splitlines()[-1][:300]}
    return out


def _print(res: dict) -> None:
    from rich.console import Console
    from rich.table import Column, Table

    con = Console()
    if "skipped" in res:
        con.print(res["skipped"])
        return
    s = res["speed"]
    con.print(f"speed on {s['file']} ({s['audio_s']} s): diarise {s['diarize_s']} s = RTF {s['rtf']}, "
              f"{s['x_vad_time']}× the Silero VAD pass ({s['vad_s']} s)")
    t = Table(Column("file", overflow="fold"), "DER c0.25", "DER c0.5", "miss", "FA", "conf", "spk ref/hyp", "role acc",
              title="DER % (pyannote.metrics)")
    for r in res["der"]:
        t.add_row(r["file"], str(r["der_c025"]), str(r["der_c05"]), str(r["miss"]), str(r["fa"]), str(r["conf"]),
                  r["speakers"], str(r.get("role_acc", "")))
    con.print(t)
    con.print(res["summary"], f"stereo roles right: {res['stereo_roles_ok']}", res.get("long_call", ""))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--long":
        print(json.dumps(_long_call(float(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "neural")))
        sys.exit(0)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    kind = sys.argv[sys.argv.index("--diarizer") + 1] if "--diarizer" in sys.argv else "neural"
    result = run(quick="--quick" in sys.argv, kind=kind)
    _print(result)
