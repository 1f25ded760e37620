"""Resegmentation: short windows of each turn re-scored against the speakers' centroids, relabelled where closer.

segmentation-3.0 sometimes follows two alternating talkers with one local speaker through a
whole 10 s window (dev00: MEE012's short turns at 20-30 s inside MEE009's), and then no
clustering of per-window embeddings can separate them. This pass looks below the window:
each exclusive turn is cut into short overlapping windows (one CAM++ pass per turn, see
:meth:`speechpipe.speakers.campplus.CampplusEmbedder.embed_windows`), each speaker's centroid
is the mean of its windows, and each turn's window labels are the best path
(:func:`speechpipe.speakers.embedded.viterbi`) through the windows' cosine similarities with a
switch penalty, so a stretch moves to another speaker only when it is closer to that
speaker for several windows running. Centroids are then recomputed once from the new labels
and the path taken again. Turns shorter than one window keep their label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyannote.core import Annotation, Segment

from speechpipe.records import SAMPLE_RATE


@dataclass
class ResegmentConfig:
    # 1.5 s windows every 0.5 s: CAM++ still tells voices apart at 1.5 s and a 0.5 s hop follows
    # a 1 s turn; measured on the dev files (tuned there: dev00, the 16 sim calls), 1.0 s / 0.5 s scored
    # the same and 2 s windows missed dev00's 1 s turns
    win_s: float = 1.5
    hop_s: float = 0.5
    # cosine-similarity units a turn pays to switch speaker inside it (0.1-0.2 gave the same results)
    penalty: float = 0.1
    iterations: int = 2
    max_piece_s: float = 30.0  # a longer turn is embedded in pieces (bounded memory on a 2-hour call)


def turn_windows(excl: Annotation, win: float, hop: float, max_piece: float = 30.0):
    """``(pieces, windows)``: pieces ``(start, end, label)`` of the exclusive turns at least ``win`` long
    (longer turns cut into ``max_piece`` pieces); windows ``(piece index, start, end)`` in seconds,
    evenly spaced at most ``hop`` apart from the piece's start to its end.

    Examples
    --------
    >>> a = Annotation(); a[Segment(0, 2.5)] = "A"; a[Segment(3, 3.5)] = "B"
    >>> pieces, ws = turn_windows(a, 1.5, 0.5)
    >>> pieces, [(i, s, e) for i, s, e in ws]
    ([(0.0, 2.5, 'A')], [(0, 0.0, 1.5), (0, 0.5, 2.0), (0, 1.0, 2.5)])
    """
    pieces, windows = [], []
    for seg, _, lab in sorted(excl.itertracks(yield_label=True), key=lambda t: t[0].start):
        if seg.duration < win:
            continue
        k = int(np.ceil(seg.duration / max_piece))
        edges = np.linspace(seg.start, seg.end, k + 1)
        for a, b in zip(edges[:-1], edges[1:]):
            if b - a < win:  # the last piece of a long turn: start it earlier (pieces may overlap)
                a = b - win
            n = int(np.ceil((b - a - win) / hop - 1e-9)) + 1
            for s in np.linspace(a, b - win, n) if n > 1 else [a]:
                windows.append((len(pieces), round(float(s), 6), round(float(s) + win, 6)))
            pieces.append((float(a), float(b), lab))
    return pieces, windows


def relabel(ann: Annotation, regions: list[tuple[float, float, object, object]]) -> Annotation:
    """``ann`` with each region ``(start, end, old, new)``'s stretch of label ``old`` given to ``new``.

    Examples
    --------
    >>> a = Annotation(); a[Segment(0, 10)] = "A"; a[Segment(4, 6), "o"] = "B"
    >>> r = relabel(a, [(2, 5, "A", "B")])
    >>> [(s.start, s.end, lab) for s, _, lab in r.itertracks(yield_label=True)]
    [(0, 2, 'A'), (2, 6, 'B'), (5, 10, 'A')]
    """
    out = Annotation(uri=ann.uri)
    k = 0
    for seg, _, lab in ann.itertracks(yield_label=True):
        pos = seg.start
        for a, b, new in sorted((a, b, n) for a, b, o, n in regions if o == lab and a < seg.end and b > seg.start):
            a, b = max(a, pos), min(b, seg.end)
            if b <= a:
                continue
            if a > pos:
                out[Segment(pos, a), k] = lab
                k += 1
            out[Segment(a, b), k] = new
            k += 1
            pos = b
        if pos < seg.end:
            out[Segment(pos, seg.end), k] = lab
            k += 1
    return out.support()


def _groups(piece_of: np.ndarray) -> list[slice]:
    """The runs of equal piece index (windows come piece by piece)."""
    cuts = [0, *(np.flatnonzero(np.diff(piece_of)) + 1).tolist(), len(piece_of)]
    return [slice(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def window_labels(E: np.ndarray, piece_of: np.ndarray, start: np.ndarray, penalty: float, iterations: int,
                  num_labels: int) -> np.ndarray:
    """Label index of each window: per piece, the best path through cosine similarities to the centroids.

    ``start`` holds each window's label before (its turn's); centroids are the mean unit
    embedding of each label's windows, recomputed after each pass.

    Examples
    --------
    >>> E = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1]], float)
    >>> window_labels(E, np.array([0, 0, 0, 0, 1, 1]), np.array([0, 0, 0, 0, 1, 1]), 0.1, 2, 2).tolist()
    [0, 0, 0, 1, 1, 1]
    """
    from speechpipe.speakers.embedded import viterbi

    ok = np.isfinite(E).all(axis=1)
    labels = start.copy()
    for _ in range(iterations):
        C = np.zeros((num_labels, E.shape[1]))
        for k in range(num_labels):
            m = ok & (labels == k)
            if m.any():
                C[k] = E[m].mean(axis=0)
        C /= np.linalg.norm(C, axis=1, keepdims=True) + 1e-9
        S = np.nan_to_num(E @ C.T)
        # a label with no window of its own (all its turns shorter than a window) is never moved to
        S[:, ~C.any(axis=1)] = -np.inf
        new = labels.copy()
        for idx in _groups(piece_of):
            new[idx] = viterbi(S[idx], penalty)
        labels = new
    return labels


def resegment(audio_mono: np.ndarray, ann: Annotation, excl: Annotation, embedder,
              config: ResegmentConfig | None = None) -> tuple[Annotation, Annotation]:
    """``(overlap-aware, exclusive)`` with stretches moved to the speaker whose centroid their windows are closer to."""
    cfg = config or ResegmentConfig()
    labels = list(excl.labels())
    if len(labels) < 2:
        return ann, excl
    pieces, windows = turn_windows(excl, cfg.win_s, cfg.hop_s, cfg.max_piece_s)
    if not windows:
        return ann, excl
    piece_of = np.array([w[0] for w in windows])
    groups = _groups(piece_of)
    E = np.full((len(windows), embedder.dimension), np.nan, np.float32)
    for idx in groups:
        a, b, _ = pieces[piece_of[idx.start]]
        x = audio_mono[int(a * SAMPLE_RATE): int(b * SAMPLE_RATE)]
        E[idx] = embedder.embed_windows(x, [(s - a, e - a) for _, s, e in windows[idx]])
    start = np.array([labels.index(pieces[p][2]) for p in piece_of])
    new = window_labels(E, piece_of, start, cfg.penalty, cfg.iterations, len(labels))
    regions = []
    for idx in groups:
        a, b, lab = pieces[piece_of[idx.start]]
        centres = [(s + e) / 2 for _, s, e in windows[idx]]
        # each window speaks for the stretch nearer its centre than its neighbours'; the ends reach the turn's
        bounds = [a, *((c + d) / 2 for c, d in zip(centres, centres[1:])), b]
        for j, i in enumerate(range(idx.start, idx.stop)):
            if new[i] != start[i]:
                regions.append((bounds[j], bounds[j + 1], lab, labels[new[i]]))
    if not regions:
        return ann, excl
    return relabel(ann, regions), relabel(excl, regions)
