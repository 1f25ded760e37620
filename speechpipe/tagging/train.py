"""Training and evaluation of the tagger (scikit-learn is used here only, never at inference).

``speechpipe train-tagger`` runs :func:`speechpipe.tagging.validate.train_and_save`: it reads the gold calls,
adds an ASR-like copy of every call (lower case, no punctuation, spelling
variants, dropped and swapped words) so the model cannot lean on punctuation,
fits one logistic regression per act (on the speakers that may carry it) and a
multinomial one for the phase emissions and one for the per-utterance reopen
probability (:data:`~speechpipe.tagging.features.REOPEN_NAMES`), counts phase transitions, runs
leave-calls-out cross-validation and writes ``models/tagger-v3.{json,npz}``
(:data:`V3`; :data:`FAST` without embeddings).

Examples
--------
>>> import random
>>> asrify("Okei. Har du sendt inn meldekortet? [sukker]", random.Random(0), p_drop=0, p_swap=0)
'okei har du sendt inn meldekortet'
"""

from __future__ import annotations

import json
import random
import re
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from speechpipe.records import ACTS, Utterance
from speechpipe.tagging.features import (
    REOPEN_NAMES,
    REOPEN_STACK,
    TEXT_EXTRA,
    FeatureSpace,
    encode_calls,
    reopen_stack_cols,
    stack_block,
)
from speechpipe.tagging.phases import PHASES, transition_matrix
from speechpipe.tagging.tagger import COUNSELLOR_ACTS, MODEL_DIR, MODEL_STEM, NA, Tagger
from speechpipe.tagging.text import (
    BRACKETS,
    CUE_FAMILIES,
    FAMILY_PAIRS,
    ngrams,
    normalise_tokens,
    text_char_grams,
    word_features,
)

VARIANTS = {"ok": "okei", "ikke": "ikkje", "jeg": "æ", "hva": "ka", "hvordan": "åssen", "mm": "mhm", "hvor": "kor"}


class GoldError(Exception):
    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def load_gold(path) -> dict:
    """Read one transcript in the gold format; ``acts``/``phase`` kept as gold if present.

    Returns ``{"call_id", "utterances": [Utterance], "gold_acts", "gold_phase", "structure", "reopenings"}``;
    the Utterances carry no labels (gold labels stay apart, so the tagger never sees them).
    """
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise GoldError(p, f"cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise GoldError(p, f"not valid JSON ({e.msg}, line {e.lineno})") from e
    if not isinstance(d, dict) or not isinstance(d.get("utterances"), list):
        raise GoldError(p, "expected an object with an 'utterances' list")
    utts, acts, phases = [], [], []
    for i, u in enumerate(d["utterances"]):
        if not isinstance(u, dict) or not isinstance(u.get("speaker"), str) or not isinstance(u.get("text"), str):
            raise GoldError(p, f"utterance {i} needs string 'speaker' and 'text'")
        start, end = u.get("start"), u.get("end")
        if (start is not None and not isinstance(start, (int, float))
                or end is not None and not isinstance(end, (int, float))):
            raise GoldError(p, f"utterance {i}: start/end must be numbers")
        utts.append(Utterance(u["speaker"], start, end, u["text"], channel=u.get("channel")))
        acts.append([a for a in u.get("acts") or [] if a in ACTS])
        phases.append(u.get("phase"))
    return {"call_id": str(d.get("call_id") or p.stem), "utterances": utts, "gold_acts": acts, "gold_phase": phases,
            "structure": d.get("structure"), "reopenings": d.get("reopenings"), "path": str(p)}


def load_gold_dir(path) -> list[dict]:
    files = sorted(Path(path).glob("*.json"))
    if not files:
        raise GoldError(path, "no *.json gold files")
    return [load_gold(f) for f in files]


def asrify(text: str, rng: random.Random, p_drop: float = 0.06, p_swap: float = 0.04, p_variant: float = 0.3,
           vocab: list[str] | None = None) -> str:
    """Text as speech recognition would give it: no notes, no punctuation, lower case, some errors."""
    words = re.sub(r"[^\w\s-]", " ", BRACKETS.sub(" ", text)).lower().replace("-", " ").split()
    out = []
    for w in words:
        r = rng.random()
        if r < p_drop and len(words) > 2:
            continue
        if r < p_drop + p_swap and vocab:
            w = rng.choice(vocab)
        elif w in VARIANTS and rng.random() < p_variant:
            w = VARIANTS[w]
        out.append(w)
    return " ".join(out)


def call_seed(call: dict) -> int:
    """A seed that belongs to the call itself (its id), so its ASR-like copy is the same text in
    every training fold (and its sentence embeddings are computed once)."""
    return zlib.crc32(str(call["call_id"]).encode("utf-8")) % 100_000


def excerpts(call: dict, asr: dict | None = None) -> list[dict]:
    """Every utterance of ``call`` as a one-utterance "call" (a quoted excerpt with no context), with its gold
    labels; every second one from the ASR-like copy ``asr`` when given."""
    out = []
    for i, (u, acts, ph) in enumerate(zip(call["utterances"], call["gold_acts"], call["gold_phase"])):
        if asr is not None and i % 2:
            u = asr["utterances"][i]
        out.append({"call_id": f"{call['call_id']}#{i}", "utterances": [u], "gold_acts": [acts], "gold_phase": [ph],
                    "structure": None, "reopenings": None})
    return out


def asr_copy(call: dict, seed: int, **kw) -> dict:
    rng = random.Random(seed)
    vocab = [w for u in call["utterances"] for w in normalise_tokens(u.text)]
    utts = [Utterance(u.speaker, u.start, u.end, asrify(u.text, rng, vocab=vocab, **kw)) for u in call["utterances"]]
    return {**call, "call_id": call["call_id"] + "-asr", "utterances": utts}


def _design(fs: FeatureSpace, calls: list[dict]):
    b = encode_calls([c["utterances"] for c in calls])
    Xt, aux = fs.text_block(b.texts)
    C = fs.context_block(b, aux)
    X = sp.hstack([Xt[b.text_code], sp.csr_matrix(C)], format="csr")
    X.eliminate_zeros()
    R = fs.reopen_block(b, aux)
    cue = fs.reopen_cue(b, aux)
    Y = np.zeros((b.n, NA), dtype=bool)
    P = np.zeros(b.n, dtype=np.int64)
    spk = []
    i = 0
    for c in calls:
        for u, acts, ph in zip(c["utterances"], c["gold_acts"], c["gold_phase"]):
            for a in acts:
                Y[i, ACTS.index(a)] = True
            P[i] = PHASES.index(ph) if ph in PHASES else -1
            spk.append(u.speaker)
            i += 1
    return X, Y, P, np.array(spk, dtype=object), R, b, cue


def fit(calls: list[dict], C: float = 0.5, min_df: int = 2, augment: bool = True, seed: int = 0,
        name: str | None = None, balanced: bool = True, phase_C: float | None = 2.0, reopen_C: float = 1.0,
        reopen_bias: float = 0.0,
        fam_scale: float = 3.0, phase_acts: bool = False, phase_act_scale: float = 1.0,
        unscaled: tuple = ("open_q", "wh_any", "closed_q"), stack: bool = True, inner_folds: int = 4,
        stack_scale: float = 3.0, acts_only: bool = False, end_features: bool = False, prefixes: bool = True,
        tune_thresholds: int = 4, threshold_range: tuple = (0.3, 0.7), chars: bool = False, char_min_df: int = 2,
        char_scale: float = 1.0, unbalanced_acts: tuple = (), lemmas: bool = False, embeddings: bool = False,
        emb_scale: float = 1.0, emb_dim: int = 96, emb_whiten: bool = True, tol: float = 1e-4, excerpt: bool = False,
        gate_p: float | None = None, lexical: bool = False,
        families: bool = True, ngrams_on: bool = True, embedder=None, calibration: dict | None = None,
        thresholds_from_cv: dict | None = None, neighbours: bool | int = False, asr_copies: int = 1,
        nbr_emb: int = 0, guide: list | None = None, guide_copies: int = 0, long_phrases: bool = False,
        reopen_gate: bool = False, exclusive_acts: tuple = ()) -> Tagger:
    """Fit a :class:`Tagger` on gold calls (with an ASR-like copy of each when ``augment``).

    With ``stack``, a first-pass act model is fitted too, and its out-of-fold act
    probabilities (``inner_folds``-fold cross-fitting over the training calls, so no
    call sees a first pass trained on itself) of each utterance and its neighbours are
    extra features of the second-pass act, phase and reopen models. ``acts_only``
    fits the act models alone (a first pass).

    tagger-v3 options: ``lemmas`` (simplemma lemma features), ``embeddings`` (multilingual-e5-small
    sentence embeddings as dense text columns, scaled by ``emb_scale``), ``excerpt`` (every utterance also
    as a one-utterance excerpt in training, and an "excerpt" context flag), ``gate_p`` and ``lexical``
    (the evidence rule, see :class:`~speechpipe.tagging.tagger.Tagger`), ``families``/``ngrams_on`` (off: the cue
    families / the n-gram and prefix columns get no weight; for the ablation), ``calibration`` (per-act
    Platt parameters, from :func:`speechpipe.tagging.validate.cross_validate`), ``guide``/``guide_copies`` (the
    annotation guide's examples, :func:`speechpipe.tagging.guide.load_guide_examples`, added this many times as
    one-utterance excerpts, clean and ASR-like; round 4). Round 5: ``reopen_gate`` (a reopening may start only at a
    reopen cue, :meth:`~speechpipe.tagging.features.FeatureSpace.reopen_cue`; the reopen model is fitted on those rows),
    ``neighbours=2`` (:data:`~speechpipe.tagging.features.NBR_FAMILIES_2`), ``exclusive_acts`` ([winner, loser] pairs
    never given together), ``asr_copies`` (ASR-like copies of every training call, each with its own seed).
    """
    from sklearn.linear_model import LogisticRegression

    kw1 = dict(C=C, min_df=min_df, augment=augment, seed=seed, balanced=balanced, fam_scale=fam_scale,
               unscaled=unscaled, end_features=end_features, prefixes=prefixes, chars=chars, char_min_df=char_min_df,
               char_scale=char_scale, unbalanced_acts=unbalanced_acts, lemmas=lemmas, embeddings=embeddings,
               emb_scale=emb_scale, emb_dim=emb_dim, emb_whiten=emb_whiten,
               excerpt=excerpt, families=families, ngrams_on=ngrams_on, tol=tol, neighbours=neighbours,
               asr_copies=asr_copies, nbr_emb=nbr_emb, guide=guide, guide_copies=guide_copies,
               long_phrases=long_phrases)
    if embeddings and embedder is None:
        from speechpipe.tagging.embed import shared_embedder

        embedder = shared_embedder()
    kw1["embedder"] = embedder

    train = list(calls)
    origin = list(range(len(calls)))  # source call of every training "call" (folds of the cross-fitting)
    asr = [asr_copy(c, seed + call_seed(c)) for c in calls] if augment else []
    train += asr
    origin += list(range(len(asr)))
    for j in range(1, asr_copies if augment else 0):  # more ASR-like copies, other seeds (never the evaluation's)
        more = [asr_copy(c, seed + call_seed(c) + 100_003 * j) for c in calls]
        train += [{**m, "call_id": f"{m['call_id']}{j}"} for m in more]
        origin += list(range(len(more)))
    n_full = len(train)  # whole calls (clean, ASR-like); excerpts follow
    if excerpt:
        for k, c in enumerate(calls):
            ex = excerpts(c, asr[k] if asr else None)
            train += ex
            origin += [k] * len(ex)
    if guide_copies:  # the guide's own examples, quoted alone (no dev call: origin -1, in no fold)
        if guide is None:  # the guide next to the gold calls (../shared/annotation-guide.md)
            from speechpipe.tagging.guide import guide_path, load_guide_examples

            if not calls or not calls[0].get("path"):
                raise ValueError("guide_copies > 0 needs guide= or gold calls read from files (to find the guide)")
            guide = load_guide_examples(guide_path(Path(calls[0]["path"]).parent))
        for j in range(guide_copies):
            for g in guide:
                train.append(g if j % 2 == 0 else {**asr_copy(g, seed + call_seed(g) + j), "call_id": g["call_id"]})
                origin.append(-1)
    df, cdf = Counter(), Counter()
    for c in train[:n_full]:
        for u in c["utterances"]:
            toks = normalise_tokens(u.text)
            df.update(set(word_features(toks, lemmas)) if prefixes else set(ngrams(toks)))
            if chars:
                cdf.update(text_char_grams(toks))
    vocab = sorted(g for g, n in df.items() if n >= min_df)
    char_vocab = sorted(g for g, n in cdf.items() if n >= char_min_df)
    proj = _emb_projection(embedder, train[:n_full], emb_dim, emb_whiten) if embeddings else None
    fs = FeatureSpace(vocab, CUE_FAMILIES, end_features=end_features, chars=char_vocab,
                      emb_dim=emb_dim if embeddings else 0, excerpt=excerpt, embedder=embedder, emb_proj=proj,
                      neighbours=neighbours, nbr_emb=nbr_emb if embeddings else 0, long_phrases=long_phrases)
    X, Y, P, spk, R, b, cue = _design(fs, train)
    nt, nc = fs.n_text, fs.n_ctx
    level1 = None
    if stack:
        level1 = fit(calls, stack=False, acts_only=True, **kw1)
        S = stack_block(_oof_probs(calls, train, origin, inner_folds, kw1), b)
        X = sp.hstack([X, sp.csr_matrix(S)], format="csr")
        R = np.hstack([R, S[:, reopen_stack_cols(ACTS)]])
    # Cue-family columns scaled up: the L2 penalty then lets a family (a general cue
    # from the method) carry more weight than any single n-gram seen in a few calls.
    # Question-form families stay unscaled (they are broad, and scaling them hurt CV).
    nv, nf = len(fs.vocab), len(fs.fam_names)
    scale = np.ones(X.shape[1])
    scale[nv:nv + nf] = [1.0 if f in unscaled else fam_scale for f in fs.fam_names]
    scale[fs.n_ev:fs.n_sparse] = char_scale
    scale[fs.n_sparse:nt] = emb_scale
    scale[nt + nc:] = stack_scale
    scale[nt + fs._nbr_emb_at:nt + fs._nbr_emb_at + fs.nbr_emb] = emb_scale  # like the utterance's own embedding
    if not ngrams_on:  # ablation: no n-gram/prefix/lemma column (family phrases are n-gram columns too)
        scale[:nv] = 0.0
    if not families:  # ablation: no cue family, nor the family conjunction flags
        scale[nv:nv + nf] = 0.0
        scale[nv + nf + len(TEXT_EXTRA) - len(FAMILY_PAIRS):nv + nf + len(TEXT_EXTRA)] = 0.0
    X = (X @ sp.diags(scale)).tocsr()
    W = np.zeros((X.shape[1], NA + 4))
    bias = np.zeros(NA + 4)
    is_coun = spk == "counsellor"
    # Stacked phase → act features: one-hot (phase × counsellor or not). Gold phases in
    # training, the decoded phases at inference (a summary is a closing act, etc.).
    Pa = np.zeros((len(P), 8))
    okp = P >= 0
    Pa[np.nonzero(okp)[0], (P + 4 * (~is_coun))[okp]] = phase_act_scale if phase_acts else 0.0
    Xa = sp.hstack([X, sp.csr_matrix(Pa)], format="csr")
    W_pa = np.zeros((8, NA))
    for k, a in enumerate(ACTS):
        rows = np.ones(len(spk), bool) if a == "backchannel" else (is_coun if a in COUNSELLOR_ACTS else ~is_coun)
        y = Y[rows, k]
        if y.sum() == 0:
            bias[k] = -20.0
            continue
        # Rare acts (agreement, news_warning) would otherwise never reach p > 0.5.
        m = LogisticRegression(C=C, max_iter=2000, solver="liblinear", tol=tol,
                               class_weight="balanced" if balanced and a not in unbalanced_acts else None)
        m.fit(Xa[rows], y)
        W[:, k] = m.coef_[0][:X.shape[1]]
        W_pa[:, k] = m.coef_[0][X.shape[1]:] * (phase_act_scale if phase_acts else 0.0)
        bias[k] = m.intercept_[0]
    ok = P >= 0
    if not acts_only:
        m = LogisticRegression(C=phase_C or C, max_iter=3000, tol=max(tol, 1e-4))
        m.fit(X[ok], P[ok])
        coef = np.zeros((4, X.shape[1]))
        inter = np.zeros(4)
        coef[m.classes_] = m.coef_
        inter[m.classes_] = m.intercept_
        W[:, NA:] = coef.T
        bias[NA:] = inter
    W *= scale[:, None]  # back to raw 0/1 features for inference
    # Evidence rule: the context's average contribution to each act's logit on the whole-call rows
    # of the speakers who may carry it (see Tagger.__init__).
    ctx_base = np.zeros(NA)
    rows_full = np.arange(b.n) < b.offsets[n_full]
    Xc = X[:, nt:] @ sp.diags(1.0 / np.where(scale[nt:] == 0, 1.0, scale[nt:]))
    for k, a in enumerate(ACTS):
        rows = rows_full & (np.ones(len(spk), bool) if a == "backchannel"
                            else (is_coun if a in COUNSELLOR_ACTS else ~is_coun))
        if rows.any():
            ctx_base[k] = float(np.mean(Xc[rows] @ W[nt:, k]))
    # Reopen model: on utterances whose previous gold phase is solution/closing,
    # does mapping start here? Few dense cue features, plain (unweighted) logistic
    # regression so that its probability can serve as a transition probability.
    prevP = np.roll(P, 1)
    at_risk = (b.row_in_call() > 0) & (prevP >= 2) & (P >= 0)
    if reopen_gate:  # the reopen model learns P(reopen | a reopen cue): the rule decides the rest
        at_risk &= cue
    y_reo = P[at_risk] == 1
    W_reopen = np.zeros(R.shape[1] + 1)
    if 0 < y_reo.sum() < len(y_reo) and not acts_only:
        m = LogisticRegression(C=reopen_C, max_iter=2000)
        m.fit(R[at_risk], y_reo)
        W_reopen[:-1], W_reopen[-1] = m.coef_[0], m.intercept_[0] + reopen_bias
    else:
        W_reopen[-1] = -10.0
    counts = Counter()
    for c in calls:  # whole calls only (excerpts have no transitions)
        ph = [PHASES.index(p) for p in c["gold_phase"] if p in PHASES]
        counts.update(zip(ph, ph[1:]))
    logA, logpi = transition_matrix(dict(counts))
    thresholds = {a: 0.5 for a in ACTS}
    if tune_thresholds > 1 and not acts_only:
        kw_all = dict(kw1, phase_C=phase_C, reopen_C=reopen_C, reopen_bias=reopen_bias, phase_acts=phase_acts,
                      phase_act_scale=phase_act_scale, stack=stack, inner_folds=inner_folds, stack_scale=stack_scale,
                      threshold_range=threshold_range, tune_thresholds=0)  # inner fits: fixed 0.5, no nesting
        thresholds = _inner_thresholds(calls, tune_thresholds, kw_all)
    meta = {
        "name": name or MODEL_STEM,
        "vocab": fs.vocab,
        "families": fs.families,
        "acts": list(ACTS),
        "phases": list(PHASES),
        "text_features": fs.text_names,
        "ctx_features": fs.ctx_names,
        "thresholds": thresholds,
        "logA": logA.tolist(),
        "logpi": logpi.tolist(),
        "training": {"calls": [c["call_id"] for c in calls], "augment": augment, "C": C, "phase_C": phase_C or C,
                     "min_df": min_df, "seed": seed, "balanced": balanced,
                     "reopen_C": reopen_C, "reopen_bias": reopen_bias, "fam_scale": fam_scale,
                     "phase_acts": phase_acts, "phase_act_scale": phase_act_scale,
                     "unscaled_families": list(unscaled), "stack": stack, "inner_folds": inner_folds,
                     "stack_scale": stack_scale, "prefixes": prefixes, "tune_thresholds": tune_thresholds,
                     "threshold_range": list(threshold_range)},
        "end_features": end_features,
        "reopen_features": list(REOPEN_NAMES) + ([f"stack:{s}:{a}" for s, a in REOPEN_STACK] if stack else []),
    }
    # tagger-v3 options, written only when used (older models keep their exact keys)
    if lemmas or embeddings or excerpt or gate_p is not None or lexical:
        meta["training"].update(lemmas=lemmas, embeddings=embeddings, emb_scale=emb_scale, emb_dim=emb_dim,
                                emb_whiten=emb_whiten, excerpt=excerpt,
                                families=families, ngrams=ngrams_on, tol=tol)
        meta["emb_dim"] = fs.emb_dim
        meta["embedding_model"] = getattr(embedder, "name", None) if embeddings else None
        meta["excerpt"] = excerpt
        meta["evidence_rule"] = {"gate_p": gate_p, "lexical": lexical, "ctx_base": ctx_base.tolist()}
    if neighbours:
        meta["neighbours"] = True if neighbours is True or neighbours == 1 else int(neighbours)
        meta["training"]["neighbours"] = meta["neighbours"]
    if fs.nbr_emb:
        meta["nbr_emb"] = fs.nbr_emb
        meta["training"]["nbr_emb"] = fs.nbr_emb
    if asr_copies != 1:
        meta["training"]["asr_copies"] = asr_copies
    if long_phrases:
        meta["long_phrases"] = True
    if reopen_gate:
        meta["reopen_gate"] = True
    if exclusive_acts:
        meta["exclusive_acts"] = [list(x) for x in exclusive_acts]
    if guide_copies:
        meta["training"].update(guide_copies=guide_copies, guide_examples=len(guide))
    if calibration:
        meta["calibration"] = calibration
    if thresholds_from_cv:  # chosen on out-of-fold logits by cross_validate (optional; tagger-v3 keeps 0.5)
        meta["thresholds"] = {a: float(thresholds_from_cv.get(a, 0.5)) for a in ACTS}
        meta["training"]["thresholds_from"] = "out-of-fold logits of the cross-validation"
    # Round-5 options are written only when used, so a default rebuild stays byte-identical to tagger-v2.
    if chars:
        meta["char_vocab"] = fs.chars
        meta["training"].update(chars=chars, char_min_df=char_min_df, char_scale=char_scale)
    if unbalanced_acts:
        meta["training"]["unbalanced_acts"] = list(unbalanced_acts)
    arrays = {"W_text": W[:nt], "W_ctx": W[nt:], "bias": bias, "W_reopen": W_reopen, "W_phase_act": W_pa}
    if level1 is not None:
        arrays.update(W1_text=level1.W_text[:, :NA], W1_ctx=level1.W_ctx[:, :NA], b1=level1.bias[:NA])
    if proj is not None:
        arrays.update(emb_mean=proj[0], emb_proj=proj[1])
    return Tagger(meta, arrays, embedder=embedder)


def _emb_projection(embedder, calls: list[dict], k: int, whiten: bool = True) -> tuple:
    """Mean and whitened principal axes ``(384, k)`` of the sentence embeddings of the training texts."""
    texts = list(dict.fromkeys(u.text for c in calls for u in c["utterances"]))
    E = np.asarray(embedder(texts), dtype=np.float64)
    mean = E.mean(axis=0)
    X = E - mean
    ev, V = np.linalg.eigh(X.T @ X / max(1, len(E) - 1))  # ascending
    k = min(k, len(ev))
    ev, V = ev[::-1][:k], V[:, ::-1][:, :k]
    V *= np.sign(V[np.abs(V).argmax(axis=0), np.arange(k)])  # a fixed sign per axis: reproducible
    return mean, (V / np.sqrt(np.maximum(ev, 1e-12)) if whiten else V)


def _inner_thresholds(calls: list[dict], folds: int, kw: dict) -> dict:
    """Per-act thresholds from an inner cross-validation over ``calls`` (see :func:`fit`).

    Each act's threshold maximises the F1 of its out-of-fold decisions (on the speakers who
    may carry it, rows with words), over a grid of probabilities in ``threshold_range``; ties
    go to the value nearest 0.5. Rare acts with no out-of-fold positive keep 0.5.
    """
    from speechpipe.tagging.tagger import role_mask

    n = len(calls)
    k = max(2, min(folds, n))
    lo, hi = kw.pop("threshold_range", (0.3, 0.7))
    logits, gold, spk, words = [], [], [], []
    for g in range(k):
        held = list(range(g, n, k))
        sub = fit([c for i, c in enumerate(calls) if i not in held], **kw)
        test = [calls[i] for i in held] + [asr_copy(calls[i], 500 + call_seed(calls[i])) for i in held]
        b = encode_calls([c["utterances"] for c in test])
        out = sub.tag_batch(b, logits=True)
        logits.append(out["act_logits"])
        words.append(out["n_tokens"][b.text_code] > 0)
        spk.append(b.spk)
        Y = np.zeros((b.n, NA), dtype=bool)
        r = 0
        for c in test:
            for acts in c["gold_acts"]:
                Y[r, [ACTS.index(a) for a in acts]] = True
                r += 1
        gold.append(Y)
    L, Y, S, W = np.vstack(logits), np.vstack(gold), np.concatenate(spk), np.concatenate(words)
    ok = role_mask()[S.astype(np.int64)] & W[:, None]
    grid = np.round(np.arange(lo, hi + 1e-9, 0.05), 2)
    out = {}
    for j, a in enumerate(ACTS):
        y, lg = Y[ok[:, j], j], L[ok[:, j], j]
        if y.sum() == 0:
            out[a] = 0.5
            continue
        f1 = [2 * (y & (lg > np.log(p / (1 - p)))).sum() / max(1, y.sum() + (lg > np.log(p / (1 - p))).sum())
              for p in grid]
        best = max(f1)
        out[a] = float(min((p for p, f in zip(grid, f1) if f >= best - 1e-12), key=lambda p: (abs(p - 0.5), p)))
    return out


def _oof_probs(calls: list[dict], train: list[dict], origin: list[int], folds: int, kw1: dict) -> np.ndarray:
    """First-pass act probabilities of every row of ``train`` (``calls``, their ASR-like copies and
    excerpts, as built by :func:`fit`; ``origin`` = source call), each from a first pass fitted without that call."""
    n = len(calls)
    offs = np.concatenate(([0], np.cumsum([len(c["utterances"]) for c in train])))
    P1 = np.zeros((int(offs[-1]), NA))
    k = max(2, min(folds, n))
    for g in range(k):
        held = list(range(g, n, k))
        sub = fit([c for i, c in enumerate(calls) if i not in held], stack=False, acts_only=True, **kw1)
        hs = set(held)
        idx = [j for j, o in enumerate(origin) if o in hs]
        p = sub.act_probs(encode_calls([train[i]["utterances"] for i in idx]))
        r = 0
        for i in idx:
            m = offs[i + 1] - offs[i]
            P1[offs[i]:offs[i + 1]] = p[r:r + m]
            r += m
    return P1


# ---------------------------------------------------------------------- evaluation


def score(pred_calls: list[dict], gold_calls: list[dict]) -> dict:
    """Act micro/macro F1, per-act F1, phase accuracy, structure and reopenings agreement."""
    tp, fp, fn = Counter(), Counter(), Counter()
    ph_ok = ph_n = st_ok = reo_ok = 0
    for pc, g in zip(pred_calls, gold_calls):
        for u, ga, gp in zip(pc["utterances"], g["gold_acts"], g["gold_phase"]):
            pa, ga = set(u.acts), set(ga)
            for a in pa & ga:
                tp[a] += 1
            for a in pa - ga:
                fp[a] += 1
            for a in ga - pa:
                fn[a] += 1
            if gp in PHASES:
                ph_n += 1
                ph_ok += u.phase == gp
        s = pc["summary"]
        if g.get("structure"):
            st_ok += s["structure"] == g["structure"]
            reo_ok += s["reopenings"] == g.get("reopenings")

    def f1(t, p, n):
        return 2 * t / (2 * t + p + n) if (2 * t + p + n) else 0.0

    labels = [a for a in ACTS if tp[a] + fn[a] > 0]
    per = {a: round(f1(tp[a], fp[a], fn[a]), 3) for a in labels}
    T, Fp, Fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    return {
        "act_micro_f1": round(f1(T, Fp, Fn), 4),
        "act_macro_f1": round(float(np.mean(list(per.values()))) if per else 0.0, 4),
        "phase_accuracy": round(ph_ok / ph_n, 4) if ph_n else None,
        "structure_right": st_ok,
        "reopenings_right": reo_ok,
        "calls": len(gold_calls),
        "utterances": sum(len(g["utterances"]) for g in gold_calls),
        "per_act_f1": per,
    }


def tag_gold(tagger: Tagger, calls: list[dict]) -> list[dict]:
    """Tag copies of the gold calls' utterances (gold labels never reach the tagger)."""
    out = []
    copies = [[Utterance(u.speaker, u.start, u.end, u.text) for u in c["utterances"]] for c in calls]
    summaries = tagger.tag_calls(copies)
    for c, utts, s in zip(calls, copies, summaries):
        out.append({"call_id": c["call_id"], "utterances": utts, "summary": s})
    return out


def save(tagger: Tagger, stem: Path | None = None, extra: dict | None = None) -> tuple[Path, Path]:
    """Write ``STEM.json`` (names, vocabulary, transitions, metrics) and ``STEM.npz`` (weights) atomically."""
    import io

    from speechpipe.outputs.writers import atomic_write_bytes, write_json

    stem = Path(stem) if stem else MODEL_DIR / MODEL_STEM
    meta = dict(tagger.meta)
    if extra:
        meta.update(extra)
    buf = io.BytesIO()
    np.savez_compressed(buf, W_text=tagger.W_text.astype(np.float32), W_ctx=tagger.W_ctx.astype(np.float32),
                        bias=tagger.bias.astype(np.float32),
                        **({} if tagger.W_reopen is None else {"W_reopen": tagger.W_reopen.astype(np.float32)}),
                        W_phase_act=tagger.W_pa.astype(np.float32),
                        **({"emb_mean": tagger.fs.emb_proj[0].astype(np.float32),
                            "emb_proj": tagger.fs.emb_proj[1].astype(np.float32)}
                           if tagger.fs.emb_proj is not None else {}),
                        **({"W1_text": tagger.W1_text.astype(np.float32), "W1_ctx": tagger.W1_ctx.astype(np.float32),
                            "b1": tagger.b1.astype(np.float32)} if tagger.stacked else {}))
    npz = atomic_write_bytes(stem.with_suffix(".npz"), buf.getvalue())
    js = write_json(stem.with_suffix(".json"), meta)
    return js, npz


V3 = dict(lemmas=True, embeddings=True, emb_whiten=False, emb_scale=3.0, excerpt=True, gate_p=0.25, lexical=True,
          stack=False, tune_thresholds=0, tol=1e-3,
          nbr_emb=32,  # v3.1: the other party's cue families (neighbours, below) and embedding next to an utterance
          guide_copies=2, long_phrases=True,  # round 4: the guide's examples as excerpts; long cue phrases match
          reopen_bias=-0.7,  # round 4: the wider new-topic cues reopened too often (writer-group CV: structure 44 → 47)
          reopen_gate=True,  # round 5: a reopening needs a reopen cue (the guide's hourglass)
          neighbours=2,  # v3.1 (True); round 5: 2, the other party's new topic, handover, what-more, goodbye too
          exclusive_acts=(("summary", "information"),), asr_copies=2)  # round 5: see the model card
FAST = dict(V3, embeddings=False)  # tagger-v3-fast: the same without sentence embeddings
