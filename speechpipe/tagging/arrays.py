"""Array helpers of the vectorised tagger path: evidence per text, call chunks, stacked slots, distinct rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from speechpipe.records import ACTS
from speechpipe.tagging.features import STACK_SLOTS, Batch
from speechpipe.tagging.phases import PHASES


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


def distinct_rows(out: dict, all_names: np.ndarray) -> tuple[np.ndarray, list, list, list]:
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
    M = len(all_names) + 1
    k = int(n_acts.max()) if len(n_acts) else 0
    E = np.zeros((len(codes), k), dtype=np.int64)  # evidence ids + 1 per act slot, 0 = none
    if k:
        E[
            np.repeat(np.arange(len(codes)), n_acts), np.arange(len(ev)) - np.repeat(np.cumsum(n_acts) - n_acts, n_acts)
        ] = ev + 1
    inv = pd.factorize(codes * 4 + phase)[0]
    for j in range(k):  # refine the row key one evidence slot at a time (exact, never overflows)
        inv = pd.factorize(inv * M + E[:, j])[0]
    first = np.full(int(inv.max()) + 1 if len(inv) else 0, len(inv), dtype=np.int64)
    np.minimum.at(first, inv, np.arange(len(inv)))  # first row of each group (no sort)
    labels, evs, phs = [], [], []
    for r in first.tolist():
        lab = tuple(a for j, a in enumerate(ACTS) if acts[r, j])
        labels.append(lab)
        evs.append({a: all_names[e - 1] for a, e in zip(lab, E[r].tolist())})
        phs.append(PHASES[phase[r]])
    return inv, labels, evs, phs
