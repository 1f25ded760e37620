"""Joint phase decoding: a constrained Viterbi over opening → mapping → solution → closing.

Phases only move forward, one step at a time, except for one explicit
*reopen* move from solution or closing back to mapping (the hourglass of the
annotation guide). The decoded path therefore gives the call structure and the
number of reopenings directly.

The one module of the tagger's sequence decoders (as librosa's ``sequence.py``: transition
matrices, Viterbi, and the forward algorithm for posterior scores). Three implementations of
the same recursion: :func:`viterbi_reference` (one
call, plain Python), :func:`viterbi_batch` (many calls padded to ``(B, T)`` and
masked, numpy) and :func:`viterbi_batch_torch` (the same on a torch device).

Examples
--------
>>> import numpy as np
>>> logA, logpi = transition_matrix({}, 0.5)
>>> em = np.log(np.array([[.9, .1, 0, 0], [.2, .7, .1, 0], [0, .1, .8, .1], [0, .8, .1, .1]]) + 1e-9)
>>> viterbi_reference(em.tolist(), logA.tolist(), logpi.tolist())
[0, 1, 2, 1]
>>> reopenings([0, 1, 2, 1])
1
"""

from __future__ import annotations

import math

import numpy as np

PHASES = ("opening", "mapping", "solution", "closing")
NEG = -1e30  # "impossible" that stays finite, so sums never become NaN


def allowed() -> np.ndarray:
    """Boolean (from, to) matrix of the allowed moves."""
    A = np.eye(4, dtype=bool)
    for i in range(3):
        A[i, i + 1] = True
    A[2, 1] = A[3, 1] = True  # reopen: back to mapping
    return A


def transition_matrix(counts: dict, smoothing: float = 0.5):
    """Log transition and start probabilities from ``{(from, to): n}`` counts.

    Moves outside :func:`allowed` get :data:`NEG`; allowed ones get add-``smoothing`` estimates.
    Calls start in opening (or, rarely, mapping).
    """
    A = allowed()
    logA = np.full((4, 4), NEG)
    for i in range(4):
        tot = sum(counts.get((i, j), 0) + smoothing for j in range(4) if A[i, j])
        for j in range(4):
            if A[i, j]:
                logA[i, j] = math.log((counts.get((i, j), 0) + smoothing) / tot)
    logpi = np.array([math.log(0.98), math.log(0.02), NEG, NEG])
    return logA, logpi


def reopen_free(logA: np.ndarray) -> np.ndarray:
    """``logA`` with the reopen moves taken out: rows of solution/closing renormalised
    over their forward moves, reopen entries 0 (the per-utterance reopen score is added there)."""
    A0 = np.array(logA, dtype=np.float64)
    for s in (2, 3):
        fwd = [j for j in range(4) if j != 1 and A0[s, j] > NEG / 2]
        lse = math.log(sum(math.exp(A0[s, j]) for j in fwd))
        for j in fwd:
            A0[s, j] -= lse
        A0[s, 1] = 0.0
    return A0


def reopen_matrix(lp: np.ndarray, lq: np.ndarray) -> np.ndarray:
    """Per-step additive transition scores ``(N, 4, 4)``: ``lp`` = log P(reopen here) on
    solution/closing → mapping, ``lq`` = log P(no reopen) on their forward moves, 0 elsewhere."""
    R = np.zeros((len(lp), 4, 4))
    R[:, 2, 1] = R[:, 3, 1] = lp
    R[:, 2, 2] = R[:, 2, 3] = R[:, 3, 3] = lq
    return R


def _reopen_add(lp: float, lq: float, i: int, j: int) -> float:
    if i >= 2 and j == 1:
        return lp
    if i >= 2 and j >= i:
        return lq
    return 0.0


def viterbi_reference(em: list[list[float]], logA: list[list[float]], logpi: list[float],
                      reopen: list[tuple[float, float]] | None = None) -> list[int]:
    """Best state path of one call; ties go to the lowest state number.

    ``reopen[t] = (log p, log 1-p)`` of a reopen at step ``t`` (then ``logA`` is :func:`reopen_free`).
    """
    T = len(em)
    if T == 0:
        return []
    delta = [logpi[j] + em[0][j] for j in range(4)]
    back = []
    for t in range(1, T):
        new, bp = [], []
        lp, lq = reopen[t] if reopen is not None else (0.0, 0.0)
        for j in range(4):
            best, arg = delta[0] + logA[0][j] + _reopen_add(lp, lq, 0, j), 0
            for i in range(1, 4):
                v = delta[i] + logA[i][j] + _reopen_add(lp, lq, i, j)
                if v > best:
                    best, arg = v, i
            new.append(best + em[t][j])
            bp.append(arg)
        delta = new
        back.append(bp)
    s = max(range(4), key=lambda j: (delta[j], -j))
    path = [s]
    for bp in reversed(back):
        s = bp[s]
        path.append(s)
    return path[::-1]


def pad(em: np.ndarray, offsets: np.ndarray):
    """Scatter ``(N, 4)`` rows of calls back to back into ``(B, T, 4)`` plus a mask."""
    lens = np.diff(offsets)
    B, T = len(lens), int(lens.max()) if len(lens) else 0
    rows = np.arange(len(em)) - np.repeat(offsets[:-1], lens)
    calls = np.repeat(np.arange(B), lens)
    E = np.zeros((B, T, 4), dtype=em.dtype)
    E[calls, rows] = em
    mask = np.zeros((B, T), dtype=bool)
    mask[calls, rows] = True
    return E, mask, calls, rows


def viterbi_batch(em: np.ndarray, offsets: np.ndarray, logA: np.ndarray, logpi: np.ndarray,
                  reopen: np.ndarray | None = None) -> np.ndarray:
    """Decode all calls at once; returns the state of every row of ``em``.

    Calls are sorted by length (longest first) and packed step-major, as a
    PyTorch ``PackedSequence``: the calls still running at step ``t`` are a
    prefix, so there is no padding or mask and memory stays O(N). Only the
    allowed moves (:func:`allowed`) are scored, one vector per state; ties go to
    the lowest previous state, as in :func:`viterbi_reference` (a finite best path
    never goes through a forbidden move).
    """
    if len(em) == 0:
        return np.zeros(0, dtype=np.int8)
    A = allowed()
    if not all(logA[i, j] > NEG / 2 for i in range(4) for j in range(4) if A[i, j]):
        return _viterbi_batch_dense(em, offsets, logA, logpi, reopen)
    lens = np.diff(offsets)
    B, T = len(lens), int(lens.max())
    order = np.argsort(-lens, kind="stable")  # longest first
    rank = np.empty(B, dtype=np.int64)
    rank[order] = np.arange(B)
    n_active = np.searchsorted(-lens[order], -np.arange(T), side="left")  # calls with len > t
    toff = np.concatenate(([0], np.cumsum(n_active)))
    pos = np.arange(len(em)) - np.repeat(offsets[:-1], lens)
    pk = toff[pos] + rank[np.repeat(np.arange(B), lens)]  # packed slot of each row
    E = np.empty((4, len(em)))
    E[:, pk] = em.T
    if reopen is not None:
        LP = np.empty(len(em))
        LQ = np.empty(len(em))
        LP[pk] = reopen[:, 0]
        LQ[pk] = reopen[:, 1]
    a = [[float(logA[i, j]) for j in range(4)] for i in range(4)]
    m0 = int(n_active[0])
    d = [E[j, :m0] + logpi[j] for j in range(4)]  # copies
    back1 = np.zeros(len(em), dtype=np.int8)  # previous state of mapping (0–3)
    back2 = np.zeros(len(em), dtype=bool)  # solution from solution (else from mapping)
    back3 = np.zeros(len(em), dtype=bool)  # closing from closing (else from solution)
    for t in range(1, T):
        m = int(n_active[t])
        sl = slice(int(toff[t]), int(toff[t]) + m)
        d0, d1, d2, d3 = (x[:m] for x in d)
        if reopen is not None:
            lp, lq = LP[sl], LQ[sl]
            c2, c3 = d2 + a[2][1] + lp, d3 + a[3][1] + lp
            s22, s23, s33 = d2 + a[2][2] + lq, d2 + a[2][3] + lq, d3 + a[3][3] + lq
        else:
            c2, c3 = d2 + a[2][1], d3 + a[3][1]
            s22, s23, s33 = d2 + a[2][2], d2 + a[2][3], d3 + a[3][3]
        # to mapping: from opening, mapping, solution, closing (first maximum wins)
        best = d0 + a[0][1]
        arg = np.zeros(m, dtype=np.int8)
        for k, c in ((1, d1 + a[1][1]), (2, c2), (3, c3)):
            w = c > best
            best = np.where(w, c, best)
            arg[w] = k
        back1[sl] = arg
        s12 = d1 + a[1][2]
        w2 = s22 > s12
        back2[sl] = w2
        w3 = s33 > s23
        back3[sl] = w3
        d0 += a[0][0]
        d0 += E[0, sl]
        np.add(best, E[1, sl], out=d1)
        np.add(np.where(w2, s22, s12), E[2, sl], out=d2)
        np.add(np.where(w3, s33, s23), E[3, sl], out=d3)
    s = np.stack(d, axis=1).argmax(axis=1).astype(np.int8)  # ties to the lowest state
    path = np.empty(len(em), dtype=np.int8)
    for t in range(T - 1, 0, -1):
        m = int(n_active[t])
        sl = slice(int(toff[t]), int(toff[t]) + m)
        st = s[:m]
        path[sl] = st
        s[:m] = np.where(st == 0, 0, np.where(st == 1, back1[sl],
                         np.where(st == 2, np.where(back2[sl], 2, 1), np.where(back3[sl], 3, 2))))
    path[:m0] = s[:m0]
    return path[pk]


def _viterbi_batch_dense(em, offsets, logA, logpi, reopen=None) -> np.ndarray:
    """The full (from, to) recursion, for transition matrices with a forbidden allowed move."""
    E, mask, calls, rows = pad(em, offsets)
    B, T, _ = E.shape
    if reopen is not None:
        RP = np.zeros((B, T, 2))
        RP[calls, rows] = reopen
    delta = logpi[None, :] + E[:, 0]
    back = np.zeros((T, B, 4), dtype=np.int8)
    ident = np.broadcast_to(np.arange(4, dtype=np.int8), (B, 4))
    for t in range(1, T):
        cand = delta[:, :, None] + logA[None, :, :]  # (B, from, to)
        if reopen is not None:
            cand = cand + reopen_matrix(RP[:, t, 0], RP[:, t, 1])
        bp = cand.argmax(axis=1)  # first maximum = lowest state, as in the reference
        best = np.take_along_axis(cand, bp[:, None, :], axis=1)[:, 0]
        m = mask[:, t]
        delta = np.where(m[:, None], best + E[:, t], delta)
        back[t] = np.where(m[:, None], bp, ident)
    # max with ties to the lowest state
    s = delta.argmax(axis=1).astype(np.int8)
    path = np.zeros((B, T), dtype=np.int8)
    path[:, T - 1] = s
    ar = np.arange(B)
    for t in range(T - 1, 0, -1):
        s = back[t, ar, s]
        path[:, t - 1] = s
    return path[calls, rows]


def viterbi_batch_torch(em, offsets: np.ndarray, logA, logpi, device=None, reopen=None):
    """:func:`viterbi_batch` in torch (``em`` a float64 tensor or array); returns a numpy array."""
    import torch

    em = torch.as_tensor(em, device=device)
    dev = em.device
    if em.shape[0] == 0:
        return np.zeros(0, dtype=np.int8)
    off = torch.as_tensor(offsets, device=dev)
    lens = off[1:] - off[:-1]
    B, T = len(lens), int(lens.max())
    calls = torch.repeat_interleave(torch.arange(B, device=dev), lens)
    rows = torch.arange(em.shape[0], device=dev) - torch.repeat_interleave(off[:-1], lens)
    E = torch.zeros((B, T, 4), dtype=em.dtype, device=dev)
    E[calls, rows] = em
    mask = torch.zeros((B, T), dtype=torch.bool, device=dev)
    mask[calls, rows] = True
    A = torch.as_tensor(logA, dtype=em.dtype, device=dev)
    if reopen is not None:
        RP = torch.zeros((B, T, 2), dtype=em.dtype, device=dev)
        RP[calls, rows] = torch.as_tensor(reopen, dtype=em.dtype, device=dev)
        sel_p = torch.zeros((4, 4), dtype=em.dtype, device=dev)
        sel_q = torch.zeros((4, 4), dtype=em.dtype, device=dev)
        sel_p[2, 1] = sel_p[3, 1] = 1.0
        sel_q[2, 2] = sel_q[2, 3] = sel_q[3, 3] = 1.0
    delta = torch.as_tensor(logpi, dtype=em.dtype, device=dev)[None, :] + E[:, 0]
    back = torch.zeros((T, B, 4), dtype=torch.int8, device=dev)
    ident = torch.arange(4, dtype=torch.int8, device=dev).expand(B, 4)
    for t in range(1, T):
        cand = delta[:, :, None] + A[None]
        if reopen is not None:
            # lp*1 + lq*0 and 0 elsewhere: the same numbers as numpy's reopen_matrix
            cand = cand + (RP[:, t, 0, None, None] * sel_p + RP[:, t, 1, None, None] * sel_q)
        best, bp = _first_max(cand, dim=1)
        m = mask[:, t, None]
        delta = torch.where(m, best + E[:, t], delta)
        back[t] = torch.where(m, bp.to(torch.int8), ident)
    _, s = _first_max(delta, dim=1)
    path = torch.zeros((B, T), dtype=torch.int64, device=dev)
    path[:, T - 1] = s
    ar = torch.arange(B, device=dev)
    for t in range(T - 1, 0, -1):
        s = back[t, ar, s].long()
        path[:, t - 1] = s
    return path[calls, rows].to(torch.int8).cpu().numpy()


def _first_max(x, dim):
    # torch.max does not promise the first index on ties; numpy argmax does. Make it explicit.
    import torch

    best = x.max(dim=dim, keepdim=True).values
    idx = torch.arange(x.shape[dim], device=x.device).view(*([1] * dim), -1, *([1] * (x.dim() - dim - 1)))
    first = torch.where(x == best, idx, x.shape[dim]).min(dim=dim).values
    return best.squeeze(dim), first


def reopenings(path) -> int:
    """Number of moves from solution/closing back to mapping."""
    return sum(1 for a, b in zip(path, path[1:]) if a >= 2 and b == 1)


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def forward_logz(em: np.ndarray, offsets: np.ndarray, logA: np.ndarray, logpi: np.ndarray,
                 reopen: np.ndarray | None = None, allow_reopen: bool = True) -> np.ndarray:
    """Log of the summed score of all state paths of each call (the forward algorithm; Viterbi with
    log-sum-exp in place of max), over the same moves as :func:`viterbi_batch`; ``allow_reopen=False``
    sums only the paths that never go back to mapping (funnels)."""
    B = len(offsets) - 1
    if len(em) == 0:
        return np.zeros(B)
    E, mask, calls, rows = pad(em, offsets)
    T = E.shape[1]
    RP = None
    if reopen is not None:
        RP = np.zeros((B, T, 2))
        RP[calls, rows] = reopen
    alpha = logpi[None, :] + E[:, 0]
    for t in range(1, T):
        trans = np.broadcast_to(logA, (B, 4, 4)) + (reopen_matrix(RP[:, t, 0], RP[:, t, 1]) if RP is not None else 0.0)
        if not allow_reopen:
            trans = np.array(trans)
            trans[:, 2, 1] = trans[:, 3, 1] = NEG
        new = _logsumexp(alpha[:, :, None] + trans, axis=1) + E[:, t]
        alpha = np.where(mask[:, t, None], new, alpha)
    return _logsumexp(alpha, axis=1)


def funnel_probability(em: np.ndarray, offsets: np.ndarray, logA: np.ndarray, logpi: np.ndarray,
                       reopen: np.ndarray | None = None) -> np.ndarray:
    """Per call, the share of the path score held by paths without a reopening: the model's
    probability that the call is a funnel (1 − that: an hourglass). A score, calibrated on CV (model card)."""
    lz_all = forward_logz(em, offsets, logA, logpi, reopen, True)
    lz_fun = forward_logz(em, offsets, logA, logpi, reopen, False)
    return np.exp(np.minimum(lz_fun - lz_all, 0.0))
