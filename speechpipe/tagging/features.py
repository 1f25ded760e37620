"""Features of the tagger: a text block (per unique text) and a context block (per utterance).

The text block is n-grams, cue families (:data:`~speechpipe.tagging.text.CUE_FAMILIES`),
punctuation/shouting flags and length; it depends only on the text, so a batch
computes it once per *unique* text. The context block is small and dense:
speaker, question form (``?`` or a rising pitch from the prosody stage), position
in the call, neighbours. Scores are then ``text_logits[text_code] + ctx @ W_ctx``.

Every function here has a vectorised form (:meth:`FeatureSpace.text_block`,
:meth:`FeatureSpace.context_block`) and a plain per-utterance form
(:meth:`FeatureSpace.text_features_ref`, :meth:`FeatureSpace.context_ref`);
tests check that they agree.

Examples
--------
>>> fs = FeatureSpace(["ja", "<s> ja </s>"])
>>> b = encode_calls([[("counsellor", "Hei!"), ("caller", "Ja.")]])
>>> Xt, aux = fs.text_block(b.texts)
>>> fs.context_block(b, aux).shape == (2, len(fs.ctx_names))
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from speechpipe.tagging.text import (
    CUE_FAMILIES,
    FAMILY_PAIRS,
    MINIMAL,
    NgramIndex,
    normalise_tokens,
    text_char_grams,
    text_flags_reference,
    text_ngram_matrix,
    word_features,
)

SPK = ("counsellor", "caller", "other", "unknown")
SPK_CODE = {s: i for i, s in enumerate(SPK)}
LEN_BINS = (0, 1, 2, 3, 5, 9)  # lower edges: 0, 1, 2, 3–4, 5–8, 9+
N_POS = 10
LATE_FAMILIES = ("greeting", "what_more", "summary", "thanks", "new_topic", "handover", "hold", "contract",
                 "info", "emotion", "request", "closed_q", "open_q")
# Reopen cues: a return to mapping after solution/closing (the hourglass) is scored
# per utterance from these, and the score sets that utterance's reopen transition.
REOPEN_NAMES = ("new_topic", "topic_shift", "handover", "request", "emotion", "decline", "goodbye", "minimal", "long",
                "question", "caller", "other", "first_other", "other_after_non_other", "spk_change", "late",
                "prev_what_more", "prev2_what_more", "prev_summary", "prev2_summary", "wm_then_not_decline",
                "summary_then_caller_words")
TOPIC_WINDOWS = (2, 5, 9)
# Reopen rule (round 5): the guide's hourglass reopens when a caller or a new voice raises a new topic, hands the phone
# over, or answers a what-more, a summary or a goodbye. A reopening may start only at an utterance by a non-counsellor
# with a new-topic or handover cue of its own, by the first 'other' voice, or one or two rows after one of these.
REOPEN_AFTER = ("what_more", "summary", "greeting", "thanks")
EXCERPT_ROWS = 3  # a "call" this short is an excerpt (quoted utterances), not a call: no position features
# "within the last N rows of the call": closings are short and come last
# (a new-topic/handover cue by a non-counsellor this many rows back or fewer)
END_ROWS = (3, 6, 10)
# Neighbour context (tagger-v3.1): the cue families of the previous and the next utterance when the other party
# speaks there (a caller's distress before an acknowledgement, a counsellor's «jeg skjønner» after an emotion).
# Context only: they move a probability, never count as evidence of an act.
NBR_FAMILIES = ("emotion", "cope_neg", "complaint", "swear", "relief", "request", "open_q", "closed_q", "info", "news",
                "exclaim", "acknowledge", "agree", "hold", "referral", "summary")
# neighbours=2 (round 5): also the other party's new topic, handover, what-more and goodbye next to an utterance (the
# summary or what-more that a new topic answers is closing; the rows after a new topic are mapping again)
NBR_FAMILIES_2 = NBR_FAMILIES + ("new_topic", "handover", "what_more", "greeting")
# A short utterance that starts with «NAV» («NAV, Kari.», «NAV, Mats her.», «NAV Kontaktsenter, Camilla.») is how NKS
# answers the phone: it counts as a greeting word (round 4). Longer ones («NAV har ikke fått søknaden») do not.
PHONE_OPEN = "phone_open"
PHONE_OPEN_MAX = 3
TEXT_EXTRA = ("qmark", "excl", "shout", *(f"len>={b}" for b in LEN_BINS), "all_minimal", "short_minimal",
              *(f"cue:{a}+{b}" for a, b in FAMILY_PAIRS))


@dataclass
class Batch:
    """Columnar view of many calls: one row per utterance, calls back to back.

    ``texts`` holds each distinct text once; ``text_code[i]`` points into it.
    ``offsets[c]:offsets[c+1]`` are the rows of call ``c``. Times are NaN when unknown.
    """

    texts: list
    text_code: np.ndarray
    spk: np.ndarray
    rise: np.ndarray
    start: np.ndarray
    end: np.ndarray
    offsets: np.ndarray
    acoustic: np.ndarray | None = None  # short turn found acoustically (prosody["acoustic_backchannel"]); None = none

    def acoustic_flags(self) -> np.ndarray:
        return np.zeros(self.n, dtype=bool) if self.acoustic is None else self.acoustic

    @property
    def n(self) -> int:
        return len(self.text_code)

    def call_index(self) -> np.ndarray:
        """Call number of each row."""
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))

    def calls_slice(self, c0: int, c1: int) -> "Batch":
        """Calls ``c0:c1`` as a batch (views; ``texts`` shared, so text codes stay valid)."""
        r0, r1 = self.offsets[c0], self.offsets[c1]
        return Batch(self.texts, self.text_code[r0:r1], self.spk[r0:r1], self.rise[r0:r1], self.start[r0:r1],
                     self.end[r0:r1], self.offsets[c0:c1 + 1] - r0,
                     None if self.acoustic is None else self.acoustic[r0:r1])

    def row_in_call(self) -> np.ndarray:
        return np.arange(self.n) - np.repeat(self.offsets[:-1], np.diff(self.offsets))


def encode_calls(calls) -> Batch:
    """Turn ``list[list[Utterance]]`` into a :class:`Batch` (the only pass over objects).

    One list comprehension per attribute (attribute reads in a tight C-level loop),
    texts deduplicated with a dict; ``(speaker, text)`` tuples are accepted too.
    """
    flat = [u for c in calls for u in c]
    n = len(flat)
    offsets = np.zeros(len(calls) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(c) for c in calls])
    if flat and isinstance(flat[0], tuple):
        text = [u[1] for u in flat]
        speaker = [u[0] for u in flat]
        rise = start = end = acoustic = None
    else:
        text = [u.text for u in flat]
        speaker = [u.speaker for u in flat]
        rise = np.array([u.intonation for u in flat], dtype=object) == "rise"
        start = [u.start for u in flat]
        end = [u.end for u in flat]
        # the acoustic short-turn flag of the turns stage (another helper's; absent → False)
        acoustic = [u.prosody.get("acoustic_backchannel", False) if u.prosody else False for u in flat]
        acoustic = np.array(acoustic, dtype=bool) if any(acoustic) else None
    # speaker codes by comparing an object array with each role (C loops), unknown = 3
    sp_arr = np.array(speaker, dtype=object)
    spk = np.full(n, 3, dtype=np.int8)
    for k, role in enumerate(SPK[:3]):
        spk[sp_arr == role] = k
    # Dedupe texts: a dict keeps first-seen order; None reads as "".
    ids: dict = {}
    codes = [ids.setdefault(t, len(ids)) for t in text]
    uniq = ["" if t is None else t for t in ids]
    return Batch(
        uniq,
        np.array(codes, dtype=np.int64),
        spk,
        np.asarray(rise, dtype=bool) if rise is not None else np.zeros(n, dtype=bool),
        _times(start, n),
        _times(end, n),
        offsets,
        acoustic,
    )


def _times(values, n: int) -> np.ndarray:
    """Float array of start or end times, None → NaN (untimed transcripts are all None: no per-item conversion)."""
    if values is None or values.count(None) == n:
        return np.full(n, np.nan)
    return np.array(values, dtype=np.float64)


class FeatureSpace:
    """Column layout of both blocks, fixed by the n-gram vocabulary of a trained model."""

    def __init__(self, vocab: list[str], families: dict[str, list[str]] | None = None, end_features: bool = False,
                 chars: list[str] | None = None, emb_dim: int = 0, excerpt: bool = False, embedder=None,
                 emb_proj: tuple | None = None, neighbours: bool = False, nbr_emb: int = 0,
                 long_phrases: bool = False):
        self.families = dict(families if families is not None else CUE_FAMILIES)
        fam_phrases = sorted({p for ps in self.families.values() for p in ps})
        # A family phrase of more than three tokens («og så var det») is no n-gram (trigrams at most): with
        # long_phrases (round 4) it matches when all its trigrams occur; before, it never matched.
        self.long_phrases = long_phrases
        long = [p for p in fam_phrases if len(p.split()) > 3] if long_phrases else []
        parts = {p: [" ".join(t[i:i + 3]) for i in range(len(t) - 2)] for p in long for t in [p.split()]}
        # Family phrases (and the trigrams of long ones) are always n-gram columns, even when unseen in training.
        self.vocab = list(dict.fromkeys([*vocab, *fam_phrases, *(g for p in long for g in parts[p])]))
        self.col = {g: i for i, g in enumerate(self.vocab)}
        self.index = NgramIndex(self.vocab)
        self.fam_names = list(self.families)
        rows, cols = [], []
        for f, name in enumerate(self.fam_names):
            for p in self.families[name]:
                rows.append(self.col[p])
                cols.append(f)
        self.fam_matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)),
                                        shape=(len(self.vocab), len(self.fam_names)))
        self.fam_col = {n: i for i, n in enumerate(self.fam_names)}
        # long phrases: (vocab × phrase) trigram counts, trigrams needed, (phrase × family)
        self._long_parts = [[self.col[g] for g in parts[p]] for p in long]
        r = [c for cs in self._long_parts for c in cs]
        k = [j for j, cs in enumerate(self._long_parts) for _ in cs]
        self._long_matrix = sp.csr_matrix((np.ones(len(r)), (r, k)), shape=(len(self.vocab), len(long)))
        self._long_need = np.array([len(cs) for cs in self._long_parts], dtype=np.float64)
        lf = [(j, self.fam_col[f]) for j, p in enumerate(long) for f in self.fam_names if p in self.families[f]]
        self._long_fam = np.zeros((len(long), len(self.fam_names)), dtype=bool)
        for j, f in lf:
            self._long_fam[j, f] = True
        # Character n-grams (tagger-v3) come last in the text block: [n-grams | families | flags | chars].
        self.chars = list(chars or [])
        self.char_col = {g: i for i, g in enumerate(self.chars)}
        # Sentence embeddings (tagger-v3) are the very last text columns: [… | chars | embedding].
        self.emb_dim = int(emb_dim)
        self.embedder = embedder  # callable texts → (n, 384), set by the Tagger when emb_dim > 0
        # (mean, P): the embeddings are centred and projected on their first emb_dim principal axes, whitened
        # (fitted on the training texts), so a few dense columns carry them and the solver stays fast
        self.emb_proj = emb_proj
        self.text_names = [*self.vocab, *(f"cue:{f}" for f in self.fam_names), *TEXT_EXTRA,
                           *(f"chr:{g}" for g in self.chars), *(f"emb:{k}" for k in range(self.emb_dim))]
        self.n_sparse = len(self.text_names) - self.emb_dim
        # text columns that may name evidence (not chars, embeddings)
        self.n_ev = len(self.text_names) - len(self.chars) - self.emb_dim
        self.ctx_names = [
            *(f"spk:{s}" for s in SPK), "q_utt", *(f"pos:{k}" for k in range(N_POS)), "first", "last2",
            "prev_same", "next_same", "prev_q_other", "minimal_after_q", "prev_what_more", "other_first",
            *(f"late:{f}" for f in LATE_FAMILIES),
            *(f"late_topic_cue_within:{w}" for w in TOPIC_WINDOWS),
        ]
        # Position from the end and a goodbye/thanks in the two rows around (for the closing).
        self.end_features = end_features
        if end_features:
            self.ctx_names += [*(f"last_rows:{r}" for r in END_ROWS), "bye_near", "bye_near_late"]
        self.neighbours = neighbours
        self._nbr_at = len(self.ctx_names)
        self._nbr_names = NBR_FAMILIES_2 if neighbours == 2 else NBR_FAMILIES  # True (== 1): the round-3.1 list
        if neighbours:
            self._nbr_fam = [self.fam_col[f] for f in self._nbr_names]
            self.ctx_names += [*(f"prev_other:{f}" for f in self._nbr_names),
                               *(f"next_other:{f}" for f in self._nbr_names)]
        # the first nbr_emb projected embedding axes of the previous utterance when the other party said it
        self.nbr_emb = min(int(nbr_emb), self.emb_dim)
        self._nbr_emb_at = len(self.ctx_names)
        self.ctx_names += [f"prev_other_emb:{k}" for k in range(self.nbr_emb)]
        # An excerpt (a call of at most EXCERPT_ROWS utterances: a pasted quote) has no position in a call:
        # its position, first/last and late-in-call features are off and this flag is on.
        self.excerpt = excerpt
        if excerpt:
            self.ctx_names.append("excerpt")
            self._pos_cols = [j for j, c in enumerate(self.ctx_names)
                              if c.startswith(("pos:", "late:", "late_topic", "last_rows:", "bye_near"))
                              or c in ("first", "last2")]
        self.n_text = len(self.text_names)
        self.n_ctx = len(self.ctx_names)

    def embed(self, texts) -> np.ndarray:
        """Sentence embeddings ``(len(texts), emb_dim)`` as float64 (computed once per distinct text upstream)."""
        if self.embedder is None:
            raise RuntimeError("this feature space needs sentence embeddings but has no embedder")
        if len(texts) == 0:
            return np.zeros((0, self.emb_dim))
        E = np.asarray(self.embedder(list(texts)), dtype=np.float64).reshape(len(texts), -1)
        if self.emb_proj is not None:
            mean, P = self.emb_proj
            E = (E - mean) @ P
        return E

    # -- vectorised ---------------------------------------------------------
    def text_block(self, texts):
        """Sparse text features of each text, plus what the context block needs from them."""
        if self.chars:
            Xn, flags, ntok, nmin, Xc = text_ngram_matrix(texts, self.index, self.char_col)
        else:
            Xn, flags, ntok, nmin = text_ngram_matrix(texts, self.index)
        fam = (Xn @ self.fam_matrix) > 0
        fam = np.asarray(fam.todense()) if sp.issparse(fam) else np.asarray(fam)
        if len(self._long_need):  # a long phrase needs all its trigrams
            hit = np.asarray((Xn @ self._long_matrix).todense()) >= self._long_need
            fam |= (hit.astype(np.float64) @ self._long_fam) > 0
        if PHONE_OPEN in self.fam_col:  # «NAV, Kari.»: how NKS answers the phone is a greeting (round 4)
            fam[:, self.fam_col["greeting"]] |= fam[:, self.fam_col[PHONE_OPEN]] & (ntok <= PHONE_OPEN_MAX)
        lens = np.stack([ntok >= b for b in LEN_BINS], axis=1)
        all_min = (ntok > 0) & (nmin == ntok)
        short_min = (ntok > 0) & (ntok <= 3) & (nmin >= ntok - 1)
        fc = self.fam_col
        pairs = [fam[:, fc[a]] & fam[:, fc[b]] for a, b in FAMILY_PAIRS]
        extra = np.column_stack([flags, lens, all_min, short_min, *pairs]).astype(np.float64)
        blocks = [Xn, sp.csr_matrix(fam.astype(np.float64)), sp.csr_matrix(extra)] + ([Xc] if self.chars else [])
        E = self.embed(texts) if self.emb_dim else None
        if E is not None:
            blocks.append(sp.csr_matrix(E))
        Xt = sp.hstack(blocks, format="csr")
        fc = self.fam_col
        qlike = flags[:, 0] | fam[:, fc["open_q"]] | fam[:, fc["closed_q"]]
        aux = {"qmark": flags[:, 0], "qlike": qlike, "all_min": all_min, "fam": fam, "n_tokens": ntok}
        if self.nbr_emb:
            aux["emb"] = E[:, :self.nbr_emb]
        return Xt, aux

    def context_block(self, b: Batch, aux) -> np.ndarray:
        """Dense context features, one row per utterance of the batch."""
        n = b.n
        C = np.zeros((n, self.n_ctx), dtype=np.float64, order="F")  # filled column by column
        if n == 0:
            return C
        tc = b.text_code
        spk = b.spk.astype(np.int64)
        C[np.arange(n), spk] = 1.0
        q_utt = aux["qmark"][tc] | b.rise
        C[:, 4] = q_utt
        lens = np.diff(b.offsets)
        i = b.row_in_call()
        ncall = np.repeat(lens, lens)
        pos = np.minimum((N_POS * i) // ncall, N_POS - 1)
        C[np.arange(n), 5 + pos] = 1.0
        k = 5 + N_POS
        first = i == 0
        last = i == ncall - 1
        C[:, k] = first
        C[:, k + 1] = i >= ncall - 2
        prev_spk = np.roll(spk, 1)
        next_spk = np.roll(spk, -1)
        prev_same = ~first & (prev_spk == spk)
        C[:, k + 2] = prev_same
        C[:, k + 3] = ~last & (next_spk == spk)
        qlike = (aux["qlike"][tc] | b.rise)
        prev_q_other = ~first & ~prev_same & np.roll(qlike, 1)
        C[:, k + 4] = prev_q_other
        C[:, k + 5] = prev_q_other & aux["all_min"][tc]
        wm = aux["fam"][:, self.fam_col["what_more"]][tc]
        C[:, k + 6] = ~first & ~prev_same & np.roll(wm, 1)
        is_other = spk == 2
        # first 'other' row of its call: running count within the call reaches 1
        cum = np.cumsum(is_other)
        before = np.repeat(np.concatenate(([0], cum))[b.offsets[:-1]], lens)
        C[:, k + 7] = is_other & (cum - before == 1)
        late = (2 * i >= ncall)
        fam = aux["fam"][tc]
        for j, f in enumerate(LATE_FAMILIES):
            C[:, k + 8 + j] = late & fam[:, self.fam_col[f]]
        # A late new topic (or a new voice) opens a stretch of mapping: mark the rows after it.
        cue = (spk != 0) & (fam[:, self.fam_col["new_topic"]] | fam[:, self.fam_col["handover"]]) & late
        cs = np.concatenate(([0], np.cumsum(cue)))
        call_start = np.repeat(b.offsets[:-1], lens)
        rows = np.arange(n)
        k2 = k + 8 + len(LATE_FAMILIES)
        for j, w in enumerate(TOPIC_WINDOWS):
            lo = np.maximum(rows - w, call_start)
            C[:, k2 + j] = (cs[rows + 1] - cs[lo]) > 0
        if self.end_features:
            k3 = k2 + len(TOPIC_WINDOWS)
            from_end = ncall - 1 - i
            for j, r in enumerate(END_ROWS):
                C[:, k3 + j] = from_end < r
            bye = fam[:, self.fam_col["greeting"]] | fam[:, self.fam_col["thanks"]]
            near = np.zeros(n, dtype=bool)
            for d in (-2, -1, 0, 1, 2):
                ok = (i + d >= 0) & (i + d < ncall)
                near[ok] |= bye[rows[ok] + d]
            C[:, k3 + len(END_ROWS)] = near
            C[:, k3 + len(END_ROWS) + 1] = near & late
        if self.neighbours:
            nf, k4 = len(self._nbr_names), self._nbr_at
            fn = fam[:, self._nbr_fam]
            C[:, k4:k4 + nf] = np.roll(fn, 1, axis=0) & (~first & ~prev_same)[:, None]
            C[:, k4 + nf:k4 + 2 * nf] = np.roll(fn, -1, axis=0) & (~last & (next_spk != spk))[:, None]
        if self.nbr_emb:
            k5 = self._nbr_emb_at
            C[:, k5:k5 + self.nbr_emb] = np.roll(aux["emb"][tc], 1, axis=0) * (~first & ~prev_same)[:, None]
        if self.excerpt:
            ex = ncall <= EXCERPT_ROWS
            if ex.any():
                C[np.ix_(np.flatnonzero(ex), self._pos_cols)] = 0.0
                C[:, -1] = ex
        return C

    def reopen_cue(self, b: Batch, aux) -> np.ndarray:
        """``(N,)`` bool: may a reopening start at this utterance (:data:`REOPEN_AFTER`)?"""
        fam, fc, i, spk = aux["fam"][b.text_code], self.fam_col, b.row_in_call(), b.spk.astype(np.int64)
        cum = np.cumsum(spk == 2)  # the first 'other' row of its call: the running count within the call reaches 1
        first_other = (spk == 2) & (cum - np.repeat(np.concatenate(([0], cum))[b.offsets[:-1]], np.diff(b.offsets)) < 2)
        after = fam[:, [fc[f] for f in REOPEN_AFTER]].any(axis=1)
        prev = (np.roll(after, 1) & (i >= 1)) | (np.roll(after, 2) & (i >= 2))
        return (spk != 0) & (fam[:, fc["new_topic"]] | fam[:, fc["handover"]] | first_other | prev)

    def reopen_cue_ref(self, speakers: list[int], auxes: list[dict], i: int) -> bool:
        """:meth:`reopen_cue` of utterance ``i`` of one call (plain Python)."""
        fc = self.fam_col
        f = auxes[i]["fam"]
        own = f[fc["new_topic"]] or f[fc["handover"]] or (speakers[i] == 2 and 2 not in speakers[:i])
        prev = any(auxes[r]["fam"][fc[x]] for r in range(max(0, i - 2), i) for x in REOPEN_AFTER)
        return speakers[i] != 0 and bool(own or prev)

    def reopen_block(self, b: Batch, aux) -> np.ndarray:
        """Reopen-cue features (:data:`REOPEN_NAMES`), one row per utterance."""
        n = b.n
        R = np.zeros((n, len(REOPEN_NAMES)), dtype=np.float64, order="F")
        if n == 0:
            return R
        fam = aux["fam"][b.text_code]
        fc = self.fam_col
        spk = b.spk.astype(np.int64)
        i = b.row_in_call()
        lens = np.diff(b.offsets)
        ncall = np.repeat(lens, lens)
        first = i == 0
        second = i <= 1

        def prev(x, k):  # value k rows back within the call, else False
            y = np.roll(x, k)
            return y & ~(i < k)

        ntok = aux["n_tokens"][b.text_code]
        q = aux["qlike"][b.text_code]
        wm, sm, dec = fam[:, fc["what_more"]], fam[:, fc["summary"]], fam[:, fc["decline"]]
        words = (ntok >= 3) & ~aux["all_min"][b.text_code]
        is_other = spk == 2
        cum = np.cumsum(is_other)
        before = np.repeat(np.concatenate(([0], cum))[b.offsets[:-1]], lens)
        cols = [fam[:, fc["new_topic"]], fam[:, fc["topic_shift"]], fam[:, fc["handover"]], fam[:, fc["request"]],
                fam[:, fc["emotion"]], dec,
                fam[:, fc["greeting"]] | fam[:, fc["thanks"]], aux["all_min"][b.text_code], ntok >= 6, q,
                spk != 0, is_other, is_other & (cum - before == 1), is_other & ~first & (np.roll(spk, 1) != 2),
                ~first & (np.roll(spk, 1) != spk), 2 * i >= ncall,
                prev(wm, 1), prev(wm, 2) & ~second, prev(sm, 1), prev(sm, 2) & ~second,
                (prev(wm, 1) | prev(wm, 2)) & ~dec & (spk != 0), (prev(sm, 1) | prev(sm, 2)) & (spk != 0) & words]
        for j, c in enumerate(cols):
            R[:, j] = c
        return R

    def reopen_ref(self, speakers: list[int], auxes: list[dict], i: int) -> list[float]:
        """Reopen-cue row of utterance ``i`` of one call (plain Python)."""
        fc = self.fam_col
        a = auxes[i]
        f = a["fam"]
        n = len(speakers)

        def fam_at(k, name):
            return i - k >= 0 and bool(auxes[i - k]["fam"][fc[name]])

        spk = speakers[i]
        words = a["n_tokens"] >= 3 and not a["all_min"]
        wm1, wm2, sm1, sm2 = fam_at(1, "what_more"), fam_at(2, "what_more"), fam_at(1, "summary"), fam_at(2, "summary")
        row = [f[fc["new_topic"]], f[fc["topic_shift"]], f[fc["handover"]], f[fc["request"]], f[fc["emotion"]],
               f[fc["decline"]],
               f[fc["greeting"]] or f[fc["thanks"]], a["all_min"], a["n_tokens"] >= 6, a["qlike"],
               spk != 0, spk == 2, spk == 2 and 2 not in speakers[:i], spk == 2 and i > 0 and speakers[i - 1] != 2,
               i > 0 and speakers[i - 1] != spk, 2 * i >= n,
               wm1, wm2, sm1, sm2, (wm1 or wm2) and not f[fc["decline"]] and spk != 0,
               (sm1 or sm2) and spk != 0 and words]
        return [float(bool(x)) for x in row]

    # -- reference (one utterance at a time) ---------------------------------
    def text_features_ref(self, text: str):
        """Active text columns (sorted) and the context needs, for one text."""
        toks = normalise_tokens(text)
        cols = sorted({self.col[g] for g in word_features(toks, self.index.lemmas) if g in self.col})
        colset = set(cols)
        nv = len(self.vocab)
        fam = [any(self.col[p] in colset for p in self.families[f]) for f in self.fam_names]
        for cs, fl in zip(self._long_parts, self._long_fam):
            if all(c in colset for c in cs):
                fam = [a or bool(b) for a, b in zip(fam, fl)]
        qmark, excl, shout = text_flags_reference(text)
        nt = len(toks)
        if PHONE_OPEN in self.fam_col and fam[self.fam_col[PHONE_OPEN]] and nt <= PHONE_OPEN_MAX:
            fam[self.fam_col["greeting"]] = True
        nm = sum(t in MINIMAL for t in toks)
        all_min = nt > 0 and nm == nt
        short_min = 0 < nt <= 3 and nm >= nt - 1
        fc = self.fam_col
        pairs = [fam[fc[a]] and fam[fc[b]] for a, b in FAMILY_PAIRS]
        extra = [qmark, excl, shout, *(nt >= b for b in LEN_BINS), all_min, short_min, *pairs]
        cols += [nv + f for f, on in enumerate(fam) if on]
        cols += [nv + len(fam) + j for j, on in enumerate(extra) if on]
        cols += sorted(self.n_ev + self.char_col[g] for g in text_char_grams(toks) if g in self.char_col)
        fc = self.fam_col
        aux = {"qmark": qmark, "qlike": qmark or fam[fc["open_q"]] or fam[fc["closed_q"]], "all_min": all_min,
               "fam": fam, "n_tokens": nt}
        if self.emb_dim:  # dense columns: the reference adds emb @ W over these rows
            aux["emb"] = self.embed([text])[0]
        return cols, aux

    def context_ref(self, speakers: list[int], rises: list[bool], auxes: list[dict], i: int) -> list[float]:
        """Context row of utterance ``i`` of one call."""
        n = len(speakers)
        row = [0.0] * self.n_ctx
        row[speakers[i]] = 1.0
        a = auxes[i]
        row[4] = float(a["qmark"] or rises[i])
        row[5 + min(N_POS * i // n, N_POS - 1)] = 1.0
        k = 5 + N_POS
        first, last = i == 0, i == n - 1
        prev_same = not first and speakers[i - 1] == speakers[i]
        prev_q_other = not first and not prev_same and (auxes[i - 1]["qlike"] or rises[i - 1])
        row[k] = float(first)
        row[k + 1] = float(i >= n - 2)
        row[k + 2] = float(prev_same)
        row[k + 3] = float(not last and speakers[i + 1] == speakers[i])
        row[k + 4] = float(prev_q_other)
        row[k + 5] = float(prev_q_other and a["all_min"])
        row[k + 6] = float(not first and not prev_same and auxes[i - 1]["fam"][self.fam_col["what_more"]])
        row[k + 7] = float(speakers[i] == 2 and 2 not in speakers[:i])
        if 2 * i >= n:
            for j, f in enumerate(LATE_FAMILIES):
                row[k + 8 + j] = float(a["fam"][self.fam_col[f]])
        fc = self.fam_col

        def cue(r):
            f = auxes[r]["fam"]
            return speakers[r] != 0 and (f[fc["new_topic"]] or f[fc["handover"]]) and 2 * r >= n

        k2 = k + 8 + len(LATE_FAMILIES)
        for j, w in enumerate(TOPIC_WINDOWS):
            row[k2 + j] = float(any(cue(r) for r in range(max(0, i - w), i + 1)))
        if self.end_features:
            k3 = k2 + len(TOPIC_WINDOWS)
            for j, r in enumerate(END_ROWS):
                row[k3 + j] = float(n - 1 - i < r)
            near = any(auxes[r]["fam"][fc["greeting"]] or auxes[r]["fam"][fc["thanks"]]
                       for r in range(max(0, i - 2), min(n, i + 3)))
            row[k3 + len(END_ROWS)] = float(near)
            row[k3 + len(END_ROWS) + 1] = float(near and 2 * i >= n)
        if self.neighbours:
            nf, k4 = len(self._nbr_names), self._nbr_at
            for j, f in enumerate(self._nbr_fam):
                row[k4 + j] = float(not first and not prev_same and auxes[i - 1]["fam"][f])
                row[k4 + nf + j] = float(not last and speakers[i + 1] != speakers[i] and auxes[i + 1]["fam"][f])
        if self.nbr_emb and not first and not prev_same:
            k5 = self._nbr_emb_at
            row[k5:k5 + self.nbr_emb] = [float(x) for x in auxes[i - 1]["emb"][:self.nbr_emb]]
        if self.excerpt and n <= EXCERPT_ROWS:
            for j in self._pos_cols:
                row[j] = 0.0
            row[-1] = 1.0
        return row


# ---------------------------------------------------------------------- stacking
# Second pass: the first-pass act probabilities of this utterance and of its
# neighbours become features of the second-pass act, phase and reopen models
# (an emotion just before, a question by the other speaker, a what-more two rows back…).
STACK_SLOTS = ("0", "-1", "+1", "-2", "+2", "prev_same")
# Few stacked columns go into the reopen model (it has few positive rows).
REOPEN_STACK = (("0", "new_topic"), ("0", "request"), ("0", "emotion"), ("-1", "what_more"), ("-2", "what_more"),
                ("-1", "summary"), ("0", "greeting"))


def stack_names(acts) -> list[str]:
    return [f"stack:{s}:{a}" for s in STACK_SLOTS for a in acts]


def stack_index(b: Batch) -> np.ndarray:
    """``(N, len(STACK_SLOTS))`` row of each slot's utterance, ``N`` where there is none (pads with 0)."""
    n = b.n
    i = b.row_in_call()
    ncall = np.repeat(np.diff(b.offsets), np.diff(b.offsets))
    rows = np.arange(n)
    out = np.full((n, len(STACK_SLOTS)), n, dtype=np.int64)
    out[:, 0] = rows
    for j, k in enumerate((-1, 1, -2, 2)):
        ok = (i + k >= 0) & (i + k < ncall)
        out[ok, j + 1] = rows[ok] + k
    # previous row of the same speaker: running last index per speaker code, one row back
    prev = np.full(n, -1, dtype=np.int64)
    for code in range(len(SPK)):
        m = b.spk == code
        if not m.any():
            continue
        last = np.maximum.accumulate(np.where(m, rows, -1))
        prev[m] = np.concatenate(([-1], last[:-1]))[m]
    ok = prev >= rows - i
    out[ok, 5] = prev[ok]
    return out


def stack_block(P1: np.ndarray, b: Batch) -> np.ndarray:
    """Stacked features ``(N, len(STACK_SLOTS) * n_acts)`` from first-pass act probabilities ``P1``."""
    ext = np.vstack([P1, np.zeros((1, P1.shape[1]))])
    return ext[stack_index(b)].reshape(b.n, -1)


def stack_ref(speakers: list[int], P1: list[list[float]], i: int) -> list[float]:
    """Stacked row of utterance ``i`` of one call (plain Python)."""
    n, zero = len(speakers), [0.0] * len(P1[0]) if P1 else []
    row = []
    for s in STACK_SLOTS:
        if s == "prev_same":
            j = next((r for r in range(i - 1, -1, -1) if speakers[r] == speakers[i]), -1)
        else:
            j = i + int(s)
        row += P1[j] if 0 <= j < n else zero
    return row


def reopen_stack_cols(acts) -> list[int]:
    """Columns of :data:`REOPEN_STACK` in a stacked block over ``acts``."""
    acts = list(acts)
    return [STACK_SLOTS.index(s) * len(acts) + acts.index(a) for s, a in REOPEN_STACK]
