"""The analytics step of a call: ``summary.interaction`` and ``summary.categories`` after tagging.

Examples
--------
>>> from speechpipe.records import CallResult, Utterance
>>> r = CallResult("c", [Utterance("counsellor", 0.5, 2.0, "Hei", acts=["greeting"]),
...                      Utterance("caller", 2.3, 4.0, "Hei, jeg lurer på noe")])
>>> r = analyse_call(r)
>>> r.summary["interaction"]["talk_time_s"], [c["name"] for c in r.summary["categories"]][:2]
({'counsellor': 1.5, 'caller': 1.7}, ['empathy_after_emotion', 'emotion_without_empathy'])
"""

from __future__ import annotations

import os
from functools import lru_cache

from speechpipe.analytics.categories import categorise
from speechpipe.analytics.interaction import interaction_summary
from speechpipe.analytics.rules import RuleSet, load_rules
from speechpipe.records import AudioData, CallResult


@lru_cache(maxsize=8)
def _cached_rules(path: str | None, mtime: float) -> RuleSet:
    return load_rules(path)


def rules_for(path: str | os.PathLike | None) -> RuleSet:
    """The rule set in ``path`` (``None``: the shipped default), loaded once per file version."""
    if path is None:
        return _cached_rules(None, 0.0)
    p = os.fspath(path)
    try:
        mtime = os.stat(p).st_mtime
    except OSError:
        mtime = -1.0  # load_rules reports the problem with the file name
    return _cached_rules(p, mtime)


def analyse_call(result: CallResult, audio: AudioData | None = None,
                 rules: RuleSet | str | os.PathLike | None = None) -> CallResult:
    """Add ``summary.interaction`` (timed calls) and ``summary.categories`` to ``result``; return it.

    ``audio`` gives per-turn loudness; ``rules`` is a :class:`RuleSet`, a rule-file path,
    or ``None`` for the shipped default set.
    """
    timed = bool(result.turns) or any(u.start is not None and u.end is not None for u in result.utterances)
    if timed:
        duration = (result.audio or {}).get("duration")
        result.summary["interaction"] = interaction_summary(
            result.turns, result.utterances, result.events, duration=duration,
            samples=None if audio is None else audio.samples,
            sample_rate=16000 if audio is None else audio.sample_rate,
        )
        inter = result.summary["interaction"]
        if inter.get("turn_source") == "turns" and "talk_share" in inter:
            # One definition of talk share in a call's output: the time each party holds a turn. The
            # tagger's own estimate from utterances stays for text-only input (tag, archive re-tags).
            result.summary["talk_share"] = dict(inter["talk_share"])
            result.summary["talk_share_unit"] = "time"
    rs = rules if isinstance(rules, RuleSet) else rules_for(rules)
    result.summary["categories"] = categorise(result, rs)
    return result
