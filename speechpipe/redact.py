"""Redact personal identifiers from call text; pseudonymise call ids.

Calls are special-category personal data. :func:`redact_text` replaces, by a
typed placeholder:

=================  ====================  ===============================================
type               placeholder           what is matched
=================  ====================  ===============================================
``national_id``    ``[FØDSELSNUMMER]``   11 digits (also 6+5 or other digit groups) with
                                         a valid date and both mod-11 check digits
``d_number``       ``[D-NUMMER]``        as above, day + 40
``bank_account``   ``[KONTONUMMER]``     11 digits (``1234.56.78903``, ``1234 56 78903``)
                                         with a valid mod-11 check digit
``phone``          ``[TELEFONNUMMER]``   8 digits starting 2–9, grouped 8, 4+4, 2+2+2+2,
                                         3+2+3 (``+47``/``0047`` prefix allowed)
``email``          ``[E-POST]``          ``name@domain.tld``
``address``        ``[ADRESSE]``         street name (``…veien``, ``…gata``, ``… gate``)
                                         with a house number, and a following post code
=================  ====================  ===============================================

and keeps amounts (``12 500 000``, ``kr 45 000``), dates (``12.03.2024``),
case numbers (``saksnummer 12345678``), numbers failing the check digits,
and web addresses such as ``nav.no``. Only digits are recognised; numbers
spoken as words («tolv trettifire …») are not.

Examples
--------
>>> redact_text("Ring meg på 912 34 567 eller skriv til ola@eksempel.no")
('Ring meg på [TELEFONNUMMER] eller skriv til [E-POST]', {'phone': 1, 'email': 1})
>>> redact_text("Det står på nav.no, beløpet er 12 500 000 kroner")[1]
{}
"""

from __future__ import annotations

import re
from dataclasses import replace

from speechpipe.records import CallResult, Utterance, Word

PLACEHOLDERS = {
    "national_id": "[FØDSELSNUMMER]",
    "d_number": "[D-NUMMER]",
    "bank_account": "[KONTONUMMER]",
    "phone": "[TELEFONNUMMER]",
    "email": "[E-POST]",
    "address": "[ADRESSE]",
}

# --- check digits ---------------------------------------------------------

_K1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_K2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
_ACCOUNT = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def _mod11(digits: str, weights: tuple[int, ...]) -> int | None:
    """The mod-11 check digit, or None where none exists (remainder 1)."""
    r = 11 - sum(int(d) * w for d, w in zip(digits, weights)) % 11
    return 0 if r == 11 else (None if r == 10 else r)


def national_id_type(digits: str) -> str | None:
    """``"national_id"``, ``"d_number"`` or None for an 11-digit string.

    Checks the date (day 1–31, +40 for D-numbers; month 1–12, +40 for
    H-numbers) and both check digits.

    Examples
    --------
    >>> national_id_type("01010112345") is None
    True
    >>> national_id_type("15076500565")
    'national_id'
    """
    if len(digits) != 11 or not digits.isdigit():
        return None
    if _mod11(digits[:9], _K1) != int(digits[9]) or _mod11(digits[:10], _K2) != int(digits[10]):
        return None
    day, month = int(digits[:2]), int(digits[2:4])
    kind = "national_id"
    if day > 40:
        day -= 40
        kind = "d_number"
    if month > 40:  # H-number (assistance number)
        month -= 40
    return kind if 1 <= day <= 31 and 1 <= month <= 12 else None


def is_bank_account(digits: str) -> bool:
    """True for an 11-digit Norwegian account number with a valid mod-11 check digit."""
    return len(digits) == 11 and digits.isdigit() and _mod11(digits[:10], _ACCOUNT) == int(digits[10])


# --- detection --------------------------------------------------------------

# A run of digit groups joined by one space, dot or hyphen, with an optional
# +47/0047 prefix; ASR splits spoken numbers into such groups.
_NUM_RUN = re.compile(r"(?<![\w.,+])(?:(?:\+|00)47[ -]?)?\d+(?:[ .\-]\d+)*(?![\w]|[.,]\d)")
_GROUP = re.compile(r"\d+")
_PHONE_GROUPINGS = {(8,), (4, 4), (2, 2, 2, 2), (3, 2, 3), (3, 3, 2)}
# Words just before a number that make it an amount, case number or date, not a phone.
_KEEP_BEFORE = re.compile(
    r"(?:\b(?:kr|kroner|nok|saksnummer|saksnr|sak|saken|referanse|referansenummer|ref|journalpost|journalpostnummer|"
    r"vedtak|dato|organisasjonsnummer|orgnr|org\.nr|nr|nummer\s+på\s+saken)\.?|[€$£])\s*(?:er\s+|på\s+|:\s*)?$",
    re.IGNORECASE,
)
_KEEP_AFTER = re.compile(r"^\s*(?:kr\b|kroner|nok\b|,-|prosent|%|timer|dager|uker|måneder|år\b)", re.IGNORECASE)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
_STREET_SUFFIX = (
    r"(?:veien|vegen|veg|vei|gata|gaten|gate|gt\.|allé|alle|alléen|plassen|plass|bakken|stien|lia|liene|tunet|"
    r"ringen|svingen|haugen|jordet|løkka|kroken|terrasse|kaia|brygga|torget|tangen|åsen|dalen|toppen|grenda|skogen)"
)
# a house number, not a duration or amount ("Italia 2 uker")
_HOUSE_NO = r"\d{1,4}\s?[A-Ha-h]?(?![\w])(?!\s+(?:uker|uke|dager|dag|år|ganger|gang|timer|måneder|prosent|kroner|kr)\b)"
_POSTCODE = r"(?:,?\s+\d{4}\s+[A-ZÆØÅ][\wæøå-]+)?"
_ADDRESS = re.compile(
    # one compound word ending in a street suffix ("Storgata 12B", "Kirkeveien 4")
    rf"\b[A-Za-zÆØÅæøå][\wæøå-]+{_STREET_SUFFIX}\s+{_HOUSE_NO}{_POSTCODE}"
    # or capitalised name words + a separate street word ("Thorvald Meyers gate 10")
    rf"|\b(?:[A-ZÆØÅ][\wæøå.-]*\s+){{1,3}}(?:gate|gata|vei|veg|allé|plass|terrasse)\s+{_HOUSE_NO}{_POSTCODE}"
)


def _number_spans(text: str) -> list[tuple[int, int, str]]:
    spans = []
    for m in _NUM_RUN.finditer(text):
        run = m.group(0)
        prefixed = bool(re.match(r"(?:\+|00)47", run))
        body_off = 0
        if prefixed:
            body_off = len(re.match(r"(?:\+|00)47[ -]?", run).group(0))
        groups = [(g.start() + body_off, g.end() + body_off, g.group(0)) for g in _GROUP.finditer(run[body_off:])]
        i = 0
        while i < len(groups):
            found = None
            # longest identifier first: 11 digits, then 8
            for j in range(len(groups) - 1, i - 1, -1):
                digits = "".join(g[2] for g in groups[i : j + 1])
                seps = {run[groups[k][1] : groups[k + 1][0]] for k in range(i, j)}
                lens = tuple(len(g[2]) for g in groups[i : j + 1])
                a, b = m.start() + groups[i][0], m.start() + groups[j][1]
                if len(digits) == 11:
                    kind = national_id_type(digits)
                    if kind is None and is_bank_account(digits):
                        kind = "bank_account"
                    if kind:
                        found = (j, kind)
                        break
                elif len(digits) == 8 and digits[0] in "23456789" and ("." not in seps or lens == (2, 2, 2, 2)):
                    if (prefixed and i == 0) or lens in _PHONE_GROUPINGS:
                        found = (j, "phone")
                        break
            if found is None:
                i += 1
                continue
            j, kind = found
            a = m.start() + (0 if prefixed and i == 0 else groups[i][0])
            b = m.start() + groups[j][1]
            before, after = text[max(0, a - 40) : a], text[b : b + 20]
            if not (kind == "phone" and (_KEEP_BEFORE.search(before) or _KEEP_AFTER.match(after))):
                spans.append((a, b, kind))
            i = j + 1
    return spans


def find_spans(text: str) -> list[tuple[int, int, str]]:
    """Non-overlapping ``(start, end, type)`` spans of personal identifiers in ``text``.

    Examples
    --------
    >>> find_spans("Kontonummeret er 1234.56.78903.")
    [(17, 30, 'bank_account')]
    """
    cands = [(m.start(), m.end(), "email") for m in _EMAIL.finditer(text)]
    cands += [(m.start(), m.end(), "address") for m in _ADDRESS.finditer(text)]
    cands += _number_spans(text)
    # earlier first, longer first; drop anything overlapping a kept span
    cands.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    out: list[tuple[int, int, str]] = []
    for s in cands:
        if not out or s[0] >= out[-1][1]:
            out.append(s)
    return out


def _apply(text: str, spans: list[tuple[int, int, str]]) -> str:
    for a, b, kind in reversed(spans):
        text = text[:a] + PLACEHOLDERS[kind] + text[b:]
    return text


def redact_text(text: str) -> tuple[str, dict[str, int]]:
    """Replace personal identifiers in ``text`` by typed placeholders.

    Returns the redacted text and the number of replacements per type
    (types with none are left out).
    """
    spans = find_spans(text)
    counts: dict[str, int] = {}
    for _, _, kind in spans:
        counts[kind] = counts.get(kind, 0) + 1
    return _apply(text, spans), counts


def _redact_words(words: list[Word]) -> list[Word]:
    """Redact across word boundaries: «12 34 56 78» may be four ASR words.

    Words are joined with single spaces, spans found in the joined text, and
    all words touched by one span merge into one word holding the placeholder
    (first start, last end), so word times stay consistent.
    """
    if not words:
        return words
    pieces, offsets, pos = [], [], 0
    for w in words:
        t = w.text.strip()
        offsets.append((pos, pos + len(t)))
        pieces.append(t)
        pos += len(t) + 1
    joined = " ".join(pieces)
    spans = find_spans(joined)
    if not spans:
        return words
    out: list[Word] = []
    i = 0
    for a, b, kind in spans:
        while i < len(words) and offsets[i][1] <= a:
            out.append(words[i])
            i += 1
        first = i
        while i < len(words) and offsets[i][0] < b:
            i += 1
        last = i - 1
        if last < first:
            continue
        text = joined[offsets[first][0] : a] + PLACEHOLDERS[kind] + joined[b : offsets[last][1]]
        lead = words[first].text[: len(words[first].text) - len(words[first].text.lstrip())]
        out.append(Word(lead + text, words[first].start, words[last].end, min(w.prob for w in words[first : last + 1])))
    out.extend(words[i:])
    return out


def redact_call(result: CallResult) -> CallResult:
    """A copy of ``result`` with identifiers replaced in every text field.

    Utterance text, word texts (consistently, across word boundaries) and act
    evidence are redacted. ``result.redaction`` records counts per type and
    where each placeholder went (utterance index and type), never the
    original values.
    """
    counts: dict[str, int] = {}
    placements: list[dict] = []
    utts: list[Utterance] = []
    for idx, u in enumerate(result.utterances):
        text, c = redact_text(u.text)
        for kind, n in c.items():
            counts[kind] = counts.get(kind, 0) + n
            placements.append({"utterance": idx, "type": kind, "placeholder": PLACEHOLDERS[kind], "n": n})
        evidence = {k: redact_text(v)[0] if isinstance(v, str) else v for k, v in (u.evidence or {}).items()}
        utts.append(replace(u, text=text, words=_redact_words(list(u.words)), evidence=evidence))
    out = replace(result, utterances=utts, call_id=redact_id(result.call_id))
    out.redaction = {"counts": {k: counts.get(k, 0) for k in PLACEHOLDERS}, "placeholders": placements}
    return out


def redact_table(table):
    """An Arrow utterance table with identifiers replaced in ``text``, ``evidence`` and ``call_id``.

    Examples
    --------
    >>> import pyarrow as pa
    >>> redact_table(pa.table({"call_id": ["a"], "text": ["ring 912 34 567"]})).column("text").to_pylist()
    ['ring [TELEFONNUMMER]']
    """
    import json

    import pyarrow as pa

    def _evidence(v):
        try:
            d = json.loads(v)
        except (TypeError, ValueError):
            return redact_text(v)[0]
        return json.dumps({k: redact_text(x)[0] if isinstance(x, str) else x for k, x in d.items()}, ensure_ascii=False)

    fns = {"text": lambda v: redact_text(v)[0], "call_id": redact_id, "evidence": _evidence}
    for name, fn in fns.items():
        if name not in table.column_names:
            continue
        col = table.column(name)
        if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
            continue
        vals = [None if v is None else fn(v) for v in col.to_pylist()]
        table = table.set_column(table.column_names.index(name), name, pa.array(vals, type=col.type))
    return table


# --- pseudonymous ids (the policy lives in speechpipe.privacy) ----------------------------

from speechpipe.privacy import (  # noqa: E402,F401  (kept importable from here)
    PSEUDONYM_ENV,
    PseudonymKeyError,
    pseudonymise_id,
    require_pseudonym_key,
)


def redact_id(call_id: str) -> str:
    """A call id with identifiers replaced (a file named by a personal number, say).

    Examples
    --------
    >>> redact_id("15076500565-opptak")
    '[FØDSELSNUMMER]-opptak'
    """
    return redact_text(call_id)[0]
