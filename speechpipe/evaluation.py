"""Evaluation helpers shared by tests, benchmarks and ``speechpipe eval``."""

from __future__ import annotations

import re
import unicodedata


def normalise_text(text: str) -> str:
    """Lower-case, strip punctuation and bracketed notes, collapse spaces.

    Examples
    --------
    >>> normalise_text("Stortingets møte er lovlig satt. [kremter]")
    'stortingets møte er lovlig satt'
    """
    text = unicodedata.normalize("NFC", text).lower()
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER over normalised texts (jiwer)."""
    import jiwer

    return float(jiwer.wer([normalise_text(r) for r in refs], [normalise_text(h) for h in hyps]))
