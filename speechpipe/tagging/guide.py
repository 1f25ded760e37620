"""The annotation guide's own examples as labelled one-utterance training excerpts (tagger-v3 round 4).

The guide (``../shared/annotation-guide.md``) defines every act with a few example utterances
(«Jeg setter deg over til en kollega som kan økonomisk sosialhjelp» → ``referral``). They are the
definition of the label set, written apart from the dev calls, so the model learns them as quoted
utterances with no context: this is what a quality team pastes, and the wording the dev calls'
writers did not always use.

Examples
--------
>>> rows = parse_guide_examples('''
... | label | Norwegian | definition | examples |
... | --- | --- | --- | --- |
... | `hold` | på vent | puts the caller on hold | «Et lite øyeblikk», «Takk for at du ventet» |
... ''')
>>> [(r["speaker"], r["text"], r["acts"]) for r in rows]
[('counsellor', 'Et lite øyeblikk', ['hold']), ('counsellor', 'Takk for at du ventet', ['hold'])]
"""

from __future__ import annotations

import re
from pathlib import Path

from speechpipe.records import ACTS, Utterance

GUIDE_NAME = "annotation-guide.md"
CALLER_ONLY = ("emotion", "request", "new_topic")
_ROW = re.compile(r"^\|\s*`([a-z_]+)`\s*\|(.*)\|\s*$")
_QUOTE = re.compile(r"«([^»]+)»")


class GuideError(Exception):
    """The annotation guide is missing or has no act examples."""


def parse_guide_examples(markdown: str) -> list[dict]:
    """``[{"speaker", "text", "acts"}]`` from the act tables: the «…» quotes of the last column of every row whose
    first column is a known act. Caller acts are the caller's; a backchannel example is both speakers'."""
    out = []
    for line in markdown.splitlines():
        m = _ROW.match(line.strip())
        if not m or m.group(1) not in ACTS:
            continue
        act = m.group(1)
        last = m.group(2).split("|")[-1]
        speakers = ("caller",) if act in CALLER_ONLY else ("counsellor", "caller") if act == "backchannel" \
            else ("counsellor",)
        for q in _QUOTE.findall(last):
            text = q.replace("…", "").strip()
            if text:
                out += [{"speaker": s, "text": text, "acts": [act]} for s in speakers]
    return out


def guide_path(gold_dir) -> Path:
    """Where the guide sits next to a gold directory (``../shared/tagger-dev`` → ``../shared/annotation-guide.md``)."""
    return Path(gold_dir).resolve().parent / GUIDE_NAME


def load_guide_examples(path) -> list[dict]:
    """The guide's examples as one-utterance gold "calls" (as :func:`speechpipe.tagging.train.excerpts` makes)."""
    p = Path(path)
    try:
        rows = parse_guide_examples(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise GuideError(f"{p}: cannot read the annotation guide: {e}") from e
    if not rows:
        raise GuideError(f"{p}: no act examples found (expected tables with `label` rows and «…» examples)")
    return [{"call_id": f"guide#{i}", "utterances": [Utterance(r["speaker"], None, None, r["text"])],
             "gold_acts": [r["acts"]], "gold_phase": [None], "structure": None, "reopenings": None}
            for i, r in enumerate(rows)]
