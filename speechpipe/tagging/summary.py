"""Call-level measures of the annotation guide from tagged utterances (structure, feelings before case, …).

Two implementations kept side by side: :func:`summarise_reference` (plain Python over
``Utterance`` objects) and :func:`summarise_batch` / :func:`call_measures` (array
reductions over a :class:`~speechpipe.tagging.features.Batch`); tests check that they agree.
"""

from __future__ import annotations

import numpy as np

from speechpipe.records import ACTS
from speechpipe.tagging.features import SPK, Batch
from speechpipe.tagging.phases import PHASES
from speechpipe.tagging.text import normalise_tokens
from speechpipe.vocabulary import EMPATHIC

NA = len(ACTS)
BC = ACTS.index("backchannel")
WM = ACTS.index("what_more")
SILENCE_S = 2.0  # a gap this long between turns counts as a silence


def _r(x, nd=3):
    return None if x is None else round(float(x), nd)


def measure_confidence(structure: str, p_funnel: float | None, c_emp: float | None, c_info: float | None,
                       c_wm: float | None) -> dict:
    """Confidence of the call-level measures.

    ``structure``: the model's probability of the decoded structure (forward algorithm over all phase
    paths, :func:`~speechpipe.tagging.phases.funnel_probability`). ``feelings_before_case``: the lower
    of the calibrated confidences of the two acts that decide it (the counsellor's first empathic act,
    the first information; one of them when the other is absent). ``what_more_position``: the
    confidence of the first what-more act. None where the measure is None.
    """
    st = None if p_funnel is None else _r(p_funnel if structure == "funnel" else 1.0 - p_funnel)
    fbc = None if c_emp is None else _r(c_emp if c_info is None else min(c_emp, c_info))
    return {"structure": st, "feelings_before_case": fbc, "what_more_position": _r(c_wm)}


def summarise_reference(utterances, p_funnel: float | None = None) -> dict:
    """Call measures of ``annotation-guide.md`` from tagged utterances (plain Python); with ``p_funnel``
    (the tagger's), a ``confidence`` entry from it and the utterances' ``act_confidence``."""
    n = len(utterances)
    phases = [PHASES.index(u.phase) for u in utterances if u.phase in PHASES]
    reo = sum(1 for a, c in zip(phases, phases[1:]) if a >= 2 and c == 1)
    timed = n > 0 and all(u.start is not None and u.end is not None for u in utterances)
    spk = [u.speaker if u.speaker in SPK else "unknown" for u in utterances]
    emp = [i for i, u in enumerate(utterances) if spk[i] == "counsellor" and any(a in EMPATHIC for a in u.acts)]
    info = [i for i, u in enumerate(utterances) if spk[i] == "counsellor" and "information" in u.acts]
    fbc = None if not emp else (not info or emp[0] <= info[0])
    emo = [i for i, u in enumerate(utterances) if spk[i] != "counsellor" and "emotion" in u.acts]
    lat = None
    if timed and emo:
        nxt = [i for i in emp if i > emo[0]]
        if nxt:
            lat = utterances[nxt[0]].start - utterances[emo[0]].start
    wm = [i for i, u in enumerate(utterances) if "what_more" in u.acts]
    t0 = min(u.start for u in utterances) if timed else None
    t1 = max(u.end for u in utterances) if timed else None
    pos = None
    if wm:
        if timed:
            pos = (utterances[wm[0]].start - t0) / (t1 - t0) if t1 > t0 else 0.0
        else:
            pos = wm[0] / (n - 1) if n > 1 else 0.0
    present = [s for s in SPK if s in spk]
    if timed:
        amount = {s: sum(u.end - u.start for u, x in zip(utterances, spk) if x == s) for s in present}
    else:
        amount = {
            s: sum(len(normalise_tokens(u.text or "")) for u, x in zip(utterances, spk) if x == s) for s in present
        }
    tot = sum(amount.values())
    bc = {s: sum(1 for u, x in zip(utterances, spk) if x == s and "backchannel" in u.acts) for s in present}
    out = {
        "structure": "hourglass" if reo else "funnel",
        "reopenings": reo,
        "feelings_before_case": fbc,
        "feelings_latency_s": _r(lat),
        "what_more_position": _r(pos),
        "talk_share": {s: _r(amount[s] / tot) if tot > 0 else None for s in present},
        "talk_share_unit": "time" if timed else "words",
        "holds": sum(1 for u in utterances if "hold" in u.acts),
        "n_utterances": n,
    }
    if timed:
        minutes = (t1 - t0) / 60
        out["backchannel_rate_per_min"] = {s: _r(bc[s] / minutes) if minutes > 0 else None for s in present}
        gaps = [utterances[i].start - max(u.end for u in utterances[:i]) for i in range(1, n)]
        sil = [g for g in gaps if g >= SILENCE_S]
        ov = [min(utterances[i - 1].end, utterances[i].end) - utterances[i].start for i in range(1, n)
              if spk[i] != spk[i - 1] and utterances[i].start < utterances[i - 1].end]
        out.update(silences=len(sil), silence_s=_r(sum(sil)), overlaps=len(ov), overlap_s=_r(sum(ov)))
    else:
        out["backchannel_rate_per_100_utt"] = {s: _r(100 * bc[s] / n) for s in present}
    if p_funnel is not None:
        def conf(i, acts):
            return None if i is None else max(utterances[i].act_confidence.get(a, 0.0) for a in acts)

        out["confidence"] = measure_confidence(out["structure"], p_funnel, conf(emp[0] if emp else None, EMPATHIC),
                                               conf(info[0] if info else None, ("information",)),
                                               conf(wm[0] if wm else None, ("what_more",)))
    return out


BIG = np.iinfo(np.int64).max  # "no such row" in :func:`call_measures`


def call_measures(b: Batch, acts: np.ndarray, phase: np.ndarray, n_tokens_text: np.ndarray) -> dict:
    """The per-call quantities behind the summaries, as arrays over the ``B`` calls of a batch.

    Row numbers (``emp``, ``info``, ``emo``, ``nxt``, ``wm``: the first counsellor empathic act,
    counsellor information, caller emotion, empathic act after that emotion, what-more) are
    batch rows, :data:`BIG` when absent. ``amount_t``/``amount_w``/``present``/``bc`` are
    ``(B, 4)`` over :data:`SPK`. :func:`summarise_batch` turns them into dicts; columnar
    callers (:mod:`speechpipe.tagging.table`) use them as they are.
    """
    B = len(b.offsets) - 1
    n = b.n
    lens = np.diff(b.offsets)
    calls = b.call_index()
    idx = np.arange(n)
    big = BIG
    ph = phase.astype(np.int64)
    first = np.zeros(n, bool)
    first[b.offsets[:-1][lens > 0]] = True
    reopen = ~first & (np.roll(ph, 1) >= 2) & (ph == 1)
    reo = np.bincount(calls[reopen], minlength=B)

    def first_row(mask, after=None):
        f = np.full(B, big, dtype=np.int64)
        m = mask if after is None else mask & (idx > after[calls])
        np.minimum.at(f, calls[m], idx[m])
        return f

    spk = b.spk.astype(np.int64)
    coun = spk == 0
    emp_mask = coun & acts[:, [ACTS.index(a) for a in EMPATHIC]].any(axis=1)
    emp = first_row(emp_mask)
    info = first_row(coun & acts[:, ACTS.index("information")])
    emo = first_row(~coun & acts[:, ACTS.index("emotion")])
    emo_safe = np.where(emo == big, big - 1, emo)
    nxt = first_row(emp_mask, after=emo_safe)
    wm = first_row(acts[:, WM])
    finite = np.isfinite(b.start) & np.isfinite(b.end)
    timed = (np.bincount(calls, weights=finite, minlength=B) == lens) & (lens > 0)
    st = np.where(finite, b.start, np.inf)
    en = np.where(finite, b.end, -np.inf)
    t0 = np.full(B, np.inf)
    t1 = np.full(B, -np.inf)
    nz = lens > 0
    t0[nz] = np.minimum.reduceat(st, b.offsets[:-1][nz]) if n else t0[nz]
    t1[nz] = np.maximum.reduceat(en, b.offsets[:-1][nz]) if n else t1[nz]
    dur = np.where(finite, b.end - b.start, 0.0)
    key = calls * 4 + spk
    amount_t = np.bincount(key, weights=dur, minlength=4 * B).reshape(B, 4)
    amount_w = np.bincount(key, weights=n_tokens_text[b.text_code], minlength=4 * B).reshape(B, 4)
    present = np.bincount(key, minlength=4 * B).reshape(B, 4) > 0
    bc = np.bincount(key, weights=acts[:, BC], minlength=4 * B).reshape(B, 4)
    holds = np.bincount(calls, weights=acts[:, ACTS.index("hold")], minlength=B)
    # silences and overlaps (rows in order within a call)
    run_end = _segmented_prev_max(en, b.offsets)
    gap = st - run_end
    sil = ~first & (gap >= SILENCE_S)
    prev_end = np.roll(en, 1)
    ovm = ~first & (np.roll(spk, 1) != spk) & (st < prev_end)
    ovs = np.minimum(prev_end, en) - st
    sil_n = np.bincount(calls[sil], minlength=B)
    sil_s = np.bincount(calls[sil], weights=gap[sil], minlength=B)
    ov_n = np.bincount(calls[ovm], minlength=B)
    ov_s = np.bincount(calls[ovm], weights=ovs[ovm], minlength=B)
    return dict(lens=lens, reo=reo, emp=emp, info=info, emo=emo, nxt=nxt, wm=wm, timed=timed, t0=t0, t1=t1,
                amount_t=amount_t, amount_w=amount_w, present=present, bc=bc, holds=holds,
                sil_n=sil_n, sil_s=sil_s, ov_n=ov_n, ov_s=ov_s)


def summarise_batch(b: Batch, acts: np.ndarray, phase: np.ndarray, n_tokens_text: np.ndarray,
                    conf: np.ndarray | None = None, p_funnel: np.ndarray | None = None) -> list[dict]:
    """:func:`summarise_reference` for every call of a batch, with array reductions; ``conf`` (aligned with
    ``np.nonzero(acts)``) and ``p_funnel`` (per call) add the ``confidence`` entry."""
    m = call_measures(b, acts, phase, n_tokens_text)
    row_conf = None
    if conf is not None and p_funnel is not None:
        rr, cc = np.nonzero(acts)
        row_conf = {}
        for key, names in (("emp", EMPATHIC), ("info", ("information",)), ("wm", ("what_more",))):
            x = np.zeros(b.n + 1)  # row n = "no such row"
            sel = np.isin(cc, [ACTS.index(a) for a in names])
            np.maximum.at(x, rr[sel], np.round(conf[sel], 3))
            at = m[key]
            row_conf[key] = x[np.where(at == BIG, b.n, at)].tolist()
        p_funnel = p_funnel.tolist()
    B, big = len(b.offsets) - 1, BIG
    lens, reo, emp, info, emo, nxt, wm, timed, t0, t1 = (
        m[k] for k in ("lens", "reo", "emp", "info", "emo", "nxt", "wm", "timed", "t0", "t1")
    )
    amount_t, amount_w, present, bc, holds = m["amount_t"], m["amount_w"], m["present"], m["bc"], m["holds"]
    sil_n, sil_s, ov_n, ov_s = m["sil_n"], m["sil_s"], m["ov_n"], m["ov_s"]

    # Python lists from here on: per-call dict building on numpy scalars is slow.
    starts = b.start.tolist()
    lens, timed, emp, info, emo, nxt, wm = (x.tolist() for x in (lens, timed, emp, info, emo, nxt, wm))
    t0, t1, reo, holds = t0.tolist(), t1.tolist(), reo.tolist(), holds.tolist()
    amount_t, amount_w, present, bc = amount_t.tolist(), amount_w.tolist(), present.tolist(), bc.tolist()
    sil_n, sil_s, ov_n, ov_s = sil_n.tolist(), sil_s.tolist(), ov_n.tolist(), ov_s.tolist()
    offs = b.offsets.tolist()
    out = []
    for c in range(B):
        nc = int(lens[c])
        tm = bool(timed[c])
        e = int(emp[c])
        fbc = None if e == big else (bool(info[c] == big) or e <= int(info[c]))
        lat = None
        if tm and emo[c] != big and nxt[c] != big:
            lat = starts[nxt[c]] - starts[emo[c]]
        pos = None
        if wm[c] != big:
            k = int(wm[c])
            if tm:
                pos = (starts[k] - t0[c]) / (t1[c] - t0[c]) if t1[c] > t0[c] else 0.0
            else:
                pos = (k - offs[c]) / (nc - 1) if nc > 1 else 0.0
        amt = amount_t[c] if tm else amount_w[c]
        tot = sum(float(amt[s]) for s in range(4) if present[c][s])
        d = {
            "structure": "hourglass" if reo[c] else "funnel",
            "reopenings": int(reo[c]),
            "feelings_before_case": fbc,
            "feelings_latency_s": _r(lat),
            "what_more_position": _r(pos),
            "talk_share": {SPK[s]: _r(amt[s] / tot) if tot > 0 else None for s in range(4) if present[c][s]},
            "talk_share_unit": "time" if tm else "words",
            "holds": int(holds[c]),
            "n_utterances": nc,
        }
        if tm:
            minutes = (t1[c] - t0[c]) / 60
            d["backchannel_rate_per_min"] = {SPK[s]: _r(bc[c][s] / minutes) if minutes > 0 else None
                                             for s in range(4) if present[c][s]}
            d.update(silences=int(sil_n[c]), silence_s=_r(sil_s[c]), overlaps=int(ov_n[c]), overlap_s=_r(ov_s[c]))
        else:
            d["backchannel_rate_per_100_utt"] = {SPK[s]: _r(100 * bc[c][s] / nc) for s in range(4) if present[c][s]}
        if row_conf is not None:
            ce, ci, cw = (row_conf[k][c] for k in ("emp", "info", "wm"))
            d["confidence"] = measure_confidence(d["structure"], p_funnel[c], None if e == big else ce,
                                                 None if info[c] == big else ci, None if wm[c] == big else cw)
        out.append(d)
    return out


def _segmented_prev_max(en: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """For each row, the largest ``end`` of the earlier rows of its call (-inf for a first row)."""
    import pandas as pd

    n = len(en)
    if n == 0:
        return en
    lens = np.diff(offsets)
    calls = np.repeat(np.arange(len(lens)), lens)
    cm = pd.Series(en).groupby(calls).cummax().to_numpy()  # segmented running max, in C
    res = np.empty(n)
    res[0] = -np.inf
    res[1:] = cm[:-1]
    res[offsets[:-1][lens > 0]] = -np.inf
    return res
