"""The project's vocabulary: labels of the annotation guide, minimal-response words, text normalisers."""

from __future__ import annotations

import re
import unicodedata

SPEAKERS = ("counsellor", "caller", "other")
PHASES = ("opening", "mapping", "solution", "closing")
ACTS = (
    "greeting",
    "empathic_statement",
    "acknowledgement",
    "agreement",
    "backchannel",
    "open_question",
    "what_more",
    "contract",
    "closed_question",
    "information",
    "news_warning",
    "summary",
    "hold",
    "referral",
    "emotion",
    "request",
    "new_topic",
)
INTONATIONS = ("rise", "fall", "level")
# The guide's empathic-communication acts («følelser før sak»): the report and the call measures read them here.
EMPATHIC = ("empathic_statement", "acknowledgement", "agreement")

# Minimal-response tokens (normalised: lower case, no punctuation). One place, exported.
BACKCHANNEL_TOKENS = frozenset(
    "ja jo jaa mm mhm hm mmm m nei nå ok okei okey akkurat nettopp skjønner javel ja vel "
    "stemmer riktig fint supert bra flott greit takk å".split()
)
BACKCHANNEL_PHRASES = ("ikke sant", "ja vel", "å ja", "å nei", "ja ja", "ja takk", "det stemmer")
_WORD_RE = re.compile(r"[a-zæøåéèü]+")
_SYLL_RE = re.compile(r"[aeiouyæøåéèü]+")


def normalise_words(text: str) -> str:
    """Lower case, accents kept, punctuation and bracketed notes («[puster]») removed."""
    text = unicodedata.normalize("NFC", re.sub(r"\[[^\]]*\]", " ", text or "")).lower()
    return " ".join(_WORD_RE.findall(text))


def is_backchannel_candidate(text: str) -> bool:
    """True when the text holds only minimal-response tokens (ja, mm, nei, okei, ikke sant …).

    Examples
    --------
    >>> is_backchannel_candidate("Mm, skjønner.")
    True
    >>> is_backchannel_candidate("Ja, det er riktig.")
    False
    """
    norm = normalise_words(text)
    if not norm:
        return False
    for phrase in BACKCHANNEL_PHRASES:
        norm = norm.replace(phrase, " ")
    return all(tok in BACKCHANNEL_TOKENS for tok in norm.split())


def count_syllables(text: str) -> int:
    """Vowel groups in the normalised text (a close proxy for Norwegian syllables)."""
    return len(_SYLL_RE.findall(normalise_words(text)))


def normalise_for_wer(text: str) -> str:
    """Lower-case, strip punctuation and bracketed notes, collapse spaces.

    Examples
    --------
    >>> normalise_for_wer("Stortingets møte er lovlig satt. [kremter]")
    'stortingets møte er lovlig satt'
    """
    text = unicodedata.normalize("NFC", text).lower()
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()
