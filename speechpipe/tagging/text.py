"""Text side of the tagger: normalisation, n-grams and cue families.

Two implementations of the same thing, kept side by side on purpose:

* :func:`normalise_tokens` works on one string with plain Python — the readable
  reference, used by the per-utterance tagger and by training;
* :func:`text_ngram_matrix` does the same for many strings at once with a
  handful of C-level string operations on one joined string plus numpy, so a
  batch of a million utterances costs no Python work per utterance.

Both see text as speech recognition produces it: bracket notes («[gråter]»)
removed, lower case, punctuation gone, spelling variants («okei», «ikkje»,
«kor») folded to one form, digits folded to ``<num>``. Only ``?``, ``!`` and
shouted capitals are kept as separate flags, because ASR never produces them
and the model must not depend on them.

Examples
--------
>>> normalise_tokens("Okei. Kan jeg få fødselsnummeret ditt? [sukker]")
['ok', 'kan', 'jeg', 'få', 'fødselsnummeret', 'ditt']
>>> ngrams(['ja'])
['ja', '<s> ja', 'ja </s>', '<s> ja </s>']
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd
import scipy.sparse as sp

BRACKETS = re.compile(r"\[[^\]\ue000]*\]")  # never across the batch separator
SHOUT = re.compile("[A-ZÆØÅ]{4,}")  # four capitals in a row: shouting, not «NAV»/«AAP»
SEP = "\ue000"  # private-use char (not whitespace for str.split) joins many texts
BOS, EOS = "<s>", "</s>"
NUM = "<num>"

# Punctuation becomes space; hyphens and dots inside words too («nav.no», «AAP-en»)
# because ASR writes them either way.
_PUNCT = "!\"#$%&'()*+,-./:;<=>?@\\^_`{|}~«»“”‘’…–—\t\n\r"
TRANSLATE = str.maketrans({c: " " for c in _PUNCT})

# Spelling variants seen in ASR output and dialect speech → one canonical form.
CANONICAL = {
    "okei": "ok", "okey": "ok", "okay": "ok", "oki": "ok", "okej": "ok",
    "m": "mm", "mmm": "mm", "mhm": "mm", "mmhm": "mm", "mhmm": "mm", "hm": "mm", "hmm": "mm", "mmh": "mm",
    "jepp": "ja", "japp": "ja", "jaa": "ja", "jah": "ja", "jada": "ja", "jadda": "ja",
    "neida": "nei", "næ": "nei", "nope": "nei",
    "æ": "jeg", "eg": "jeg", "e": "jeg", "je": "jeg",
    "ikkje": "ikke", "ikkj": "ikke", "itj": "ikke", "ikk": "ikke", "ittj": "ikke", "isje": "ikke",
    "ka": "hva", "kva": "hva", "hæ": "hva",
    "kordan": "hvordan", "koss": "hvordan", "korleis": "hvordan", "åssen": "hvordan", "hvorsen": "hvordan",
    "kor": "hvor", "kvar": "hvor",
    "kvifor": "hvorfor", "koffor": "hvorfor", "kafor": "hvorfor",
    "dokker": "dere", "dåkker": "dere", "dykk": "dere",
    "mæ": "meg", "dæ": "deg", "sæ": "seg",
    "heisann": "hei", "hallo": "hei", "hei-hei": "hei",
    "huff": "uff", "uffda": "uff", "uffa": "uff",
    "oj": "oi", "oii": "oi", "jøsses": "jøss",
    "mye": "mye", "tida": "tiden", "ventet": "venta",
    # v3.1: Nynorsk and dialect spellings of common function and cue words → the Bokmål form the cue families use
    # (standard Nynorsk, not dev-call wording: «eg er heilt einig» must meet «jeg er helt enig»)
    "heilt": "helt", "einig": "enig", "einige": "enige", "meir": "mer", "noko": "noe", "nokon": "noen",
    "nokre": "noen", "berre": "bare", "veit": "vet", "skjønar": "skjønner", "skjøner": "skjønner",
    "høyrest": "høres", "høyres": "høres", "høyrer": "hører", "sjå": "se", "kjem": "kommer", "vere": "være",
    "frå": "fra", "mykje": "mye", "mykkje": "mye", "fleire": "flere", "òg": "også", "då": "da", "dei": "de",
    "ein": "en", "eit": "et", "kven": "hvem", "korfor": "hvorfor", "treng": "trenger",
    "fekk": "fikk", "hugsar": "husker", "lurar": "lurer", "ringjer": "ringer", "gjeld": "gjelder",
    "vanskeleg": "vanskelig", "leitt": "leit", "beklagar": "beklager", "augeblikk": "øyeblikk",
    "augneblikk": "øyeblikk", "velkomen": "velkommen", "heime": "hjemme", "saman": "sammen", "difor": "derfor",
    "medan": "mens", "seier": "sier", "sei": "si", "tek": "tar", "set": "setter", "ventar": "venter",
    "søkje": "søke", "hjelpa": "hjelpe",
}

# Cue families: phrases of canonical tokens (with <s>/</s> for position) that the
# empathic-communication method names for each act. They are written from the
# method and from ordinary Norwegian, not copied from the dev calls, so they carry
# over to calls the model has not seen; the n-grams learn the rest.
CUE_FAMILIES: dict[str, list[str]] = {
    "greeting": ["hei", "god morgen", "god dag", "velkommen", "du snakker med", "ha det", "fin dag", "god dag",
                 "fin helg", "god helg", "ha en fin", "ha en god", "snakkes", "ha det godt", "ha det bra",
                 "takk for samtalen", "ønsker deg", "lykke til", "ta vare på deg",
                 "god kveld", "god natt", "fin kveld", "god ettermiddag", "riktig god", "ha en riktig",  # v3
                 # v3.1: how NKS answers the phone («Du har kommet til NAV») and the common Norwegian
                 # leave-taking wishes (god tur, god bedring, hils …): hello and goodbye in the guide. Not a
                 # bare «NAV» first: «NAV har ikke fått søknaden» would pass the greeting's word check.
                 "kommet til nav", "god formiddag", "god tur", "god bedring", "god jul", "god påske",
                 "god sommer", "hils", "alt godt", "alt det beste", "kos deg", "ha det fint", "ha en fortsatt",
                 # round 4: «NAV Kontaktsenter, Kari her.», «NAV, det er Kari.»
                 "nav kontaktsenter", "kontaktsenteret", "<s> nav det"],
    # round 4: the first word is «NAV»; with at most three words it is the phone greeting (features.PHONE_OPEN)
    "phone_open": ["<s> nav"],
    "exclaim": ["<s> oi", "<s> å", "<s> uff", "<s> jøss", "<s> au", "<s> wow", "så kjekt", "så gøy", "så fint",
                "gratulerer", "så leit", "så trist", "det var trist", "det var leit", "å nei", "stakkars",
                "auda", "så bra", "så hyggelig", "så flott", "trist å høre", "leit å høre", "oi", "uff", "jøss",
                "kjempebra", "kjempefint", "kjempegodt", "herlig", "så deilig"],  # v3: exclamations of joy
    "acknowledge": ["jeg skjønner", "jeg forstår", "forståelig", "høres ut", "det høres", "lurt", "godt spørsmål",
                    "bra at du", "fint at du", "godt at du", "klart at", "tungt", "slitsomt", "frustrerende",
                    "helt naturlig", "gjorde du riktig", "gjort riktig", "ta den tiden", "jeg er her",
                    "ikke rart", "mye å stå i", "skjønner godt", "forstår godt", "bra spørsmål", "godt gjort",
                    "gjort alt riktig", "det er klart",
                    # round 4: reassurance and validation in everyday wording
                    "det går fint", "går helt fint", "med ro", "ta deg tid", "gjør du bra", "godt forstå",
                    "kan jeg godt forstå", "det er forståelig"],
    "agree": ["du har rett", "du har helt rett", "du har jo rett", "har rett", "rett i", "helt rett", "enig",
        "helt enig", "jeg er enig", "enig med deg", "forstår at du reagerer", "det skal ikke være",
        "det er ikke rimelig", "skulle ikke", "burde",
        # v3: siding with the caller in wider wording
        "det er sant", "enig i", "god plan", "god idé", "fornuftig", "helt riktig av deg", "der er vi enige",
        # round 4: siding with the caller (the guide: «Du har helt rett i at …»), ordinary wording
        "et poeng", "ikke alene om", "sånn det skal være", "helt sant", "sant nok", "der har du"],
    "open_q": ["<s> hva", "<s> hvordan", "<s> hvorfor", "<s> når", "<s> hvor", "<s> hvem", "<s> hvilken",
               "<s> hvilke", "<s> hvilket", "fortell", "hva gjelder", "hva tenker", "hva kan jeg", "hva er det",
               "hvordan har", "hva heter", "ok hva", "ok hvordan", "ja hva", "ja hvordan", "ok når", "ja når"],
    "wh_any": ["hva", "hvordan", "hvorfor", "når", "hvor", "hvem", "hvilken", "hvilke"],
    "what_more": ["noe mer", "noe annet", "flere ting", "andre ting", "var det noe", "er det noe", "noe mer du",
                  "noe annet du", "var det alt", "var det flere", "noe mer jeg", "noe annet jeg", "noe mer vi",
                  "andre spørsmål", "flere spørsmål", "noe du lurer", "hjelpe deg med noe"],
    "closed_q": ["<s> har", "<s> er", "<s> kan", "<s> vil", "<s> skal", "<s> går", "<s> må", "<s> vet",
                 "<s> ønsker", "<s> passer", "<s> høres", "<s> stemmer", "<s> får", "<s> trenger", "<s> husker",
                 "<s> fikk", "<s> sendte", "<s> bor", "<s> jobber", "<s> mottar", "<s> hadde", "<s> var",
                 "er det greit", "er det ok", "går det bra", "har du", "kan jeg få", "vil du", "skal jeg",
                 "eller", "høres det", "passer det", "stemmer det", "er du", "ok kan", "ok har", "ja kan",
                 "ja har"],
    "contract": ["først", "foreslår", "begynne med", "starte med", "da ser vi", "så ser vi", "vi tar",
                 "da tar vi", "skal vi", "to ting", "begge deler", "det ene", "etterpå", "og så ser",
                 "se på begge", "ta det ene", "vi ser på"],
    "news": ["dessverre", "heldigvis", "gode nyheter", "dårlige nyheter", "ikke så gode", "godt nytt",
             "jeg må si", "beklager", "trist å si", "jeg skulle gjerne", "bra nyheter",
             "jeg må dessverre", "ikke så gode nyheter", "jeg skulle ønske", "jeg er redd for at", "nyheter",
             "kjipt å si",
             # v3: framing before a message, in wider wording
             "det gode er", "det gode her", "ikke det du håpte", "kan berolige", "må være ærlig", "skal være ærlig",
             "må være tydelig", "må nok si", "bare gode", "kan ikke love", "vær forberedt", "godt nytt er",
             # round 4: singular «nyhet» and more framing words
             "nyhet", "dårlig nytt", "uheldigvis", "beklageligvis", "lei for å si", "det positive"],
    "summary": ["så da", "oppsummer", "da har vi", "da har jeg", "neste steg", "det vi har", "det vi ble",
                "så det du", "da gjør du", "da sender du", "så sender", "så gjør", "som vi har", "vi ble enige",
                "så da er", "da er det", "avtalt",
                "oppsummere", "oppsummerer", "for å oppsummere", "det vi har avtalt", "vi har avtalt",
                "da ringer du", "da får du", "da vet du", "det du skal gjøre", "så det blir", "da sender jeg",
                "da har vi tatt", "så du"],
    "hold": ["øyeblikk", "et lite øyeblikk", "vent", "venter", "venta", "på vent", "sjekker", "la meg se",
             "skal se", "et sekund", "to sekunder", "bare et øyeblikk", "takk for at du venta", "sjekke",
             # round 4: more ordinary hold wording (infinitive «vente», holding the line, thanks for patience)
             "vente litt", "vente et", "holde linja", "holde linjen", "tålmodigheten", "tålmodig", "et minutt",
             "et halvt minutt", "et par minutter", "tok litt tid"],
    "referral": ["setter deg over", "sette deg over", "over til", "kollega", "henvise", "henviser", "henvist",
        "henvende deg", "legevakt", "ambulanse",
        # v3: the guide's "refers to another unit" in wider wording (a message to the local office, another line)
        "beskjed til", "melding til", "henvendelse til", "videre til", "koble deg", "sjekke med", "egen telefon",
        "eget nummer", "egen linje",
        # round 4: transfer and message verbs in more forms
        "overføre", "overfører", "koble deg videre", "sende en beskjed", "sender en beskjed", "sendt en beskjed",
        "sende en melding", "sendt en melding", "legge inn en beskjed", "må du kontakte", "du må kontakte",
        "ta det opp med", "sjekke hos"],
    "info": ["du kan", "du må", "reglene", "behandlingstid", "uker", "kroner", "prosent", "logg inn",
             "logger inn", "nav no", "trykk", "søknad", "vedtak", "utbetal", "jeg ser", "står", "frist",
             "gå inn på", "velg", "knappen", "det er sånn", "det betyr", "da får du", "du får", "du har rett på",
             "må du", "kan du", "i systemet", "registrert", "<num>", "dager", "måneder", "det vil si"],
    "emotion": ["lei", "lei meg", "fortvilet", "fortvila", "redd", "livredd", "bekymret", "stresset", "stressa",
        "sint", "frustrert", "irritert", "nervøs", "urolig", "sliten", "panikk", "angst", "gruer", "gråter",
        "gråte", "tungt", "tynger", "skummelt", "skremmende", "satt ut", "forvirra", "forvirret", "flaut",
        "skammer", "jeg er så", "jeg blir så", "jeg blir helt", "jeg føler", "føler meg", "håpløst",
        "helt håpløst", "umulig", "krise", "vondt", "alene", "redsel", "tør ikke", "jeg er redd", "jeg er bekymret",
        # round 4: more ordinary feeling words, relief and shock included (the guide: "voices a feeling")
        "glad", "lettet", "letta", "sjokkert", "skuffet", "skuffa", "oppgitt", "trist", "engstelig", "desperat",
        "maktesløs", "hjelpeløs", "ulykkelig", "utslitt", "slitsomt", "tøft", "trangt", "sykt", "kaos", "mareritt",
        "gruet", "gruer meg", "forbanna", "dritlei", "drittlei", "helt ute", "bekymra", "stressende", "stress",
        "fortvilelse", "sorg", "savner", "ensom", "redd for",
        # round 4: relief, disbelief and distress in everyday words
        "endelig", "deilig", "vilt", "løgn", "stoler ikke", "ikke vits", "jævlig", "så ille", "trodde aldri", "kjipt"],
    "request": ["jeg lurer", "lurer på", "jeg ringer", "ringer fordi", "ringer om", "ringer angående",
                "gjelder", "jeg vil", "jeg skulle", "jeg lurte", "når kommer", "når får", "hvor mye",
                "spørsmål", "lure på", "jeg trenger", "kan dere", "kan jeg", "må jeg", "får jeg", "hvordan",
                "hva skal jeg", "hva gjør jeg", "er det mulig", "går det an",
                "lurte på", "jeg ringer fordi", "jeg ringer om", "det gjelder", "jeg lurer litt", "kan man",
                "skal jeg", "hva skjer", "hva må jeg", "er det dere", "jeg vil vite", "har ikke fått", "ikke fått"],
    "new_topic": ["en ting til", "ting til", "én ting til", "og så var det", "forresten", "mens jeg har deg",
        "nå som jeg har deg", "når jeg har deg", "da jeg har deg", "først har deg", "har deg på tråden",
        "nå når du sier det", "jeg lurte også", "lurte også på", "en annen ting", "et annet spørsmål",
        "et spørsmål til", "en sak til", "noe helt annet", "apropos",
        # round 4
        "før du legger på", "siste ting", "en siste ting", "noe annet også"],
    "handover": ["gi telefonen", "gir telefonen", "tar telefonen", "gir deg", "min mann", "mannen min", "kona mi",
                 "datteren min", "sønnen min", "her er", "snakke med deg", "jeg heter", "dattera", "overta",
                 "ta telefonen", "kan han ta", "kan hun ta", "ta dette", "ta over", "kona min", "står her",
                 "er her", "vil snakke", "vil spørre", "datteren", "sønnen", "mannen"],
    "decline": ["nei det var alt", "det var alt", "nei det var det", "det var det", "nei takk", "ikke fra meg",
                "<s> nei", "nei ikke", "det var bare det"],
    "swear": ["faen", "jævla", "helvete", "dritt", "herregud", "fy", "fy faen", "pokker", "søren"],
    "complaint": ["svarer aldri", "dere svarer aldri", "ingen har sagt", "ingen hjelper", "ingen svarer",
        "dere sitter", "typisk nav", "aner ikke", "urettferdig", "ikke rettferdig", "helt sykt", "helt utrolig",
        "min feil", "fantastisk", "helt fantastisk", "dere har", "dere må"],
    "relief": ["lettelse", "så godt å høre", "godt å høre", "roligere", "puh", "så glad", "takknemlig", "så snill",
        "nå er jeg", "så fint"],
    "cope_neg": ["klarer ikke", "orker ikke", "orker", "tåler ikke", "vet ikke hva jeg", "vet ikke hvordan jeg",
        "får ikke puste", "ikke sovet", "sover ikke", "ikke legg på", "har ikke penger", "ingen penger",
        "ikke mat", "ingenting", "ikke nok", "ikke frisk", "hva skal jeg gjøre"],
    "topic_shift": ["<s> og så", "<s> men", "i tillegg", "noe annet", "faktisk", "egentlig", "også", "en ting"],
    "refer_verb": ["ta kontakt med", "kontakte", "du må ringe", "må du ringe", "ringe dem", "snakke med", "gå til",
        "tar du med", "ta det med", "sende en melding til", "sender en melding til", "sende melding til",
        "ber dem", "ringe deg", "kontakte deg", "ta kontakt med deg", "de kan hjelpe", "som kan hjelpe deg",
        "det er de som", "du må snakke"],
    "other_unit": ["nav kontoret", "nav kontoret ditt", "kontoret", "kommunen", "skatteetaten", "kollega",
        "veilederen din", "veileder", "banken", "kundeservice", "fastlegen", "legen", "avdelingen",
        "innkrevingsavdelingen", "folkeregisteret", "servicetorget", "eget telefonnummer", "arbeidsgiveren",
        "sykehuset", "dem", "husbanken", "lånekassen", "helfo", "hjelpemiddelsentralen", "nav kontoret ditt",
        "det lokale", "gjeldsrådgivning", "økonomisk rådgivning",
        # round 4: other public services
        "arbeidstilsynet", "politiet", "barnevernet", "familievernet", "krisesenter", "statsforvalteren", "legevakten",
        "fastlege"],
    "evaluative": ["kjedelig", "dumt", "urimelig", "frustrerende", "altfor", "skikkelig", "tungvint", "vanskelig",
        "ikke lett", "ikke greit", "ikke bra", "leit", "forståelig", "for galt", "rart",
        "kjipt", "irriterende", "innviklet", "komplisert", "ikke enkelt", "vanskelig å forstå"],  # round 4
    "agree_frame": ["det er jo", "<s> ja det er", "<s> nei det er", "der er jeg", "du har", "har rett", "enig",
        "rett i", "det er", "det var"],
    "thanks": ["takk", "tusen takk", "takk skal du ha", "bare hyggelig"],
}

# Conjunctions of two families (e.g. a referral verb *and* another unit), as extra text flags.
FAMILY_PAIRS = (("refer_verb", "other_unit"), ("agree_frame", "evaluative"), ("topic_shift", "request"),
                ("cope_neg", "emotion"))

# Minimal responses: an utterance made only of these is a backchannel candidate.
MINIMAL = frozenset(
    "ja mm nei ok ikke sant akkurat jaha javel vel nettopp skjønner å jo klart greit supert flott fint aha "
    "hm jasså så det stemmer riktig precis ok".split()
)


def clean_text(text: str) -> str:
    """Lower-case text with bracket notes removed (before punctuation is stripped)."""
    return BRACKETS.sub(" ", text).lower()


def canonical(token: str) -> str:
    if token.isdigit():
        return NUM
    return CANONICAL.get(token, token)


def normalise_tokens(text: str) -> list[str]:
    """Reference tokenisation of one utterance (see module docstring)."""
    return [canonical(t) for t in clean_text(text).translate(TRANSLATE).split()]


def ngrams(tokens: list[str]) -> list[str]:
    """Uni-, bi- and trigrams of ``<s> tokens </s>`` (one-token texts get ``<s> t </s>``).

    Unigrams are the tokens themselves; boundary markers appear only inside
    bigrams and trigrams.
    """
    if not tokens:
        return []
    seq = [BOS, *tokens, EOS]
    out = list(tokens)
    out += [f"{a} {b}" for a, b in zip(seq, seq[1:])]
    out += [f"{a} {b} {c}" for a, b, c in zip(seq, seq[1:], seq[2:])]
    return out


PREFIX_LEN = 5  # word-prefix features: the first 5 letters of longer words («bekymret», «bekymra» → «pfx:bekym»)
PFX = "pfx:"  # ':' is punctuation, so no text token can look like a prefix feature


def prefixes(tokens: list[str]) -> list[str]:
    """Word-prefix features of the tokens longer than :data:`PREFIX_LEN` (inflection and ASR spelling
    variants share them); one feature per token, next to the n-grams.

    >>> prefixes(["jeg", "bekymret", "<num>"])
    ['pfx:bekym']
    """
    return [PFX + t[:PREFIX_LEN] for t in tokens if len(t) > PREFIX_LEN and t != NUM]


LEM = "lem:"  # lemma features (tagger-v3): «ventet», «venta» → «lem:vente»; ':' never occurs in a token


@lru_cache(maxsize=200_000)
def lemma(token: str) -> str | None:
    """Lemma of one canonical token from simplemma's Bokmål and Nynorsk data (offline), None for ``<num>``.

    >>> lemma("henviser"), lemma("kollegaen")
    ('henvise', 'kollega')
    """
    if token == NUM or not token:
        return None
    import simplemma

    try:
        return simplemma.lemmatize(token, lang=("nb", "nn")).lower().replace(" ", "_")
    except Exception:  # noqa: BLE001 - a token simplemma cannot handle is its own lemma
        return token


def lemmas(tokens: list[str]) -> list[str]:
    """One lemma feature per word token (``lem:…``), so every inflection of a word shares one column."""
    return [LEM + x for x in map(lemma, tokens) if x]


def word_features(tokens: list[str], with_lemmas: bool = False) -> list[str]:
    """All text feature names of a token list: :func:`ngrams`, :func:`prefixes` (and :func:`lemmas`)."""
    return ngrams(tokens) + prefixes(tokens) + (lemmas(tokens) if with_lemmas else [])


CHAR_N = (3, 5)  # character n-gram lengths, within word boundaries
NO_CHARS = frozenset((NUM,))


def char_grams(token: str, n: tuple = CHAR_N) -> list[str]:
    """Character n-grams of one canonical token padded with spaces (as scikit-learn's ``char_wb``).

    Inflections, dialect spellings and ASR slips of a word share most of them.

    >>> char_grams("redd")
    [' re', 'red', 'edd', 'dd ', ' red', 'redd', 'edd ', ' redd', 'redd ']
    """
    if token in NO_CHARS:
        return []
    w = f" {token} "
    return [w[i:i + k] for k in range(n[0], n[1] + 1) for i in range(len(w) - k + 1)]


def text_char_grams(tokens: list[str]) -> set[str]:
    """All character n-grams of a token list (a set: features are binary)."""
    return {g for t in tokens for g in char_grams(t)}


def text_flags_reference(text: str) -> tuple[bool, bool, bool]:
    """``(question mark, exclamation mark, shouted word)`` for one raw text."""
    t = BRACKETS.sub(" ", text)
    shout = SHOUT.search(t) is not None
    return "?" in t, "!" in t, shout


# ---------------------------------------------------------------------------
# Vectorised path
# ---------------------------------------------------------------------------


class NgramIndex:
    """Maps token strings and n-gram keys to feature columns (built once per model).

    Parameters
    ----------
    vocab : list of str
        n-gram feature names (``"ja"``, ``"<s> ja"``, ``"er det noe"``), column order.
    """

    def __init__(self, vocab: list[str]):
        self.vocab = list(vocab)
        self.lemmas = any(g.startswith(LEM) for g in self.vocab)
        toks: dict[str, int] = {BOS: 0, EOS: 1}
        for g in self.vocab:
            for t in g.split(" "):
                toks.setdefault(t, len(toks))
        self.token_id = toks
        self.oov = len(toks)
        self.V = len(toks) + 1
        keys = np.array([self._key([toks[t] for t in g.split(" ")]) for g in self.vocab], dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        self.sorted_keys = keys[order]
        self.sorted_cols = order.astype(np.int64)

    def _key(self, ids: list[int]) -> int:
        # n-gram key: base-V digits, offset by n so that lengths never collide
        k = 0
        for i in ids:
            k = k * self.V + i
        return k * 4 + len(ids)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Column of each key, or -1 when the n-gram is not a feature."""
        if len(self.sorted_keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        pos = np.searchsorted(self.sorted_keys, keys)
        pos = np.minimum(pos, len(self.sorted_keys) - 1)
        hit = self.sorted_keys[pos] == keys
        return np.where(hit, self.sorted_cols[pos], -1)


def text_ngram_matrix(texts, index: NgramIndex, char_col: dict | None = None):
    """Binary n-gram matrix and flags for many texts with no per-text Python loop.

    Parameters
    ----------
    texts : sequence of str
        Raw utterance texts (typically the unique texts of a batch).
    index : NgramIndex

    Returns
    -------
    X : scipy.sparse.csr_matrix, shape (len(texts), len(index.vocab))
        1 where the n-gram occurs.
    flags : ndarray, shape (len(texts), 3), bool
        question mark, exclamation mark, shouted word.
    n_tokens : ndarray of int
    n_minimal : ndarray of int
        tokens that are minimal responses (:data:`MINIMAL`).
    Xc : scipy.sparse.csr_matrix, shape (len(texts), len(char_col))
        Only when ``char_col`` (character n-gram → column) is given: 1 where a
        :func:`char_grams` feature occurs. Computed per distinct token, then one
        sparse product (texts × tokens) @ (tokens × character n-grams).

    Examples
    --------
    >>> idx = NgramIndex(["ja", "<s> ja </s>", "noe mer"])
    >>> X, flags, n, m = text_ngram_matrix(["Ja.", "Er det noe mer?"], idx)
    >>> X.toarray().astype(int).tolist(), flags[:, 0].tolist(), n.tolist()
    ([[1, 1, 0], [0, 0, 1]], [False, True], [1, 4])
    """
    n = len(texts)
    nf = len(index.vocab)
    if n == 0:
        out = sp.csr_matrix((0, nf), dtype=np.float64), np.zeros((0, 3), bool), np.zeros(0, int), np.zeros(0, int)
        return out if char_col is None else (*out, sp.csr_matrix((0, len(char_col)), dtype=np.float64))
    raw = SEP.join(texts)
    if raw.count(SEP) != n - 1:  # a text contained the separator itself: make it harmless
        raw = SEP.join(t.replace(SEP, " ") for t in texts)
    raw = BRACKETS.sub(" ", raw)
    # Flags from code points: which text each character belongs to is a cumsum over separators.
    cp = np.frombuffer(raw.encode("utf-32-le"), dtype=np.uint32)
    owner = np.cumsum(cp == ord(SEP))
    flags = np.zeros((n, 3), dtype=bool)
    flags[owner[cp == ord("?")], 0] = True
    flags[owner[cp == ord("!")], 1] = True
    up = ((cp >= 65) & (cp <= 90)) | np.isin(cp, (0xC6, 0xD8, 0xC5))  # A–Z Æ Ø Å
    if len(up) >= 4:
        run4 = up[:-3] & up[1:-2] & up[2:-1] & up[3:]
        flags[owner[:-3][run4], 2] = True
    # One lower/translate/split over the whole batch; separators become tokens.
    low = raw.lower().translate(TRANSLATE).replace(SEP, f" {SEP} ")
    # Unique surface tokens are few: map them (canonical form → id) once each.
    inv, uniq = pd.factorize(np.array(low.split(), dtype=object))
    tid = index.token_id
    sep_tok, eos = -1, 1
    uid = np.array([sep_tok if u == SEP else tid.get(canonical(u), index.oov) for u in uniq], dtype=np.int64)
    canon = [canonical(u) for u in uniq]
    pid = np.array([tid.get(PFX + c[:PREFIX_LEN], -1) if len(c) > PREFIX_LEN and c != NUM and u != SEP else -1
                    for u, c in zip(uniq, canon)], dtype=np.int64)
    lid = np.array([tid.get(LEM + (lemma(c) or ""), -1) if u != SEP and lemma(c) else -1
                    for u, c in zip(uniq, canon)], dtype=np.int64) if index.lemmas else None
    mini = np.array([canonical(u) in MINIMAL for u in uniq], dtype=bool)
    ids = uid[inv.reshape(-1)]
    is_sep = ids == sep_tok
    owner_tok = np.cumsum(is_sep)
    words = ~is_sep
    n_tokens = np.bincount(owner_tok[words], minlength=n)
    n_minimal = np.bincount(owner_tok[words & mini[inv.reshape(-1)]], minlength=n)
    # Bracket every text with <s> … </s>: separators sit between texts, so put a
    # separator at both ends and read a separator as BOS (right side) or EOS (left side).
    ids = np.concatenate(([sep_tok], ids, [sep_tok]))
    owner_tok = np.concatenate(([0], owner_tok, [n - 1]))
    is_sep = ids == sep_tok
    left = np.where(is_sep, 0, ids)  # separator on the left of an n-gram = BOS
    right = np.where(is_sep, eos, ids)  # separator on the right = EOS
    V = index.V
    rows, keys = [], []
    w = ~is_sep
    rows.append(owner_tok[w])
    keys.append(ids[w] * 4 + 1)
    # bigrams: at least one side is a word (two separators = an empty text)
    a, b = slice(0, -1), slice(1, None)
    ok2 = ~(is_sep[a] & is_sep[b])
    own2 = np.where(is_sep[a], owner_tok[b], owner_tok[a])
    rows.append(own2[ok2])
    keys.append(((left[a] * V + right[b]) * 4 + 2)[ok2])
    # trigrams: the middle must be a word; the ends may be boundaries
    a, m, c = slice(0, -2), slice(1, -1), slice(2, None)
    ok3 = ~is_sep[m]
    rows.append(owner_tok[m][ok3])
    keys.append((((left[a] * V + ids[m]) * V + right[c]) * 4 + 3)[ok3])
    # word prefixes: one unigram-like key per word that has a prefix feature
    tok_pid = np.concatenate(([-1], pid[inv.reshape(-1)], [-1]))
    hasp = tok_pid >= 0
    rows.append(owner_tok[hasp])
    keys.append(tok_pid[hasp] * 4 + 1)
    if lid is not None:  # lemmas: the same, one key per word whose lemma is a feature
        tok_lid = np.concatenate(([-1], lid[inv.reshape(-1)], [-1]))
        hasl = tok_lid >= 0
        rows.append(owner_tok[hasl])
        keys.append(tok_lid[hasl] * 4 + 1)
    rows = np.concatenate(rows)
    cols = index.lookup(np.concatenate(keys))
    keep = cols >= 0
    X = sp.csr_matrix((np.ones(int(keep.sum())), (rows[keep], cols[keep])), shape=(n, nf))
    X.sum_duplicates()
    X.data[:] = 1.0
    if char_col is None:
        return X, flags, n_tokens, n_minimal
    # Character n-grams: a (distinct token × feature) table built once per distinct surface
    # token, then text rows = occurrences (texts × distinct tokens) @ that table.
    tr, tc = [], []
    for j, (u, c) in enumerate(zip(uniq, canon)):
        if u == SEP:
            continue
        cs = {char_col[g] for g in char_grams(c) if g in char_col}
        tr += [j] * len(cs)
        tc += cs
    T = sp.csr_matrix((np.ones(len(tr)), (tr, tc)), shape=(len(uniq), len(char_col)))
    flat_inv = inv.reshape(-1)
    wtok = flat_inv[words]
    occ = sp.csr_matrix((np.ones(len(wtok)), (owner_tok[1:-1][words], wtok)), shape=(n, len(uniq)))
    Xc = (occ @ T).tocsr()
    Xc.data[:] = 1.0
    return X, flags, n_tokens, n_minimal, Xc
