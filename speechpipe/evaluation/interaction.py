"""Interaction measures from the output files against the same measures from reference turns.

The reference side runs :func:`~speechpipe.analytics.interaction.interaction_summary` on the
reference speaker turns (RTTM with role labels) and reference utterances (``*.ref.json``);
the output side reads ``summary.interaction`` from the call JSON the user gets. Run it on a
``speechpipe run``/``batch`` output directory:

``python -m speechpipe.evaluation.interaction OUT_DIR REF_DIR [--json]``

Examples
--------
>>> ref = {"response_latency_s": {"caller": {"median": 0.5}}, "talk_share": {"caller": 0.6},
...        "talk_time_s": {"caller": 60.0}, "dead_air": {"count": 0}}
>>> out = {"response_latency_s": {"caller": {"median": 0.7}}, "talk_share": {"caller": 0.58},
...        "talk_time_s": {"caller": 57.0}, "dead_air": {"count": 1}}
>>> d = compare_measures(out, ref)
>>> d["latency_median_abs_diff_s"], d["talk_share_abs_diff"], d["dead_air_count"]
({'caller': 0.2}, {'caller': 0.02}, {'output': 1, 'reference': 0})
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from speechpipe.analytics.interaction import interaction_summary
from speechpipe.records import Turn, Utterance

LATENCY_TARGET_S = 0.3
TALK_SHARE_TARGET = 0.03


def read_rttm_turns(path: str | Path) -> list[Turn]:
    """``SPEAKER`` lines of an RTTM file whose speaker names are roles → turns."""
    turns = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        f = line.split()
        if len(f) >= 8 and f[0] == "SPEAKER":
            start, dur = float(f[3]), float(f[4])
            turns.append(Turn(f[7], start, start + dur))
    return turns


def read_ref_utterances(path: str | Path) -> tuple[list[Utterance], dict[str, Any]]:
    """Reference utterances (speaker, times, text, acts) and the file's other fields."""
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    utts = [Utterance(u["speaker"], u.get("start"), u.get("end"), u.get("text", ""), acts=list(u.get("acts") or []),
                      phase=u.get("phase")) for u in d.get("utterances", [])]
    return utts, d


def reference_measures(rttm: str | Path, ref_json: str | Path | None = None, duration: float | None = None) -> dict:
    """``summary.interaction`` computed from the reference turns (and utterances, when given)."""
    turns = read_rttm_turns(rttm)
    utts = read_ref_utterances(ref_json)[0] if ref_json else []
    return interaction_summary(turns, utts, duration=duration, per_turn=False)


def _abs(a, b, nd=3):
    return None if a is None or b is None else round(abs(a - b), nd)


def compare_measures(out: dict, ref: dict) -> dict[str, Any]:
    """Per-party differences between output and reference interaction measures."""
    parties = sorted(set(ref.get("talk_share") or {}) | set(out.get("talk_share") or {}))
    lat_o, lat_r = out.get("response_latency_s") or {}, ref.get("response_latency_s") or {}
    res: dict[str, Any] = {
        "latency_median_abs_diff_s": {p: _abs((lat_o.get(p) or {}).get("median"), (lat_r.get(p) or {}).get("median"))
                                      for p in parties},
        "talk_share_abs_diff": {p: _abs((out.get("talk_share") or {}).get(p), (ref.get("talk_share") or {}).get(p))
                                for p in parties},
        "talk_time_diff_s": {p: None if (out.get("talk_time_s") or {}).get(p) is None
                             or (ref.get("talk_time_s") or {}).get(p) is None
                             else round(out["talk_time_s"][p] - ref["talk_time_s"][p], 2) for p in parties},
        "dead_air_count": {"output": (out.get("dead_air") or {}).get("count"),
                           "reference": (ref.get("dead_air") or {}).get("count")},
    }
    return res


def evaluate_dir(out_dir: str | Path, ref_dir: str | Path) -> dict[str, Any]:
    """Compare every ``OUT_DIR/<call>.json`` that has ``REF_DIR/<stem>.rttm`` (stem: call id up to the first dot)."""
    out_dir, ref_dir = Path(out_dir), Path(ref_dir)
    calls = {}
    for js in sorted(out_dir.glob("*.json")):
        try:
            d = json.loads(js.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(d, dict) or "utterances" not in d:
            continue
        stem = str(d.get("call_id", js.stem)).split(".")[0]
        rttm = ref_dir / f"{stem}.rttm"
        if not rttm.exists():
            continue
        ref_json = ref_dir / f"{stem}.ref.json"
        out_m = (d.get("summary") or {}).get("interaction") or {}
        dur = (d.get("audio") or {}).get("duration")
        ref_m = reference_measures(rttm, ref_json if ref_json.exists() else None, duration=dur)
        calls[d.get("call_id", js.stem)] = {"turn_source": out_m.get("turn_source"), **compare_measures(out_m, ref_m)}
    return {"calls": calls, "pooled": pooled(calls)}


def pooled(calls: dict[str, dict]) -> dict[str, Any]:
    """Mean absolute differences over calls and the share of calls within the targets."""
    out: dict[str, Any] = {"n_calls": len(calls)}
    for key, target in (("latency_median_abs_diff_s", LATENCY_TARGET_S), ("talk_share_abs_diff", TALK_SHARE_TARGET)):
        vals = [v for c in calls.values() for v in (c[key] or {}).values() if v is not None]
        out[key] = {"mean": round(sum(vals) / len(vals), 3) if vals else None,
                    "max": max(vals) if vals else None,
                    "within_target": f"{sum(v <= target for v in vals)}/{len(vals)}", "target": target}
    return out


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    if len(args) != 2:
        print("usage: python -m speechpipe.evaluation.interaction OUT_DIR REF_DIR [--json]", file=sys.stderr)
        return 1
    res = evaluate_dir(*args)
    if as_json:
        print(json.dumps(res, ensure_ascii=False))
    else:
        for cid, c in res["calls"].items():
            print(cid, c["turn_source"], "latency", c["latency_median_abs_diff_s"], "share", c["talk_share_abs_diff"],
                  "dead air", c["dead_air_count"])
        print("pooled", json.dumps(res["pooled"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
