"""Phase and empathic-communication act tagger (issue 5).

A linear model over sparse text features and a small context block
(:mod:`speechpipe.tagging.features`) scores 17 acts (one-vs-rest) and 4 phases
(multinomial); a constrained Viterbi (:mod:`speechpipe.tagging.phases`) decodes
the phases of a whole call jointly, which gives the structure (funnel or
hourglass) and the reopenings. The reopen move (solution/closing → mapping) is
scored per utterance by a small logistic model over reopen cues (a new topic or a
new voice right after a what-more question or a summary, …), so an hourglass needs
evidence at the point where it reopens. The model is stacked: a first pass scores
the acts alone, and its probabilities at this and the neighbouring utterances (±1, ±2,
the same speaker's previous one) are extra context features of the second pass
(acts, phase emissions, reopen). Parameters are learned by
:mod:`speechpipe.tagging.train` and shipped in ``models/tagger-v2.{json,npz}``.

Two paths give identical labels (tested):

* :meth:`Tagger.tag_calls` — vectorised over a batch of calls: text features once
  per unique text, scores as matrix products, batched Viterbi (numpy, or torch
  with ``backend="torch"``, also on GPU);
* :meth:`Tagger.tag_call_reference` — plain per-utterance Python, to read and to test against.

Examples
--------
>>> from speechpipe.records import Utterance
>>> tagger = load_tagger()
>>> call = [Utterance("counsellor", None, None, "Hei, du snakker med Kari."),
...         Utterance("caller", None, None, "Jeg lurer på når pengene kommer.")]
>>> summary = tagger.tag_call(call)
>>> call[0].acts, call[0].phase, summary["structure"]
(['greeting'], 'opening', 'funnel')
"""

from __future__ import annotations

import gc
import json
import math
from collections import deque
from itertools import repeat
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from speechpipe.records import ACTS
from speechpipe.tagging.features import (
    REOPEN_NAMES,
    REOPEN_STACK,
    SPK,
    STACK_SLOTS,
    Batch,
    FeatureSpace,
    encode_calls,
    reopen_stack_cols,
    stack_index,
    stack_names,
    stack_ref,
)
from speechpipe.tagging.phases import PHASES, reopen_free, viterbi_batch, viterbi_batch_torch, viterbi_reference
from speechpipe.tagging.text import normalise_tokens

MODEL_DIR = Path(__file__).resolve().parents[2] / "models"
MODEL_STEM = "tagger-v2"
CALLER_ACTS = ("emotion", "request", "new_topic", "backchannel")
COUNSELLOR_ACTS = tuple(a for a in ACTS if a not in ("emotion", "request", "new_topic"))
from speechpipe.vocabulary import EMPATHIC  # noqa: E402

NA = len(ACTS)
BC = ACTS.index("backchannel")
WM = ACTS.index("what_more")
CQ = ACTS.index("closed_question")
SILENCE_S = 2.0  # a gap this long between turns counts as a silence
CHUNK_ROWS = 8192  # rows per chunk of the dense per-utterance work (whole calls): its temporaries stay in cache


class TaggerError(Exception):
    """The model files are missing or unreadable."""


def role_mask() -> np.ndarray:
    """(speaker code, act) → allowed. Unknown speakers may carry any act."""
    M = np.ones((len(SPK), NA), dtype=bool)
    M[0] = [a in COUNSELLOR_ACTS for a in ACTS]
    M[1] = M[2] = [a in CALLER_ACTS for a in ACTS]
    return M


class Tagger:
    """A trained tagger. Build with :func:`load_tagger` (or ``Tagger(params, arrays)`` in training).

    Parameters
    ----------
    meta : dict
        Names, vocabulary, cue families, thresholds, transitions (the JSON file).
    arrays : dict
        ``W_text`` (n_text, 21), ``W_ctx`` (n_ctx, 21), ``bias`` (21,) — 17 act logits then 4 phase logits.
    backend : {"numpy", "torch"}
    device : str, optional
        torch device for ``backend="torch"`` (``"cuda"``, ``"cpu"``).
    """

    def __init__(self, meta: dict, arrays: dict, backend: str = "numpy", device: str | None = None):
        self.meta = meta
        self.name = meta.get("name", MODEL_STEM)
        self.fs = FeatureSpace(meta["vocab"], meta["families"], end_features=meta.get("end_features", False),
                               chars=meta.get("char_vocab"))
        self.W_text = np.asarray(arrays["W_text"], dtype=np.float64)
        self.W_ctx = np.asarray(arrays["W_ctx"], dtype=np.float64)
        self.bias = np.asarray(arrays["bias"], dtype=np.float64)
        # Stacked model: a first pass (W1_*, acts only) gives act probabilities whose values at
        # this and neighbouring utterances extend the context block of the second pass.
        self.stacked = "W1_text" in arrays
        n_stack = len(stack_names(ACTS)) if self.stacked else 0
        if self.stacked:
            self.W1_text = np.asarray(arrays["W1_text"], dtype=np.float64)
            self.W1_ctx = np.asarray(arrays["W1_ctx"], dtype=np.float64)
            self.b1 = np.asarray(arrays["b1"], dtype=np.float64)
            if self.W1_text.shape != (self.fs.n_text, NA) or self.W1_ctx.shape != (self.fs.n_ctx, NA):
                raise TaggerError(f"model {self.name}: first-pass weight shapes do not match its feature space")
            self._reo_cols = reopen_stack_cols(ACTS)
        if self.W_text.shape != (self.fs.n_text, NA + 4) or self.W_ctx.shape != (self.fs.n_ctx + n_stack, NA + 4):
            raise TaggerError(f"model {self.name}: weight shapes do not match its feature space")
        thr = meta.get("thresholds", {})
        p = np.array([thr.get(a, 0.5) for a in ACTS])
        self.thr_logit = np.log(p / (1 - p))  # compare logits, no sigmoid needed
        self.logA = np.asarray(meta["logA"], dtype=np.float64)
        # Reopen model: logistic weights over REOPEN_NAMES + intercept; when present,
        # the solution/closing → mapping move is scored per utterance.
        # Stacked phase → act weights, rows = decoded phase + 4 × (speaker is not the counsellor).
        self.W_pa = np.asarray(arrays.get("W_phase_act", np.zeros((8, NA))), dtype=np.float64)
        wr = arrays.get("W_reopen")
        self.W_reopen = None if wr is None else np.asarray(wr, dtype=np.float64)
        if self.W_reopen is not None:
            if self.W_reopen.shape != (len(REOPEN_NAMES) + (len(REOPEN_STACK) if self.stacked else 0) + 1,):
                raise TaggerError(f"model {self.name}: reopen weights do not match its feature space")
            self.logA = reopen_free(self.logA)
        self.logpi = np.asarray(meta["logpi"], dtype=np.float64)
        self.roles = role_mask()
        # Evidence: each n-gram's own weight plus the weight of the cue families it belongs to.
        nv, nf = len(self.fs.vocab), len(self.fs.fam_names)
        self.W_ev = self.W_text[:nv, :NA] + self.fs.fam_matrix @ self.W_text[nv:nv + nf, :NA]
        # character n-grams never name evidence (a word or flag is what a person can check)
        self.ev_names = [f"«{g}»" for g in self.fs.vocab] + [f"text:{n}" for n in self.fs.text_names[nv + nf:self.fs.n_ev]]
        self._ev_names_arr = np.array(self.ev_names, dtype=object)
        self.ctx_names = list(self.fs.ctx_names) + (stack_names(ACTS) if self.stacked else [])
        self._ctx_names_arr = np.array([f"context:{n}" for n in self.ctx_names], dtype=object)
        # one table of evidence names: text columns (n-grams, flags), then context columns
        self._all_names = np.concatenate([self._ev_names_arr, self._ctx_names_arr])
        # Combined weights of the vectorised path: [first pass | second pass] columns.
        if self.stacked:
            self._W_text_all = np.hstack([self.W1_text, self.W_text])
            self._W_ctx_all = np.hstack([self.W1_ctx, self.W_ctx[:self.fs.n_ctx]])
            self._b_all = np.concatenate([self.b1, self.bias])
            self._W_stack = np.ascontiguousarray(self.W_ctx[self.fs.n_ctx:])  # (slots × 17, 21)
        else:
            self._W_text_all, self._W_ctx_all, self._b_all = self.W_text, self.W_ctx, self.bias
        self._use_pa = bool(np.any(self.W_pa))  # adding an all-zero table changes nothing
        self.backend = backend
        self.device = device

    # ------------------------------------------------------------------ public
    def tag_call(self, utterances) -> dict:
        """Tag one call in place (acts, phase, evidence); return its summary."""
        return self.tag_calls([utterances])[0]

    def tag_calls(self, calls) -> list[dict]:
        """Vectorised tagging of many calls in place; returns one summary per call."""
        # The cyclic GC would walk every live Utterance again and again while we
        # allocate millions of small lists/dicts; none of them form cycles.
        was = gc.isenabled()
        gc.disable()
        try:
            b = encode_calls(calls)
            out = self.tag_batch(b)
            self._write_back(calls, b, out)
            # --- interim (issue 16), until the tagger weighs acoustic evidence itself: a minimal response
            # the prosody stage found in the audio (u.prosody["acoustic_backchannel"]) is a backchannel.
            acts = out["acts"]
            flat = [u for c in calls for u in c]
            acoustic = [i for i, u in enumerate(flat)
                        if (getattr(u, "prosody", None) or {}).get("acoustic_backchannel")]
            if acoustic:
                acts = acts.copy()
                acts[acoustic] = False
                acts[acoustic, BC] = True
                for i in acoustic:
                    flat[i].acts = ["backchannel"]
                    flat[i].evidence = {"backchannel": "acoustic:short_turn"}
            # --- end interim
            return summarise_batch(b, acts, out["phase"], out["n_tokens"])
        finally:
            if was:
                gc.enable()

    def tag_batch(self, b: Batch, chunk_rows: int = CHUNK_ROWS, logits: bool = False) -> dict:
        """The array core: ``acts`` (N, 17) bool, ``phase`` (N,) int8, evidence names, token counts
        (and with ``logits`` the act logits ``act_logits`` (N, 17), numpy backend; used to tune thresholds).

        Text features and text logits are computed once per unique text; the dense
        per-utterance part runs over chunks of whole calls (about ``chunk_rows`` rows),
        so its temporaries stay small and are reused instead of freshly paged in.
        """
        Xt, aux = self.fs.text_block(b.texts)
        best = self._text_evidence(Xt)
        if self.backend == "torch":
            C = self.fs.context_block(b, aux)
            acts, phase, C = self._decide_torch(Xt, C, b, aux)
            acts[aux["n_tokens"][b.text_code] == 0] = False
            ev = self._evidence_names(b, acts, lambda rr: C[rr], best)
            return {"acts": acts, "phase": phase, "ev_ids": ev, "ev_names": self._all_names[ev], "n_tokens": aux["n_tokens"]}
        # Text logits of both passes in one product, once per unique text.
        TL = np.asarray(Xt @ self._W_text_all)
        acts = np.zeros((b.n, NA), dtype=bool)
        em = np.empty((b.n, 4))
        reo = np.empty((b.n, 2)) if self.W_reopen is not None else None
        pending, names = [], []
        La_all = np.zeros((b.n, NA)) if logits else None
        for c0, c1 in _call_chunks(b.offsets, chunk_rows):
            bc = b.calls_slice(c0, c1)
            r0, r1 = b.offsets[c0], b.offsets[c1]
            C = self.fs.context_block(bc, aux)
            G = TL[bc.text_code]
            G += C @ self._W_ctx_all
            G += self._b_all
            S = None
            if self.stacked:
                S = _stack_fill(self._first_pass(G[:, :NA], bc, aux), bc)
                L = G[:, NA:]
                L += S @ self._W_stack
            else:
                L = G
            em[r0:r1] = _log_softmax(L[:, NA:])
            if reo is not None:
                reo[r0:r1] = self._reopen(bc, aux, None if S is None else S[:, self._reo_cols])
            ctx_rows = (lambda rr, C=C: C[rr]) if S is None else (lambda rr, C=C, S=S: np.hstack([C[rr], S[rr]]))
            if self._use_pa:  # acts depend on the decoded phase: decide after the Viterbi
                pending.append((c0, c1, L[:, :NA].copy(), ctx_rows))
                continue
            if logits:
                La_all[r0:r1] = L[:, :NA]
            a = self._decide_acts(L[:, :NA], bc.spk)
            a[aux["n_tokens"][bc.text_code] == 0] = False  # no words (empty, or only a [note]): no act
            acts[r0:r1] = a
            names.append(self._evidence_names(bc, a, ctx_rows, best))
        # One Viterbi over all calls (packed by length: memory O(N), no padding).
        phase = viterbi_batch(em, b.offsets, self.logA, self.logpi, reo)
        for c0, c1, La, ctx_rows in pending:
            bc = b.calls_slice(c0, c1)
            r0, r1 = b.offsets[c0], b.offsets[c1]
            La = La + self.W_pa[phase[r0:r1].astype(np.int64) + 4 * (bc.spk != 0)]
            if logits:
                La_all[r0:r1] = La
            a = self._decide_acts(La, bc.spk)
            a[aux["n_tokens"][bc.text_code] == 0] = False
            acts[r0:r1] = a
            names.append(self._evidence_names(bc, a, ctx_rows, best))
        ev = np.concatenate(names) if names else np.zeros(0, dtype=np.int64)
        out = {"acts": acts, "phase": phase, "ev_ids": ev, "ev_names": self._all_names[ev], "n_tokens": aux["n_tokens"]}
        if logits:
            out["act_logits"] = La_all
        return out

    def tag_call_reference(self, utterances) -> dict:
        """Per-utterance reference implementation (same labels as :meth:`tag_calls`)."""
        speakers = [SPK.index(u.speaker) if u.speaker in SPK[:3] else 3 for u in utterances]
        rises = [u.intonation == "rise" for u in utterances]
        feats = [self.fs.text_features_ref(u.text or "") for u in utterances]
        auxes = [f[1] for f in feats]
        ctxs = [self.fs.context_ref(speakers, rises, auxes, i) for i in range(len(utterances))]
        if self.stacked:  # first pass: act probabilities, then this and neighbouring ones as features
            P1 = []
            for i in range(len(utterances)):
                cols, ctx = feats[i][0], ctxs[i]
                p = []
                for k in range(NA):
                    s = sum(self.W1_text[c, k] for c in cols) + sum(v * self.W1_ctx[j, k] for j, v in enumerate(ctx) if v)
                    ok = self.roles[speakers[i], k] and auxes[i]["n_tokens"] > 0
                    p.append(1.0 / (1.0 + math.exp(-min(max(s + self.b1[k], -30.0), 30.0))) if ok else 0.0)
                P1.append(p)
            ctxs = [ctx + stack_ref(speakers, P1, i) for i, ctx in enumerate(ctxs)]
        ems, all_logits = [], []
        for i, u in enumerate(utterances):
            cols, _ = feats[i]
            ctx = ctxs[i]
            logits = []
            for k in range(NA + 4):
                s = sum(self.W_text[c, k] for c in cols)
                s += sum(v * self.W_ctx[j, k] for j, v in enumerate(ctx) if v)
                logits.append(s + self.bias[k])
            all_logits.append((logits, cols, ctx))
            ph = logits[NA:]
            m = max(ph)
            lse = m + math.log(sum(math.exp(x - m) for x in ph))
            ems.append([x - lse for x in ph])
        reo = None
        if self.W_reopen is not None:
            w, b0 = self.W_reopen[:-1].tolist(), float(self.W_reopen[-1])
            reo = []
            for i in range(len(utterances)):
                row = self.fs.reopen_ref(speakers, auxes, i)
                if self.stacked:
                    row += [ctxs[i][self.fs.n_ctx + c] for c in self._reo_cols]
                r = sum(v * wj for v, wj in zip(row, w)) + b0
                r = min(max(r, -30.0), 30.0)
                reo.append((-math.log1p(math.exp(-r)), -math.log1p(math.exp(r))))
        path = viterbi_reference(ems, self.logA.tolist(), self.logpi.tolist(), reo)
        for i, (u, s) in enumerate(zip(utterances, path)):
            u.phase = PHASES[s]
            logits, cols, ctx = all_logits[i]
            pa = self.W_pa[s + 4 * (speakers[i] != 0)]
            logits = [logits[k] + pa[k] for k in range(NA)]
            acts = [a for k, a in enumerate(ACTS) if self.roles[speakers[i], k] and logits[k] > self.thr_logit[k]]
            if auxes[i]["n_tokens"] == 0:
                acts = []
            if "backchannel" in acts:
                others = [logits[ACTS.index(a)] for a in acts if a != "backchannel"]
                acts = ["backchannel"] if not others or logits[BC] >= max(others) else [a for a in acts if a != "backchannel"]
            if "what_more" in acts and "closed_question" in acts:
                acts.remove("closed_question")
            u.acts = acts
            u.evidence = {a: self._evidence_ref(cols, ctx, ACTS.index(a)) for a in acts}
        return summarise_reference(utterances)

    # ------------------------------------------------------------------ internals
    def act_probs(self, b: Batch) -> np.ndarray:
        """``(N, 17)`` act probabilities of a first-pass (unstacked) model, as used for stacking."""
        if self.stacked:
            raise TaggerError("act_probs is the first pass of an unstacked model")
        Xt, aux = self.fs.text_block(b.texts)
        C = self.fs.context_block(b, aux)
        L = np.asarray(Xt @ self.W_text[:, :NA])[b.text_code] + C @ self.W_ctx[:, :NA] + self.bias[:NA]
        return self._first_pass(L, b, aux)

    def _first_pass(self, L1: np.ndarray, b: Batch, aux) -> np.ndarray:
        """First-pass act probabilities; 0 where the speaker may not carry the act or there are no words."""
        P1 = expit(np.clip(L1, -30.0, 30.0))  # = 1 / (1 + exp(-x)) bit for bit, in one pass
        P1 *= self.roles[b.spk.astype(np.int64)]
        P1[aux["n_tokens"][b.text_code] == 0] = 0.0
        return P1

    def _reopen(self, b: Batch, aux, S: np.ndarray | None = None) -> np.ndarray | None:
        """``(N, 2)``: log P(reopen at this utterance), log P(no reopen).

        ``S`` holds the stacked first-pass values of :data:`REOPEN_STACK` (stacked models).
        """
        if self.W_reopen is None:
            return None
        R = self.fs.reopen_block(b, aux)
        if self.stacked:
            R = np.hstack([R, S])
        r = R @ self.W_reopen[:-1] + self.W_reopen[-1]
        r = np.clip(r, -30.0, 30.0)
        return np.column_stack([-np.log1p(np.exp(-r)), -np.log1p(np.exp(r))])

    def _decide_acts(self, L: np.ndarray, spk: np.ndarray) -> np.ndarray:
        pred = L > self.thr_logit
        pred &= self.roles[spk.astype(np.int64)]
        # A backchannel holds only minimal responses: it wins alone or goes.
        cand = np.flatnonzero(pred[:, BC])
        if len(cand):
            pc = pred[cand]
            others = np.where(pc, L[cand], -np.inf)
            others[:, BC] = -np.inf
            wins = L[cand, BC] >= others.max(axis=1)
            pc[wins] = False
            pc[wins, BC] = True
            pc[:, BC] = wins
            pred[cand] = pc
        pred[:, CQ] &= ~pred[:, WM]  # a what-more question is not also a closed question
        return pred

    def _decide_torch(self, Xt, C, b: Batch, aux):
        import torch

        dev = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        import warnings

        Xc = Xt.tocsr()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the product we use is stable
            warnings.simplefilter("ignore", UserWarning)
            X = torch.sparse_csr_tensor(torch.as_tensor(Xc.indptr, dtype=torch.int64),
                                        torch.as_tensor(Xc.indices, dtype=torch.int64),
                                        torch.as_tensor(Xc.data), size=Xc.shape, device=dev)
        tc = torch.as_tensor(b.text_code, device=dev)
        Ct = torch.as_tensor(C, device=dev)
        reo_C = None
        if self.stacked:
            L1 = (X @ torch.as_tensor(self.W1_text, device=dev))[tc] + Ct @ torch.as_tensor(self.W1_ctx, device=dev) \
                + torch.as_tensor(self.b1, device=dev)
            P1 = 1.0 / (1.0 + torch.exp(-L1.clamp(-30.0, 30.0)))
            P1 = P1 * torch.as_tensor(self.roles, device=dev)[torch.as_tensor(b.spk.astype(np.int64), device=dev)]
            P1[torch.as_tensor(aux["n_tokens"][b.text_code] == 0, device=dev)] = 0.0
            ext = torch.cat([P1, torch.zeros((1, NA), dtype=P1.dtype, device=dev)])
            S = ext[torch.as_tensor(stack_index(b), device=dev)].reshape(b.n, -1)
            Ct = torch.cat([Ct, S], dim=1)
            reo_C = S[:, self._reo_cols].cpu().numpy()
        text_logits = X @ torch.as_tensor(self.W_text, device=dev)
        L = text_logits[tc] + Ct @ torch.as_tensor(self.W_ctx, device=dev) + torch.as_tensor(self.bias, device=dev)
        em = torch.log_softmax(L[:, NA:], dim=1)
        phase = viterbi_batch_torch(em, b.offsets, self.logA, self.logpi, device=dev, reopen=self._reopen(b, aux, reo_C))
        pa_row = torch.as_tensor(phase.astype(np.int64) + 4 * (b.spk != 0), device=dev)
        La = L[:, :NA] + torch.as_tensor(self.W_pa, device=dev)[pa_row]
        roles = torch.as_tensor(self.roles, device=dev)[torch.as_tensor(b.spk.astype(np.int64), device=dev)]
        pred = (La > torch.as_tensor(self.thr_logit, device=dev)) & roles
        others = torch.where(pred, La, torch.tensor(-math.inf, dtype=La.dtype, device=dev))
        others[:, BC] = -math.inf
        bc_wins = pred[:, BC] & (La[:, BC] >= others.max(dim=1).values)
        pred[bc_wins] = False
        pred[bc_wins, BC] = True
        pred[:, BC] &= bc_wins
        pred[:, CQ] &= ~pred[:, WM]
        return pred.cpu().numpy(), phase, Ct.cpu().numpy()

    def evidence(self, b: Batch, out: dict):
        """Cue of every predicted act: the text feature that pushed hardest, else the context feature.

        Returns ``rows, cols, names`` aligned with ``np.nonzero(out["acts"])``.
        """
        rows, cols = np.nonzero(out["acts"])
        return rows, cols, out["ev_names"]

    def _text_evidence(self, Xt) -> "TextEvidence":
        """Per unique text and act: column of the best positive n-gram (family weight folded in) or flag, else -1
        (computed on demand, for the (text, act) pairs that are predicted)."""
        nv, nf = len(self.fs.vocab), len(self.fs.fam_names)
        Xe = Xt[:, list(range(nv)) + list(range(nv + nf, self.fs.n_ev))].tocsr()
        W = np.vstack([self.W_ev, self.W_text[nv + nf:self.fs.n_ev, :NA]])
        return TextEvidence(Xe, W)

    def _evidence_names(self, b: Batch, acts: np.ndarray, ctx_rows, best: np.ndarray) -> np.ndarray:
        """Evidence of every predicted act (row-major) as ids into ``_all_names``;
        ``ctx_rows(rows)`` gives full context rows."""
        rows, cols = np.nonzero(acts)  # row-major: per row, acts in ACTS order
        ev = best(b.text_code[rows], cols)
        need = ev < 0
        if need.any():
            cc = (ctx_rows(rows[need]) * self.W_ctx[:, cols[need]].T).argmax(axis=1)
            ev[need] = len(self._ev_names_arr) + cc
        return ev

    def _evidence_ref(self, cols: list[int], ctx: list[float], a: int) -> str:
        nv, nf = len(self.fs.vocab), len(self.fs.fam_names)
        best, arg = 0.0, None
        for c in cols:
            if c < nv:
                w, name = self.W_ev[c, a], self.ev_names[c]
            elif nv + nf <= c < self.fs.n_ev:
                w, name = self.W_text[c, a], self.ev_names[c - nf]
            else:
                continue
            if w > best:
                best, arg = w, name
        if arg is not None:
            return arg
        contrib = [v * self.W_ctx[j, a] for j, v in enumerate(ctx)]
        return "context:" + self.ctx_names[int(np.argmax(contrib))]

    def distinct_rows(self, out: dict) -> tuple[np.ndarray, list, list, list]:
        """Group the rows of a :meth:`tag_batch` result by (act set, evidence, phase).

        Returns ``inv`` (each row's group) and, per group, its acts tuple, its
        evidence dict (act → cue) and its phase name. Real archives have few
        distinct groups, so per-row output is a lookup instead of new objects.
        """
        acts, phase, ev = out["acts"], out["phase"], out["ev_ids"]
        # act set as a bit code: packbits is ~5x cheaper than an int64 matrix product
        packed = np.packbits(acts, axis=1, bitorder="little").astype(np.int64)
        codes = np.zeros(len(acts), dtype=np.int64)
        for j in range(packed.shape[1]):
            codes |= packed[:, j] << (8 * j)
        n_acts = np.count_nonzero(acts, axis=1)
        M = len(self._all_names) + 1
        k = int(n_acts.max()) if len(n_acts) else 0
        E = np.zeros((len(codes), k), dtype=np.int64)  # evidence ids + 1 per act slot, 0 = none
        if k:
            E[np.repeat(np.arange(len(codes)), n_acts), np.arange(len(ev)) - np.repeat(np.cumsum(n_acts) - n_acts, n_acts)] = ev + 1
        inv = pd.factorize(codes * 4 + phase)[0]
        for j in range(k):  # refine the row key one evidence slot at a time (exact, never overflows)
            inv = pd.factorize(inv * M + E[:, j])[0]
        first = np.full(int(inv.max()) + 1 if len(inv) else 0, len(inv), dtype=np.int64)
        np.minimum.at(first, inv, np.arange(len(inv)))  # first row of each group (no sort)
        labels, evs, phs = [], [], []
        for r in first.tolist():
            lab = tuple(a for j, a in enumerate(ACTS) if acts[r, j])
            labels.append(lab)
            evs.append({a: self._all_names[e - 1] for a, e in zip(lab, E[r].tolist())})
            phs.append(PHASES[phase[r]])
        return inv, labels, evs, phs

    def _write_back(self, calls, b: Batch, out: dict) -> None:
        # Build each distinct (act set, evidence, phase) row once, then per utterance
        # only copy a list and a dict and store three attributes (C-level loops).
        inv, labels, evs, phs = self.distinct_rows(out)
        inv = inv.tolist()
        flat = [u for c in calls for u in c]
        deque(map(setattr, flat, repeat("acts"), map(list, map(labels.__getitem__, inv))), maxlen=0)
        deque(map(setattr, flat, repeat("phase"), map(phs.__getitem__, inv)), maxlen=0)
        deque(map(setattr, flat, repeat("evidence"), map(dict.copy, map(evs.__getitem__, inv))), maxlen=0)


class TextEvidence:
    """Best evidence column per (distinct text, act): the n-gram or flag with the largest positive
    contribution ``x * W[col, act]`` (ties to the lowest column), -1 if none.

    Computed only for the pairs asked for and remembered: real ASR archives have about
    one distinct text per utterance, and only the ~1 act predicted per utterance needs
    its cue, so scoring every text against all 17 acts up front would be ~17x the work.
    """

    UNKNOWN = -2

    def __init__(self, Xe, W: np.ndarray):
        self.indptr, self.indices, self.data = Xe.indptr.astype(np.int64), Xe.indices.astype(np.int64), Xe.data
        self.W = W
        self.memo = np.full((Xe.shape[0], W.shape[1]), self.UNKNOWN, dtype=np.int32)

    def __call__(self, t: np.ndarray, a: np.ndarray) -> np.ndarray:
        t, a = np.asarray(t, dtype=np.int64), np.asarray(a, dtype=np.int64)
        ask = self.memo[t, a] == self.UNKNOWN
        if ask.any():
            self._fill(np.unique(t[ask] * self.W.shape[1] + a[ask]))
        return self.memo[t, a].astype(np.int64)

    def _fill(self, keys: np.ndarray) -> None:
        na = self.W.shape[1]
        ut, ua = keys // na, keys % na
        lens = self.indptr[ut + 1] - self.indptr[ut]
        res = np.full(len(keys), -1, dtype=np.int64)
        has = lens > 0
        if has.any():
            ht, ha, hl = ut[has], ua[has], lens[has]
            seg = np.cumsum(hl) - hl  # where each pair's run starts in the expanded arrays
            idx = np.repeat(self.indptr[ht] - seg, hl) + np.arange(int(hl.sum()))
            cols = self.indices[idx]
            contrib = self.data[idx] * self.W[cols, np.repeat(ha, hl)]
            top = np.maximum.reduceat(contrib, seg)
            none = np.iinfo(np.int64).max
            low = np.minimum.reduceat(np.where((contrib == np.repeat(top, hl)) & (contrib > 0), cols, none), seg)
            res[has] = np.where(low == none, -1, low)
        self.memo[ut, ua] = res


def _call_chunks(offsets: np.ndarray, rows: int):
    """``(c0, c1)`` call ranges of about ``rows`` utterances each (at least one call)."""
    B = len(offsets) - 1
    c0 = 0
    while c0 < B:
        c1 = int(np.searchsorted(offsets, offsets[c0] + rows, side="right")) - 1
        c1 = min(max(c1, c0 + 1), B)
        yield c0, c1
        c0 = c1


STACK_SHIFTS = tuple(int(s) for s in STACK_SLOTS[1:-1])  # -1, +1, -2, +2 (slot 0 = this row, last = prev_same)
assert STACK_SLOTS[0] == "0" and STACK_SLOTS[-1] == "prev_same"


def _prev_same_speaker(b: Batch, i: np.ndarray) -> np.ndarray:
    """Row of the same speaker's previous utterance in the call, -1 when there is none."""
    n = b.n
    rows = np.arange(n)
    prev = np.full(n, -1, dtype=np.int64)
    for code in np.unique(b.spk):
        m = b.spk == code
        last = np.maximum.accumulate(np.where(m, rows, -1))
        prev[1:][m[1:]] = last[:-1][m[1:]]
    prev[prev < rows - i] = -1  # not in this call
    return prev


def _stack_fill(P1: np.ndarray, b: Batch) -> np.ndarray:
    """:func:`~speechpipe.tagging.features.stack_block`, with the slot rows found by shifts
    (this row, ±1, ±2 within the call; the same speaker's previous one) and one ``take``."""
    n, na = P1.shape
    lens = np.diff(b.offsets)
    rows = np.arange(n)
    idx = np.empty((n, len(STACK_SLOTS)), dtype=np.int64)
    idx[:, 0] = rows
    starts, ends = b.offsets[:-1][lens > 0], b.offsets[1:][lens > 0]
    for j, k in enumerate(STACK_SHIFTS):
        col = idx[:, j + 1]
        np.add(rows, k, out=col)
        # the first -k (last k) rows of each call have no such neighbour: point them at the zero row
        edge = np.concatenate([starts + d for d in range(-k)] if k < 0 else [ends - 1 - d for d in range(k)])
        col[edge[(edge >= 0) & (edge < n)]] = n
    prev = _prev_same_speaker(b, b.row_in_call())
    idx[:, -1] = np.where(prev >= 0, prev, n)
    ext = np.empty((n + 1, na))
    ext[:n] = P1
    ext[n] = 0.0
    return np.take(ext, idx, axis=0).reshape(n, -1)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of a narrow ``(N, k)`` array, column by column (no short inner loops);
    the sum runs left to right as in the reference."""
    cols = [x[:, j] for j in range(x.shape[1])]
    m = cols[0]
    for c in cols[1:]:
        m = np.maximum(m, c)
    se = np.exp(cols[0] - m)
    for c in cols[1:]:
        se += np.exp(c - m)
    lse = m + np.log(se)
    return np.column_stack([c - lse for c in cols])


# ---------------------------------------------------------------------- summaries


def _r(x, nd=3):
    return None if x is None else round(float(x), nd)


def summarise_reference(utterances) -> dict:
    """Call measures of ``annotation-guide.md`` from tagged utterances (plain Python)."""
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
        amount = {s: sum(len(normalise_tokens(u.text or "")) for u, x in zip(utterances, spk) if x == s) for s in present}
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


def summarise_batch(b: Batch, acts: np.ndarray, phase: np.ndarray, n_tokens_text: np.ndarray) -> list[dict]:
    """:func:`summarise_reference` for every call of a batch, with array reductions."""
    m = call_measures(b, acts, phase, n_tokens_text)
    B, big = len(b.offsets) - 1, BIG
    lens, reo, emp, info, emo, nxt, wm, timed, t0, t1 = (m[k] for k in ("lens", "reo", "emp", "info", "emo", "nxt", "wm",
                                                                          "timed", "t0", "t1"))
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


# ---------------------------------------------------------------------- loading


def load_tagger(path: str | Path | None = None, backend: str = "numpy", device: str | None = None) -> Tagger:
    """Load the shipped tagger (``models/tagger-v2.json`` + ``.npz``) or the one at ``path``.

    ``path`` may be the JSON file, the NPZ file, or their common stem.
    """
    p = Path(path) if path else MODEL_DIR / MODEL_STEM
    stem = p.with_suffix("") if p.suffix in (".json", ".npz") else p
    js, nz = stem.with_suffix(".json"), stem.with_suffix(".npz")
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
        with np.load(nz) as z:
            arrays = {k: z[k] for k in ("W_text", "W_ctx", "bias")}
            arrays.update({k: z[k] for k in ("W_reopen", "W_phase_act", "W1_text", "W1_ctx", "b1") if k in z})  # absent in older models
    except (OSError, ValueError, KeyError) as e:
        raise TaggerError(f"cannot load tagger model {stem}.json/.npz: {e}") from e
    return Tagger(meta, arrays, backend=backend, device=device)
