"""Cross-validation of the tagger: leave-calls-out scores, calibration of act confidences, reliability, excerpts.

:func:`cross_validate` fits the tagger without each held-out group of calls and tags
the held-out calls (clean and ASR-like text) and every held-out utterance alone (an
excerpt with no context). Its out-of-fold act logits give the per-act Platt
calibration (:func:`platt`) that the shipped model carries, and the reliability of
those confidences is measured with calibrators fitted without the call being scored
(:func:`reliability`), so the reported calibration is itself out of fold.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from speechpipe.records import ACTS
from speechpipe.tagging.features import encode_calls
from speechpipe.tagging.tagger import NA, role_mask
from speechpipe.tagging.train import Utterance, asr_copy, fit, load_gold_dir, save, score, tag_gold

BINS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
WRITER_GROUPS = {"001-016": range(1, 17), "017-028": range(17, 29), "029-040": range(29, 41), "041-052": range(41, 53)}


def _gold_matrix(calls: list[dict]) -> np.ndarray:
    Y = np.zeros((sum(len(c["utterances"]) for c in calls), NA), dtype=bool)
    r = 0
    for c in calls:
        for acts in c["gold_acts"]:
            Y[r, [ACTS.index(a) for a in acts]] = True
            r += 1
    return Y


def _logits(tagger, calls: list[dict]):
    """Act logits, predictions, speakers, 'has words' of every utterance of ``calls`` (numpy path), and a
    function that decides the acts again at other thresholds (same rules)."""
    b = encode_calls([c["utterances"] for c in calls])
    out = tagger.tag_batch(b, logits=True)
    return out["act_logits"], out["acts"], b.spk.astype(np.int64), out["n_tokens"][b.text_code] > 0, out["decide"]


GRID = np.round(np.arange(0.2, 0.701, 0.05), 2)


def choose_thresholds(L: np.ndarray, Y: np.ndarray, S: np.ndarray, W: np.ndarray) -> dict:
    """Per act, the probability in :data:`GRID` whose decisions on out-of-fold logits have the best F1 (rows whose
    speaker may carry the act, with words; ties to the value nearest 0.5); acts with no positive keep 0.5."""
    ok = role_mask()[S] & W[:, None]
    out = {}
    for k, a in enumerate(ACTS):
        y, x = Y[ok[:, k], k], L[ok[:, k], k]
        if y.sum() == 0:
            out[a] = 0.5
            continue
        f1 = [
            2 * (y & (x > np.log(p / (1 - p)))).sum() / max(1, y.sum() + (x > np.log(p / (1 - p))).sum()) for p in GRID
        ]
        best = max(f1)
        out[a] = float(min((p for p, f in zip(GRID, f1) if f >= best - 1e-12), key=lambda p: (abs(p - 0.5), p)))
    return out


def _f1s(tp, fp, fn) -> dict:
    per = {
        a: round(float(2 * tp[k] / max(1, 2 * tp[k] + fp[k] + fn[k])), 3)
        for k, a in enumerate(ACTS)
        if tp[k] + fn[k] > 0
    }
    T, F, N = tp.sum(), fp.sum(), fn.sum()
    return {"act_micro_f1": round(float(2 * T / max(1, 2 * T + F + N)), 4),
            "act_macro_f1": round(float(np.mean(list(per.values()))), 4), "per_act_f1": per}


def tuned_scores(blocks: list[dict]) -> dict:
    """Act scores with per-act thresholds chosen out of fold: each held-out group is decided with thresholds chosen
    on the other groups' out-of-fold logits (so no group's own labels choose its thresholds)."""
    res = {}
    for kind in ("clean", "asr_like", "single"):
        tp, fp, fn = np.zeros(NA), np.zeros(NA), np.zeros(NA)
        exact = n = 0
        for blk in (x for x in blocks if x["kind"] == kind):
            others = [x for x in blocks if x["g"] != blk["g"] and x["kind"] != "single"]
            thr = choose_thresholds(
                *(
                    np.vstack([x[k] for x in others]) if k in "LY" else np.concatenate([x[k] for x in others])
                    for k in "LYSW"
                )
            )
            p = np.array([thr[a] for a in ACTS])
            P = blk["decide"](np.log(p / (1 - p)))
            Y = blk["Y"]
            tp += (P & Y).sum(axis=0)
            fp += (P & ~Y).sum(axis=0)
            fn += (~P & Y).sum(axis=0)
            exact += int((P == Y).all(axis=1).sum())
            n += len(Y)
        if n:
            res[kind] = {**_f1s(tp, fp, fn), "exact_set_accuracy": round(exact / n, 4)}
    full = [x for x in blocks if x["kind"] != "single"]
    res["thresholds"] = choose_thresholds(
        *(np.vstack([x[k] for x in full]) if k in "LY" else np.concatenate([x[k] for x in full]) for k in "LYSW")
    )
    return res


def cross_validate(calls: list[dict], folds: int | None = None, groups: list[list[int]] | None = None,
                   excerpts: bool = True, **fit_kw) -> dict:
    """Leave-calls-out cross-validation (default: leave one call out) on clean and ASR-like text, plus
    every held-out utterance tagged alone (``single``: exact act-set accuracy and micro-F1), the
    out-of-fold calibration (per-act Platt parameters fitted on all out-of-fold logits, ``calibration``)
    and its reliability (``reliability``), and the reliability of the structure confidence."""

    if groups is None:
        k = folds or len(calls)
        groups = [list(range(i, len(calls), k)) for i in range(k)]
    pred = {"clean": [], "asr_like": []}
    gold = {"clean": [], "asr_like": []}
    oof = {"L": [], "Y": [], "S": [], "W": [], "P": [], "G": []}
    single_ok = single_n = 0
    s_tp = s_fp = s_fn = 0
    st_conf = []
    per_group = []
    blocks: list[dict] = []
    t0 = time.process_time()
    for g, held in enumerate(groups):
        hs = set(held)
        train = [c for i, c in enumerate(calls) if i not in hs]
        test = [calls[i] for i in held]
        t = fit(train, **fit_kw)
        test_asr = [asr_copy(c, 1000 + i) for i, c in zip(held, test)]
        for name, tc in (("clean", test), ("asr_like", test_asr)):
            pc = tag_gold(t, tc)
            pred[name] += pc
            gold[name] += tc
            for p, c in zip(pc, tc):
                conf = p["summary"].get("confidence", {}).get("structure")
                if c.get("structure") and conf is not None:
                    st_conf.append((conf, p["summary"]["structure"] == c["structure"]))
            L, A, S, W, decide = _logits(t, tc)
            oof["L"].append(L), oof["Y"].append(_gold_matrix(tc)), oof["S"].append(S), oof["W"].append(W)
            oof["P"].append(A), oof["G"].append(np.full(len(L), g))
            blocks.append({"kind": name, "g": g, "L": L, "Y": oof["Y"][-1], "S": S, "W": W, "decide": decide})
        per_group.append({name: score(pred[name][-len(held):], gold[name][-len(held):])
                          for name in ("clean", "asr_like")})
        if excerpts:  # every held-out utterance alone, clean text
            singles = [[Utterance(u.speaker, None, None, u.text)] for c in test for u in c["utterances"]]
            t.tag_calls(singles)
            sc = [
                {"utterances": s, "gold_acts": [a]} for s, a in zip(singles, (a for c in test for a in c["gold_acts"]))
            ]
            L, _, S, W, decide = _logits(t, sc)
            blocks.append({"kind": "single", "g": g, "L": L, "Y": _gold_matrix(sc), "S": S, "W": W, "decide": decide})
            for (u,), ga in zip(singles, (a for c in test for a in c["gold_acts"])):
                pa, ga = set(u.acts), set(ga)
                single_ok += pa == ga
                single_n += 1
                s_tp, s_fp, s_fn = s_tp + len(pa & ga), s_fp + len(pa - ga), s_fn + len(ga - pa)
    res = {"folds": len(groups), "clean": score(pred["clean"], gold["clean"]),
           "asr_like": score(pred["asr_like"], gold["asr_like"]), "cpu_s": round(time.process_time() - t0, 1)}
    if len(groups) <= 8:  # per held-out group (e.g. the writer groups)
        res["per_group"] = [
            {
                n: {k: g[n][k] for k in ("act_micro_f1", "act_macro_f1", "phase_accuracy", "structure_right", "calls")}
                for n in g
            }
            for g in per_group
        ]
    if excerpts and single_n:
        res["single"] = {"utterances": single_n, "exact_set_accuracy": round(single_ok / single_n, 4),
                         "act_micro_f1": round(2 * s_tp / max(1, 2 * s_tp + s_fp + s_fn), 4)}
    L, Y, S, W, P, G = (np.concatenate(oof[k]) if k in "SWG" else np.vstack(oof[k]) for k in "LYSWPG")
    res["calibration"] = platt(L, Y, S, W)
    res["tuned_thresholds"] = tuned_scores(blocks)
    res["reliability"] = reliability(L, Y, S, W, P, G)
    res["structure_reliability"] = _table([c for c, _ in st_conf], [ok for _, ok in st_conf])
    return res


def platt(L: np.ndarray, Y: np.ndarray, S: np.ndarray, W: np.ndarray) -> dict:
    """Per act ``[a, b]`` with P(act) = sigmoid(a · logit + b), fitted (1-D logistic regression) on the rows whose
    speaker may carry the act and that have words; acts with too few examples keep ``[1, 0]``."""
    from sklearn.linear_model import LogisticRegression

    ok = role_mask()[S] & W[:, None]
    out = {}
    for k, a in enumerate(ACTS):
        y, x = Y[ok[:, k], k], L[ok[:, k], k]
        if y.sum() < 3 or (~y).sum() < 3:
            out[a] = [1.0, 0.0]
            continue
        m = LogisticRegression(C=100.0).fit(x[:, None], y)
        out[a] = [round(float(m.coef_[0, 0]), 5), round(float(m.intercept_[0]), 5)]
    return out


def _table(conf, correct) -> dict:
    conf, correct = np.asarray(conf, dtype=float), np.asarray(correct, dtype=bool)
    rows = []
    ece = 0.0
    for lo, hi in zip(BINS, BINS[1:]):
        m = (conf >= lo) & ((conf < hi) if hi < 1 else (conf <= hi))
        if m.any():
            rows.append(
                {
                    "bin": f"{lo:.1f}-{hi:.1f}",
                    "n": int(m.sum()),
                    "mean_confidence": round(float(conf[m].mean()), 3),
                    "accuracy": round(float(correct[m].mean()), 3),
                }
            )
            ece += m.sum() * abs(conf[m].mean() - correct[m].mean())
    return {"n": int(len(conf)), "ece": round(float(ece / max(1, len(conf))), 4), "bins": rows}


def reliability(L, Y, S, W, P, G) -> dict:
    """Reliability of the confidences of predicted acts (is a predicted act with confidence c right a share c of
    the time?), with each group's calibration fitted on the other groups only (out of fold)."""
    conf, correct = [], []
    for g in np.unique(G):
        tr, te = G != g, G == g
        cal = platt(L[tr], Y[tr], S[tr], W[tr])
        a = np.array([cal[x][0] for x in ACTS])
        b = np.array([cal[x][1] for x in ACTS])
        rr, cc = np.nonzero(P[te])
        Lg, Yg = L[te], Y[te]
        conf.append(1 / (1 + np.exp(-(a[cc] * Lg[rr, cc] + b[cc]))))
        correct.append(Yg[rr, cc])
    return _table(np.concatenate(conf) if conf else [], np.concatenate(correct) if correct else [])


def writer_groups(calls: list[dict]) -> list[list[int]]:
    """Call indices of the four writer groups of ``tagger-dev`` (by the number in ``dev-NNN``)."""
    num = [int(str(c["call_id"]).split("-")[-1]) for c in calls]
    return [[i for i, n in enumerate(num) if n in r] for r in WRITER_GROUPS.values()]


def train_and_save(gold_dir, stem: Path | None = None, cv: bool = True, folds: int | None = None,
                   tune_from_cv: bool = False, by_writer: bool = False, **fit_kw) -> dict:
    """Cross-validate (leave one call out unless ``folds``; by writer group with ``by_writer``), fit on all calls
    with the out-of-fold calibration of the act confidences (and, with ``tune_from_cv``, the per-act thresholds
    chosen on the out-of-fold logits), and write the model; returns the paths and the CV results."""
    import time

    t0 = time.process_time()
    calls = load_gold_dir(gold_dir)
    if fit_kw.get("guide_copies") and not fit_kw.get("guide"):  # the guide next to the gold calls, read once
        from speechpipe.tagging.guide import guide_path, load_guide_examples

        fit_kw["guide"] = load_guide_examples(guide_path(gold_dir))
    groups = writer_groups(calls) if by_writer else None  # CV by writer group (4 folds) instead of by call
    metrics = cross_validate(calls, folds=folds, groups=groups, **fit_kw) if cv else None
    t1 = time.process_time()
    cal = metrics.pop("calibration") if metrics else None
    thr = metrics["tuned_thresholds"]["thresholds"] if metrics and tune_from_cv else None
    tagger = fit(calls, calibration=cal, thresholds_from_cv=thr, **fit_kw)
    t2 = time.process_time()
    if metrics:
        metrics["training_cpu_s"] = {"cross_validation": round(t1 - t0, 1), "final_fit": round(t2 - t1, 1)}
    emb = getattr(tagger.fs.embedder, "save", None)
    if emb:
        emb()  # keep the embedding cache for the next run, if one is set
    js, npz = save(tagger, stem, {"cross_validation": metrics})
    return {"json": str(js), "npz": str(npz), "cross_validation": metrics}
