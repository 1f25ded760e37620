"""Reference implementations the fast paths are tested against (plain, per-item Python; never used in production)."""

from __future__ import annotations

import math

import numpy as np

from speechpipe.records import ACTS
from speechpipe.tagging.features import SPK, stack_ref
from speechpipe.tagging.phases import PHASES, funnel_probability, viterbi_reference
from speechpipe.tagging.summary import summarise_reference
from speechpipe.tagging.tagger import ACOUSTIC_BC, BC, GR, NA


def tag_call_reference(tagger, utterances) -> dict:
    """Per-utterance reference of :meth:`Tagger.tag_calls` (same labels, evidence, confidences and summary)."""
    speakers = [SPK.index(u.speaker) if u.speaker in SPK[:3] else 3 for u in utterances]
    rises = [u.intonation == "rise" for u in utterances]
    feats = [tagger.fs.text_features_ref(u.text or "") for u in utterances]
    auxes = [f[1] for f in feats]
    ctxs = [tagger.fs.context_ref(speakers, rises, auxes, i) for i in range(len(utterances))]
    if tagger.stacked:  # first pass: act probabilities, then this and neighbouring ones as features
        P1 = []
        for i in range(len(utterances)):
            cols, ctx = feats[i][0], ctxs[i]
            p = []
            for k in range(NA):
                s = sum(tagger.W1_text[c, k] for c in cols) + sum(
                    v * tagger.W1_ctx[j, k] for j, v in enumerate(ctx) if v
                )
                ok = tagger.roles[speakers[i], k] and auxes[i]["n_tokens"] > 0
                p.append(1.0 / (1.0 + math.exp(-min(max(s + tagger.b1[k], -30.0), 30.0))) if ok else 0.0)
            P1.append(p)
        ctxs = [ctx + stack_ref(speakers, P1, i) for i, ctx in enumerate(ctxs)]
    ems, all_logits = [], []
    e0 = tagger.fs.n_text - tagger.fs.emb_dim
    for i in range(len(utterances)):
        cols, aux = feats[i]
        ctx = ctxs[i]
        logits, text = [], []
        for k in range(NA + 4):
            s = sum(tagger.W_text[c, k] for c in cols)
            if tagger.fs.emb_dim:
                s += float(aux["emb"] @ tagger.W_text[e0:, k])
            text.append(s)
            s += sum(v * tagger.W_ctx[j, k] for j, v in enumerate(ctx) if v)
            logits.append(s + tagger.bias[k])
        all_logits.append((logits, cols, ctx, text))
        ph = logits[NA:]
        m = max(ph)
        lse = m + math.log(sum(math.exp(x - m) for x in ph))
        ems.append([x - lse for x in ph])
    reo = None
    if tagger.W_reopen is not None:
        w, b0 = tagger.W_reopen[:-1].tolist(), float(tagger.W_reopen[-1])
        reo = []
        for i in range(len(utterances)):
            row = tagger.fs.reopen_ref(speakers, auxes, i)
            if tagger.stacked:
                row += [ctxs[i][tagger.fs.n_ctx + c] for c in tagger._reo_cols]
            r = sum(v * wj for v, wj in zip(row, w)) + b0
            r = min(max(r, -30.0), 30.0)
            if tagger.reopen_gate and not tagger.fs.reopen_cue_ref(speakers, auxes, i):
                r = -30.0
            reo.append((-math.log1p(math.exp(-r)), -math.log1p(math.exp(r))))
    path = viterbi_reference(ems, tagger.logA.tolist(), tagger.logpi.tolist(), reo)
    acoustic = [bool(u.prosody.get(ACOUSTIC_BC)) for u in utterances]
    for i, (u, s) in enumerate(zip(utterances, path)):
        u.phase = PHASES[s]
        logits, cols, ctx, text = all_logits[i]
        pa = tagger.W_pa[s + 4 * (speakers[i] != 0)]
        logits = [logits[k] + pa[k] for k in range(NA)]
        ok = [bool(tagger.roles[speakers[i], k]) for k in range(NA)]
        if tagger.gate is not None:
            ok = [o and text[k] > tagger.gate[k] for k, o in enumerate(ok)]
        if tagger.lexical:
            ok[GR] = ok[GR] and bool(auxes[i]["fam"][tagger.fs.fam_col["greeting"]])
            ok[BC] = ok[BC] and bool(auxes[i]["all_min"])
        ok[BC] = ok[BC] or (acoustic[i] and bool(tagger.roles[speakers[i], BC]))
        acts = [a for k, a in enumerate(ACTS) if ok[k] and logits[k] > tagger.thr_logit[k]]
        if auxes[i]["n_tokens"] == 0:
            acts = ["backchannel"] if acoustic[i] and ok[BC] else []
        if "backchannel" in acts:
            others = [logits[ACTS.index(a)] for a in acts if a != "backchannel"]
            acts = (
                ["backchannel"] if not others or logits[BC] >= max(others) else [a for a in acts if a != "backchannel"]
            )
        if "what_more" in acts and "closed_question" in acts:
            acts.remove("closed_question")
        for w, lo in tagger.exclusive:
            if ACTS[w] in acts and ACTS[lo] in acts:
                acts.remove(ACTS[lo])
        if acoustic[i] and ok[BC]:  # a flagged short listener turn is a backchannel alone, whatever its words
            acts = ["backchannel"]
        u.acts = acts
        u.evidence = {a: _evidence_ref(tagger, cols, ctx, ACTS.index(a)) for a in acts}
        if acoustic[i] and acts == ["backchannel"] and not auxes[i]["all_min"]:
            u.evidence = {"backchannel": "acoustic:short_turn"}
        u.act_confidence = {a: round(1.0 / (1.0 + math.exp(-(tagger.cal_a[k] * logits[k] + tagger.cal_b[k]))), 3)
                            for k, a in enumerate(ACTS) if a in acts}
    p_fun = funnel_probability(np.array(ems).reshape(-1, 4), np.array([0, len(ems)]), tagger.logA, tagger.logpi,
                               None if reo is None else np.array(reo).reshape(-1, 2))
    return summarise_reference(utterances, float(p_fun[0]))


def _evidence_ref(tagger, cols: list[int], ctx: list[float], a: int) -> str:
    nv, nf = len(tagger.fs.vocab), len(tagger.fs.fam_names)
    best, arg = 0.0, None
    for c in cols:
        if c < nv:
            w, name = tagger.W_ev[c, a], tagger.ev_names[c]
        elif nv + nf <= c < tagger.fs.n_ev:
            w, name = tagger.W_text[c, a], tagger.ev_names[c - nf]
        else:
            continue
        if w > best:
            best, arg = w, name
    if arg is not None:
        return arg
    contrib = [v * tagger.W_ctx[j, a] for j, v in enumerate(ctx)]
    return "context:" + tagger.ctx_names[int(np.argmax(contrib))]
