"""The tagger end to end: acts and phases in the pipeline's output files against the sim calls' references.

Reads the call JSONs that ``speechpipe batch`` (or ``benchmarks.quality_e2e``) wrote for the simulated calls
and scores them against ``../shared/audio/sim-calls/*.ref.json`` by time overlap: an output utterance counts for
a reference utterance when their overlap is at least half the shorter of the two (the pipeline cuts speech into
more, shorter utterances than the reference); the phase is the most-overlapping output utterance's. Nothing here
is an oracle: ASR text, diarised speakers, the pipeline's segmentation and acoustic flags are what the tagger saw.

With ``--heldout`` the output utterances are re-tagged by models fitted without the scored calls (the gold calls
``dev-017`` onwards), because the shipped tagger was trained on ``dev-001…016`` too; ``--settings`` names extra
``fit`` options as JSON (to compare a candidate against the shipped settings in one run).

``python -m benchmarks.tagger_e2e OUT_DIR [--shared ../shared] [--heldout] [--settings '{"C": 0.3}']``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def score(calls: list[tuple[list, dict]]) -> dict:
    """``calls``: (output utterances as dicts with start/end/acts/phase, reference JSON) pairs."""
    tp = fp = fn = ph = phn = 0
    for us, ref in calls:
        for r in ref["utterances"]:
            ov = np.array([max(0.0, min(u["end"], r["end"]) - max(u["start"], r["start"])) for u in us])
            short = np.array([min(u["end"] - u["start"], r["end"] - r["start"]) for u in us])
            got = set().union(*[set(u["acts"]) for u, o, m in zip(us, ov, short) if m > 0 and o >= 0.5 * m])
            want = set(r["acts"])
            tp, fp, fn = tp + len(want & got), fp + len(got - want), fn + len(want - got)
            if r.get("phase") and len(ov) and ov.max() > 0:
                phn += 1
                ph += us[int(ov.argmax())]["phase"] == r["phase"]
    return {"act_micro_f1": round(2 * tp / max(1, 2 * tp + fp + fn), 3), "phase_accuracy": round(ph / max(1, phn), 3),
            "tp": tp, "fp": fp, "fn": fn, "calls": len(calls)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--heldout", action="store_true")
    ap.add_argument("--settings", default="{}")
    a = ap.parse_args(argv)
    pairs = []
    for f in sorted(a.out.glob("dev-*.json")):
        d = json.loads(f.read_text(encoding="utf-8"))
        ref = a.shared / "audio" / "sim-calls" / f"{d['call_id'].split('.')[0]}.ref.json"
        if ref.exists():
            pairs.append((d, json.loads(ref.read_text(encoding="utf-8"))))
    res = {"as_written": score([(d["utterances"], r) for d, r in pairs])
           | {"structure_right": sum(d["summary"].get("structure") == r.get("structure") for d, r in pairs)}}
    if a.heldout:
        from speechpipe.records import Utterance
        from speechpipe.tagging import train as T
        from speechpipe.tagging.guide import guide_path, load_guide_examples

        ids = {r["call_id"] for _, r in pairs}
        gold = [c for c in T.load_gold_dir(a.shared / "tagger-dev") if c["call_id"] not in ids]
        kw = dict(T.V3, guide=load_guide_examples(guide_path(a.shared / "tagger-dev")), **json.loads(a.settings))
        t = T.fit(gold, **kw)
        out = []
        for d, r in pairs:
            us = [Utterance(u["speaker"], u["start"], u["end"], u["text"], intonation=u.get("intonation"),
                            prosody=u.get("prosody") or {}) for u in d["utterances"]]
            s = t.tag_call(us)
            out.append(([{"start": u.start, "end": u.end, "acts": u.acts, "phase": u.phase} for u in us], r,
                        s["structure"] == r.get("structure")))
        res["heldout"] = score([(u, r) for u, r, _ in out]) | {"structure_right": sum(x for *_, x in out)}
    for k, v in res.items():
        print(f"{k:<11} {v}")
    return res


if __name__ == "__main__":
    main()
