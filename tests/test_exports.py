"""Research exports: each file is re-read with its own library and compared to the call JSON."""

from __future__ import annotations

import json
import os
import stat

import pytest
from test_exports_data import text_call, timed_call

from speechpipe.outputs import ALL_FORMATS, parse_formats, write_outputs
from speechpipe.records import ACTS, INTONATIONS, PHASES, CallResult


def _secs(ts: str) -> float:
    h, m, s = ts.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


@pytest.fixture(scope="module")
def written(shared, tmp_path_factory):
    """dev-005 (has backchannels with intonation and breaths) written in every format, read back from its JSON."""
    out = tmp_path_factory.mktemp("exports") / "out"
    call = timed_call(shared / "audio/sim-calls/dev-005.ref.json")
    paths = write_outputs(call, out, ALL_FORMATS)
    back = CallResult.from_dict(json.loads(paths[0].read_text(encoding="utf-8")))
    return out, paths, back


def test_all_formats_written_private(written):
    out, paths, call = written
    names = sorted(p.name for p in paths)
    cid = call.call_id
    assert paths[0].name == f"{cid}.json"
    for ext in ("json", "rttm", "vtt", "srt", "TextGrid", "eaf", "utterances.parquet", "call.parquet", "html"):
        assert f"{cid}.{ext}" in names
    for p in paths:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o700
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # no audio is copied next to the outputs
    assert not [p for p in out.iterdir() if p.suffix.lower() in (".wav", ".flac", ".mp3", ".ogg")]


def test_rttm_round_trip(written):
    from pyannote.database.util import load_rttm

    out, _, call = written
    ann = load_rttm(out / f"{call.call_id}.rttm")[call.call_id]
    got = sorted((round(s.start, 3), round(s.end, 3), lab) for s, _, lab in ann.itertracks(yield_label=True))
    want = sorted((u.start, u.end, u.speaker) for u in call.utterances)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[2] == w[2] and g[0] == pytest.approx(w[0], abs=1e-3) and g[1] == pytest.approx(w[1], abs=1e-3)


def test_vtt_round_trip(written):
    import webvtt

    out, _, call = written
    caps = webvtt.read(str(out / f"{call.call_id}.vtt")).captions
    assert len(caps) == len(call.utterances)
    for c, u in zip(caps, call.utterances):
        assert c.voice.lower() == u.speaker
        assert c.text == " ".join(u.text.split())
        assert _secs(c.start) == pytest.approx(u.start, abs=1e-3) and _secs(c.end) == pytest.approx(u.end, abs=1e-3)


def test_srt_round_trip(written):
    import srt

    out, _, call = written
    subs = list(srt.parse((out / f"{call.call_id}.srt").read_text(encoding="utf-8")))
    assert len(subs) == len(call.utterances)
    for s, u in zip(subs, call.utterances):
        assert s.content == f"[{u.speaker}] {' '.join(u.text.split())}"
        assert s.start.total_seconds() == pytest.approx(u.start, abs=1e-3)
        assert s.end.total_seconds() == pytest.approx(u.end, abs=1e-3)


def test_textgrid_round_trip(written):
    from praatio import textgrid

    out, _, call = written
    tg = textgrid.openTextgrid(str(out / f"{call.call_id}.TextGrid"), includeEmptyIntervals=False)
    for spk in {u.speaker for u in call.utterances}:
        mine = [u for u in call.utterances if u.speaker == spk]
        turns = tg.getTier(spk).entries
        assert [e.label for e in turns] == [" ".join(u.text.split()) for u in mine]
        assert [e.start for e in turns] == pytest.approx([u.start for u in mine], abs=1e-3)
        words = tg.getTier(f"{spk}-words").entries
        assert [e.label for e in words] == [w.text for u in mine for w in u.words]
        acts = {
            (round(e.start, 3), e.label)
            for name in tg.tierNames
            if name.startswith(f"{spk}-acts")
            for e in tg.getTier(name).entries
        }
        assert acts == {(u.start, a) for u in mine for a in u.acts}
        bc = [(e.start, e.label) for e in tg.getTier(f"{spk}-backchannel").entries]
        assert bc == [
            (pytest.approx(u.start, abs=1e-3), u.intonation) for u in mine if "backchannel" in u.acts and u.intonation
        ]
    breaths = tg.getTier("caller-breaths").entries
    assert [(e.label == "heavy breath") for e in breaths] == [e.heavy for e in call.events]
    assert len(breaths) > 0
    # phases: the label sequence is the call's phase sequence with repeats collapsed
    seq = [u.phase for u in call.utterances]
    collapsed = [p for i, p in enumerate(seq) if i == 0 or p != seq[i - 1]]
    assert [e.label for e in tg.getTier("phases").entries] == collapsed


def test_eaf_round_trip_with_controlled_vocabulary(written):
    from pympi.Elan import Eaf

    out, _, call = written
    eaf = Eaf(str(out / f"{call.call_id}.eaf"))
    assert {"acts", "phases", "intonation"} <= set(eaf.get_controlled_vocabulary_names())
    cv_values = {
        cv: {v[0] for e in eaf.controlled_vocabularies[cv][1].values() for v in e[0]}
        for cv in ("acts", "phases", "intonation")
    }
    assert cv_values == {"acts": set(ACTS), "phases": set(PHASES), "intonation": set(INTONATIONS)}
    assert eaf.get_parameters_for_linguistic_type("acts-lt")["CONTROLLED_VOCABULARY_REF"] == "acts"
    for spk in {u.speaker for u in call.utterances}:
        mine = [u for u in call.utterances if u.speaker == spk]
        turns = sorted(eaf.get_annotation_data_for_tier(spk))
        assert [t[2] for t in turns] == [" ".join(u.text.split()) for u in mine]
        assert [t[0] for t in turns] == [round(u.start * 1000) for u in mine]
        acts = {(a, v) for name in eaf.get_tier_names() if name.startswith(f"{spk}-acts")
                for a, _, v in eaf.get_annotation_data_for_tier(name)}
        assert acts == {(round(u.start * 1000), a) for u in mine for a in u.acts}
        assert all(v in cv_values["acts"] for _, v in acts)
    phases = [v for _, _, v in sorted(eaf.get_annotation_data_for_tier("phases"))]
    assert set(phases) <= set(PHASES) and phases[0] == call.utterances[0].phase


def test_parquet_round_trip(written):
    import pyarrow.parquet as pq

    out, _, call = written
    t = pq.read_table(out / f"{call.call_id}.utterances.parquet").to_pylist()
    assert [r["text"] for r in t] == [u.text for u in call.utterances]
    assert [r["acts"] for r in t] == [u.acts for u in call.utterances]
    c = pq.read_table(out / f"{call.call_id}.call.parquet").to_pylist()[0]
    assert c["n_utterances"] == len(call.utterances) and c["structure"] == call.summary["structure"]


def test_text_only_result_skips_timed_formats(shared, tmp_path):
    call = text_call(shared / "tagger-dev/dev-007.json")
    names = {p.name for p in write_outputs(call, tmp_path, ALL_FORMATS)}
    assert names == {f"dev-007.{e}" for e in ("json", "utterances.parquet", "call.parquet", "html")}


def test_redacted_exports_hold_no_originals(shared, tmp_path):
    from speechpipe.redact import redact_call

    call = timed_call(shared / "audio/sim-calls/dev-001.ref.json")
    u = call.utterances[1]
    u.text = "Ja, hei, fødselsnummeret er 150765 00565 og mobilen 912 34 567."
    from test_exports_data import _words

    u.words = _words(u.text, u.start, u.end)
    paths = write_outputs(redact_call(call), tmp_path, ALL_FORMATS)
    from speechpipe.outputs.report import _vega_js

    for p in paths:
        # the inlined Vega library happens to hold the digits 150765 in a constant
        data = p.read_bytes().replace(_vega_js().encode("utf-8"), b"")
        for original in (b"150765", b"00565", b"912 34", b"34 567"):
            assert original not in data, (p.name, original)
    assert "[FØDSELSNUMMER]" in (tmp_path / "dev-001.srt").read_text(encoding="utf-8")
    assert json.loads(paths[0].read_text())["redaction"]["counts"] == {
        "national_id": 1, "d_number": 0, "bank_account": 0, "phone": 1, "email": 0, "address": 0}


def test_parse_formats():
    assert parse_formats("all") == ALL_FORMATS
    assert parse_formats("srt, eaf") == ("json", "srt", "eaf")
    import typer

    with pytest.raises(typer.BadParameter, match="docx"):
        parse_formats("srt,docx")
