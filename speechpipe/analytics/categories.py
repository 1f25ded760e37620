"""Apply a rule set to one call: ``summary.categories`` as ``{name, matched, evidence}`` per rule.

Evidence names the utterances that satisfied a match (index, start, a text excerpt;
at most :data:`MAX_EVIDENCE`), or the measured value for a measure condition. A
negated condition has no evidence of its own. Times in windows are seconds from the
start of the recording, shares are of the call's length (the audio duration, else
the last utterance end). For a text-only call (no times) a share counts utterances,
and a rule that needs seconds cannot be decided: ``matched`` is ``null``.

Examples
--------
>>> from speechpipe.analytics.rules import parse_rules
>>> from speechpipe.records import CallResult, Utterance
>>> r = CallResult("c", [Utterance("counsellor", 1.0, 2.0, "Hei, du snakker med Kari", acts=["greeting"])])
>>> rs = parse_rules("categories: [{name: hello, when: {act: greeting, window: {first: 15s}}}]")
>>> categorise(r, rs)
[{'name': 'hello', 'matched': True, 'evidence': [{'utterance': 0, 'start': 1.0, 'text': 'Hei, du snakker med Kari'}]}]
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from speechpipe.analytics.interaction import STRESS_Z, stress_cue
from speechpipe.analytics.rules import AllOf, AnyOf, Match, Measure, NotOf, RuleSet, parse_time
from speechpipe.records import CallResult
from speechpipe.vocabulary import normalise_words

MAX_EVIDENCE = 5
EXCERPT_CHARS = 80


class Undecidable(Exception):
    """A condition in seconds on a call without times."""


class _Call:
    """What the conditions look at, computed once per call."""

    def __init__(self, result: CallResult):
        self.r = result
        self.utts = result.utterances
        self.n = len(self.utts)
        self.timed = self.n > 0 and all(u.start is not None and u.end is not None for u in self.utts)
        dur = float((result.audio or {}).get("duration") or 0.0)
        self.length = (max(dur, max(float(u.end) for u in self.utts)) if self.timed else float(self.n))
        self.summary = result.summary.to_dict() if hasattr(result.summary, "to_dict") else dict(result.summary or {})

    @cached_property
    def texts(self) -> list[str]:
        return [f" {normalise_words(u.text or '')} " for u in self.utts]

    @cached_property
    def heavy(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for e in self.r.events:
            if e.type == "breath" and e.heavy:
                out.setdefault(e.speaker, []).append(float(e.start))
        return out

    def pos(self, i: int) -> float:
        return float(self.utts[i].start) if self.timed else float(i)

    def evidence(self, idx: list[int]) -> list[dict[str, Any]]:
        out = []
        for i in idx[:MAX_EVIDENCE]:
            u = self.utts[i]
            text = " ".join((u.text or "").split())
            if len(text) > EXCERPT_CHARS:
                text = text[: EXCERPT_CHARS - 1] + "…"
            out.append({"utterance": i, "start": None if u.start is None else round(float(u.start), 3), "text": text})
        return out


def _cue(c: _Call, i: int, cue: str) -> bool:
    u = c.utts[i]
    p = u.prosody or {}
    if cue == "stress":
        return stress_cue(u)
    if cue in ("raised_pitch", "loud", "fast"):
        v = p.get({"raised_pitch": "f0_z", "loud": "loudness_z", "fast": "rate_z"}[cue])
        return isinstance(v, (int, float)) and v >= STRESS_Z
    if cue == "heavy_breath":
        return c.timed and any(u.start - 1.0 <= t <= u.end for t in c.heavy.get(u.speaker, ()))
    return u.intonation == cue  # rise / fall / level


def _attrs(m: Match, c: _Call, i: int) -> bool:
    u = c.utts[i]
    if m.act and not any(a in u.acts for a in m.act):
        return False
    if m.phase and u.phase not in m.phase:
        return False
    if m.speaker and u.speaker not in m.speaker:
        return False
    if m.keyword and not any(f" {normalise_words(k)} " in c.texts[i] for k in m.keyword):
        return False
    if m.cue and not any(_cue(c, i, x) for x in m.cue):
        return False
    return True


def _bound(c: _Call, v) -> float:
    x, share = parse_time(v)
    if share:
        return x * c.length
    if not c.timed:
        raise Undecidable
    return x


def _in_window(m: Match, c: _Call, i: int) -> bool:
    w = m.window
    lo, hi = 0.0, c.length
    for name in ("first", "last", "from_", "to"):
        v = getattr(w, name)
        if v is None:
            continue
        b = _bound(c, v)
        if name == "first":
            hi = min(hi, b)
        elif name == "last":
            lo = max(lo, c.length - b)
        elif name == "from_":
            lo = max(lo, b)
        else:
            hi = min(hi, b)
    return lo <= c.pos(i) <= hi


def candidates(m: Match, c: _Call) -> list[int]:
    """Indices of the utterances that satisfy a match (labels, window, anchor)."""
    idx = [i for i in range(c.n) if _attrs(m, c, i)]
    if m.window:
        idx = [i for i in idx if _in_window(m, c, i)]
    within = None
    if m.within is not None:
        if not c.timed:
            raise Undecidable
        within = parse_time(m.within)[0]
    if m.after:
        a = _anchor(m.after, c)
        if a is None:
            return []
        idx = [i for i in idx if i > a and (within is None or c.pos(i) - c.pos(a) <= within)]
    if m.before:
        b = _anchor(m.before, c)
        if b is None:
            return []
        idx = [i for i in idx if i < b and (within is None or c.pos(b) - c.pos(i) <= within)]
    return idx


def _anchor(m: Match, c: _Call) -> int | None:
    idx = candidates(m, c)
    if not idx:
        return None
    return idx[0] if m.occurrence == "first" else idx[-1]


def _value(summary: dict[str, Any], path: str) -> Any:
    v: Any = summary
    for k in path.split("."):
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


def _compare(m: Measure, v: Any) -> bool:
    if v is None or isinstance(v, (dict, list)):
        return False
    checks = []
    num = isinstance(v, (int, float)) and not isinstance(v, bool)
    for op in ("gt", "ge", "lt", "le"):
        ref = getattr(m, op)
        if ref is not None:
            if not num:
                return False
            checks.append({"gt": v > ref, "ge": v >= ref, "lt": v < ref, "le": v <= ref}[op])
    if m.eq is not None:
        checks.append(v == m.eq)
    if m.ne is not None:
        checks.append(v != m.ne)
    return all(checks)


def evaluate(cond, c: _Call) -> tuple[bool, list[dict[str, Any]]]:
    """``(matched, evidence)`` of one condition on a call."""
    if isinstance(cond, AllOf):
        ev: list[dict[str, Any]] = []
        for sub in cond.all:
            ok, e = evaluate(sub, c)
            if not ok:
                return False, []
            ev += e
        return True, ev[:MAX_EVIDENCE]
    if isinstance(cond, AnyOf):
        ev, hit = [], False
        for sub in cond.any:
            ok, e = evaluate(sub, c)
            if ok:
                hit = True
                ev += e
        return hit, ev[:MAX_EVIDENCE]
    if isinstance(cond, NotOf):
        ok, _ = evaluate(cond.not_, c)
        return not ok, []
    if isinstance(cond, Measure):
        v = _value(c.summary, cond.measure)
        ok = _compare(cond, v)
        return ok, ([{"utterance": None, "start": None, "text": f"{cond.measure} = {v}"}] if ok else [])
    idx = candidates(cond, c)
    ok = len(idx) >= cond.count and (cond.at_most is None or len(idx) <= cond.at_most)
    return ok, c.evidence(idx) if ok else []


def categorise(result: CallResult, rules: RuleSet) -> list[dict[str, Any]]:
    """``[{name, matched, evidence}]`` for every category of ``rules``, in the file's order.

    ``matched`` is ``None`` when the rule needs times the call does not have.
    """
    c = _Call(result)
    out = []
    for rule in rules.categories:
        try:
            ok, ev = evaluate(rule.when, c)
        except Undecidable:
            ok, ev = None, []
        out.append({"name": rule.name, "matched": ok, "evidence": ev})
    return out
