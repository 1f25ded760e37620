"""Redaction: recall and false redactions on a generated test set, plus call-level behaviour.

The test set is generated (seeded): valid identifiers (check digits computed
here, independently of the module) in the written forms people and ASR
produce, inside Norwegian sentences; and look-alikes that must be kept
(amounts, dates, case numbers, numbers with wrong check digits, nav.no), plus
every utterance of the shared gold transcripts (none holds an identifier).
Run with ``-s`` to see the table.
"""

from __future__ import annotations

import json
import random

import pytest

from speechpipe.records import CallResult, Utterance, Word
from speechpipe.redact import PLACEHOLDERS, PseudonymKeyError, pseudonymise_id, redact_call, redact_text

RNG_SEED = 7


def _check(digits: str, weights) -> int | None:
    r = 11 - sum(int(d) * w for d, w in zip(digits, weights)) % 11
    return 0 if r == 11 else (None if r == 10 else r)


def make_fnr(rng: random.Random, d_number: bool = False) -> str:
    while True:
        day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(0, 99)
        base = f"{day + (40 if d_number else 0):02d}{month:02d}{year:02d}{rng.randint(0, 999):03d}"
        k1 = _check(base, (3, 7, 6, 1, 8, 9, 4, 5, 2))
        if k1 is None:
            continue
        k2 = _check(base + str(k1), (5, 4, 3, 2, 7, 6, 5, 4, 3, 2))
        if k2 is not None:
            return base + str(k1) + str(k2)


def make_account(rng: random.Random) -> str:
    while True:
        base = "".join(str(rng.randint(0, 9)) for _ in range(10))
        k = _check(base, (5, 4, 3, 2, 7, 6, 5, 4, 3, 2))
        if k is not None:
            return base + str(k)


def fmt_fnr(n: str, rng) -> str:
    return rng.choice([n, f"{n[:6]} {n[6:]}", f"{n[:6]}-{n[6:]}", f"{n[:2]} {n[2:4]} {n[4:6]} {n[6:9]} {n[9:]}"])


def fmt_account(n: str, rng) -> str:
    return rng.choice([n, f"{n[:4]}.{n[4:6]}.{n[6:]}", f"{n[:4]} {n[4:6]} {n[6:]}"])


def make_phone(rng) -> str:
    n = rng.choice("4923") + "".join(str(rng.randint(0, 9)) for _ in range(7))
    body = rng.choice([n, f"{n[:4]} {n[4:]}", f"{n[:2]} {n[2:4]} {n[4:6]} {n[6:]}", f"{n[:3]} {n[3:5]} {n[5:]}"])
    return rng.choice(["", "", "+47 ", "0047 ", "+47"]) + body


FIRST = ["kari", "ola", "per.olav", "anne-lise", "mohammed", "siri89", "jon_erik", "åse"]
DOMAINS = ["gmail.com", "online.no", "hotmail.com", "firma.no", "uio.no", "epost.kommune.no"]
STREETS = ["Storgata", "Kirkeveien", "Thorvald Meyers gate", "Bygdøy allé", "Solheimsveien", "Fjellveien",
           "Sandviksbakken", "Olav Kyrres gate", "Haugesundsgata", "Kongens gate", "Nordre Skogvei", "Elvegata"]
POST = ["0155 Oslo", "5003 Bergen", "7010 Trondheim", "9008 Tromsø"]

POSITIVE_TEMPLATES = {
    "national_id": ["Fødselsnummeret mitt er {x}.", "Ja, det er {x}", "{x}, heter jeg, eh, det er nummeret.",
                    "Kan du bekrefte fødselsnummer? {x}."],
    "d_number": ["Jeg har D-nummer, det er {x}.", "D-nummeret er {x}"],
    "bank_account": ["Kontonummeret er {x}.", "Pengene går til {x}, tror jeg.", "Ja, konto {x}"],
    "phone": ["Du kan ringe meg på {x}.", "Nummeret mitt er {x}, etter klokka fire.", "Ring {x} hvis det haster",
              "Mobilen min, {x}."],
    "email": ["Send det til {x}, da.", "E-posten min er {x}", "Du når meg på {x}."],
    "address": ["Jeg bor i {x}.", "Adressen er {x}", "Send brevet til {x}, takk."],
}

NEGATIVES = [
    "Du får 12 500 kroner i måneden.",
    "Det blir 1 250 000 kroner i året.",
    "Utbetalingen er kr 23 450,50.",
    "Beløpet er 12 500 000 kroner totalt.",
    "Du har fått 18000 kroner.",
    "Det er 45 678 900 kr i saken.",
    "Vedtaket er fra 12.03.2024.",
    "Den gjelder fra 01.01.2024 til 31.12.2024.",
    "Den 1. mars 2024 kom brevet.",
    "Jeg sendte den 12/3-24.",
    "Saksnummeret er 12345678.",
    "Saksnummer 24681357, ja.",
    "Det står sak 87654321 på brevet.",
    "Journalpostnummer 123456789.",
    "Referanse 2024-123456.",
    "Organisasjonsnummeret er 987654321.",
    "Det står 12345678901 på arket.",
    "Nummeret 01010112345 er feil.",
    "Les mer på nav.no.",
    "Gå til www.nav.no/meldekort.",
    "Skriv til oss på nav.no under «Skriv til oss».",
    "Ring 113 eller 116 117.",
    "Du jobber 50 prosent.",
    "Klokka 08.00 åpner vi.",
    "I 2023 tjente du 420 000.",
    "Uke 12 og 13.",
    "Det er veien videre 3 ganger.",
    "Vi var i Italia 2 uker.",
    "Jeg bor i Storgata.",
    "Det tar 4 til 6 uker.",
    "Du har 26 uker igjen.",
    "Meldekortet for periode 10 og 11.",
    "Det er 1 2 3 4 5 6 7 8 på skjermen.",
    "Postnummeret er 0155.",
    "Kontoret ligger ved torget.",
    "Han er 45 år.",
]


def build_test_set(n_per_type: int = 60, seed: int = RNG_SEED):
    """(text, expected counts per type) pairs."""
    rng = random.Random(seed)
    gen = {
        "national_id": lambda: fmt_fnr(make_fnr(rng), rng),
        "d_number": lambda: fmt_fnr(make_fnr(rng, d_number=True), rng),
        "bank_account": lambda: fmt_account(make_account(rng), rng),
        "phone": lambda: make_phone(rng),
        "email": lambda: f"{rng.choice(FIRST)}.{rng.choice(['nordmann', 'hansen', 'berg'])}@{rng.choice(DOMAINS)}",
        "address": lambda: f"{rng.choice(STREETS)} {rng.randint(1, 120)}{rng.choice(['', '', 'B', ' a'])}"
        + rng.choice(["", f", {rng.choice(POST)}"]),
    }
    items = []
    for kind, g in gen.items():
        for _ in range(n_per_type):
            items.append((rng.choice(POSITIVE_TEMPLATES[kind]).format(x=g()), {kind: 1}))
    return items


def evaluate(items, negatives):
    hits = {k: [0, 0] for k in PLACEHOLDERS}  # found, total
    wrong_type = 0
    for text, want in items:
        _, got = redact_text(text)
        for kind, n in want.items():
            hits[kind][1] += n
            hits[kind][0] += min(n, got.get(kind, 0))
        wrong_type += sum(v for k, v in got.items() if k not in want)
    false_red = [(t, c) for t in negatives for c in [redact_text(t)[1]] if c]
    return hits, wrong_type, false_red


@pytest.fixture(scope="module")
def gold_utterances(shared):
    return [u["text"] for f in sorted((shared / "tagger-dev").glob("*.json"))
            for u in json.loads(f.read_text(encoding="utf-8"))["utterances"]]


def test_recall_and_false_redactions(gold_utterances):
    items = build_test_set()
    hits, wrong_type, false_red = evaluate(items, NEGATIVES + gold_utterances)
    print(
        f"\nredaction test set: {len(items)} positives, {len(NEGATIVES)} look-alikes "
        f"+ {len(gold_utterances)} gold utterances"
    )
    print(f"{'type':14} {'found':>6} {'total':>6} {'recall':>7}")
    for kind, (f, t) in hits.items():
        print(f"{kind:14} {f:6d} {t:6d} {f / t:7.3f}")
    total_f, total_t = sum(h[0] for h in hits.values()), sum(h[1] for h in hits.values())
    print(f"{'all':14} {total_f:6d} {total_t:6d} {total_f / total_t:7.3f}")
    print(f"wrong-type redactions in positives: {wrong_type}; false redactions in negatives: {len(false_red)}")
    for kind, (f, t) in hits.items():
        assert f / t >= 0.95, kind
    assert wrong_type == 0
    assert not false_red, false_red


def test_wrong_check_digits_are_kept():
    rng = random.Random(3)
    fnr = make_fnr(rng)
    bad = fnr[:10] + str((int(fnr[10]) + 1) % 10)
    acc_bad = [d for d in (bad,) if _check(d[:10], (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)) != int(d[10])]
    if acc_bad:  # not accidentally a valid account number either
        assert redact_text(f"Nummeret er {bad}.")[1] == {}
    assert redact_text(f"Nummeret er {fnr}.")[1] == {"national_id": 1}


def test_redact_call_words_consistent_and_no_originals():
    phone = "91 23 45 67"
    toks = ["Du", "kan", "ringe", "meg", "på", *phone.split(), "i", "morgen."]
    words = [Word(" " + t, i * 0.3, i * 0.3 + 0.25) for i, t in enumerate(toks)]
    text = " ".join(toks)
    call = CallResult("c", [Utterance("caller", 0.0, 4.0, text, words=words, acts=["request"],
                                      evidence={"request": "ringe meg på 91 23 45 67"})])
    out = redact_call(call)
    u = out.utterances[0]
    assert u.text == "Du kan ringe meg på [TELEFONNUMMER] i morgen."
    assert [w.text.strip() for w in u.words] == ["Du", "kan", "ringe", "meg", "på", "[TELEFONNUMMER]", "i", "morgen."]
    merged = u.words[5]
    assert (merged.start, merged.end) == (words[5].start, words[8].end)
    assert "91" not in u.evidence["request"]
    assert out.redaction["counts"]["phone"] == 1
    assert out.redaction["placeholders"] == [
        {"utterance": 0, "type": "phone", "placeholder": "[TELEFONNUMMER]", "n": 1}
    ]
    dumped = json.dumps(out.to_dict(), ensure_ascii=False)
    assert "45 67" not in dumped and "91" not in dumped
    assert call.utterances[0].text == text  # input untouched


def test_pseudonymise_keyed_and_stable(tmp_path, monkeypatch):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"RIFF one")
    b.write_bytes(b"RIFF two")
    monkeypatch.setenv("SPEECHPIPE_PSEUDONYM_KEY", "secret-1")
    ida, idb = pseudonymise_id(a), pseudonymise_id(b)
    assert ida != idb and ida == pseudonymise_id(a) and "a" != ida
    monkeypatch.setenv("SPEECHPIPE_PSEUDONYM_KEY", "secret-2")
    assert pseudonymise_id(a) != ida  # the key matters
    monkeypatch.delenv("SPEECHPIPE_PSEUDONYM_KEY")
    with pytest.raises(PseudonymKeyError, match="SPEECHPIPE_PSEUDONYM_KEY"):
        pseudonymise_id(a)
