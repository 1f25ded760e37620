"""Columnar tagging (Arrow/Parquet utterance tables) == the object path, chunking, bad tables, CLI."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from speechpipe.outputs.tables import call_row, utterance_rows, write_table  # noqa: E402
from speechpipe.records import CallResult, Utterance  # noqa: E402
from speechpipe.tagging.table import TableError, tag_parquet, tag_table  # noqa: E402
from speechpipe.tagging.tagger import load_tagger  # noqa: E402

INPUT_COLUMNS = ("call_id", "idx", "speaker", "start", "end", "text", "intonation")


@pytest.fixture(scope="module")
def tagger():
    return load_tagger()


@pytest.fixture(scope="module")
def calls(shared):
    """Dev calls clean and ASR-like (untimed) plus timed sim-call references with intonation."""
    from speechpipe.tagging.train import asr_copy, load_gold, load_gold_dir

    gold = load_gold_dir(shared / "tagger-dev")
    out = [(c["call_id"], c["utterances"]) for c in gold]
    out += [(f"{c['call_id']}-asr", asr_copy(c, 99 + i)["utterances"]) for i, c in enumerate(gold)]
    for p in sorted((shared / "audio" / "sim-calls").glob("dev-00[1-3].ref.json")):
        utts = load_gold(p)["utterances"]
        for u, r in zip(utts, json.loads(p.read_text())["utterances"]):
            u.intonation = r.get("intonation")  # as the prosody stage sets it
        out.append((p.name.split(".")[0] + "-timed", utts))
    return out


def _fresh(calls):
    return [
        (cid, [Utterance(u.speaker, u.start, u.end, u.text, intonation=u.intonation) for u in us]) for cid, us in calls
    ]


def _input_table(calls):
    rows = [{k: r[k] for k in INPUT_COLUMNS} for cid, us in calls for r in utterance_rows(CallResult(cid, us))]
    return pa.Table.from_pylist(rows)


@pytest.fixture(scope="module")
def expected(tagger, calls):
    """The object path's output, flattened as the run exports flatten it."""
    fresh = _fresh(calls)
    summaries = tagger.tag_calls([us for _, us in fresh])
    results = [CallResult(cid, us, summary=s, models={"tagger": tagger.name}) for (cid, us), s in zip(fresh, summaries)]
    return [r for res in results for r in utterance_rows(res)], [call_row(res) for res in results]


def _same_calls(got: list[dict], want: list[dict]):
    assert [g["call_id"] for g in got] == [w["call_id"] for w in want]
    keys = set().union(*(w.keys() for w in want)) & set(got[0])
    assert {"structure", "reopenings", "feelings_before_case", "what_more_position", "talk_share_caller",
            "backchannel_rate_per_min_caller", "backchannel_rate_per_100_utt_counsellor", "overlaps"} <= keys
    for g, w in zip(got, want):
        for k in keys:
            a, b = g[k], w.get(k)
            if isinstance(a, float) or isinstance(b, float):
                assert (a is None) == (b is None) and (a is None or abs(a - b) <= 1.01e-3), (g["call_id"], k, a, b)
            else:
                assert a == b, (g["call_id"], k, a, b)
        # columns the object path leaves out (absent speaker, untimed call) are null here
        assert all(g[k] is None for k in set(g) - set(w) - {"model_tagger"}), g["call_id"]


def test_table_path_equals_object_path(tagger, calls, expected):
    want_u, want_c = expected
    utts, call_tab = tag_table(tagger, _input_table(calls))
    got = utts.to_pylist()
    assert len(got) == len(want_u) > 1500
    for g, w in zip(got, want_u):
        assert (g["call_id"], g["text"], g["acts"], g["phase"], g["evidence"]) == \
            (w["call_id"], w["text"], w["acts"], w["phase"], w["evidence"])
    assert sum(len(g["acts"]) for g in got) > 1000  # it really tags
    _same_calls(call_tab.to_pylist(), want_c)
    timed = [c for c in call_tab.to_pylist() if c["call_id"].endswith("-timed")]
    assert timed and all(c["talk_share_unit"] == "time" and c["silences"] is not None for c in timed)


def test_pandas_input_and_rows_out_of_order_within_a_call(tagger, calls, expected):
    want_u, _ = expected
    table = _input_table(calls[:2])
    df = table.to_pandas()
    n0 = int((df.call_id == df.call_id.iloc[0]).sum())
    df.iloc[:n0] = df.iloc[:n0].iloc[::-1].to_numpy()  # first call's rows reversed; idx says the order
    utts, _ = tag_table(tagger, df)
    assert utts.column("idx").to_pylist() == table.column("idx").to_pylist()
    assert utts.column("acts").to_pylist() == [w["acts"] for w in want_u[: table.num_rows]]


def test_parquet_in_chunks_equals_one_pass_and_is_private(tagger, calls, expected, tmp_path):
    want_u, want_c = expected
    src = tmp_path / "utterances.parquet"
    pq.write_table(_input_table(calls), src)
    out = tmp_path / "out"
    # 37-row chunks: most calls straddle a chunk boundary and must be held back whole
    pu, pc_, n_utt, n_calls = tag_parquet(tagger, src, out, rows_per_chunk=37)
    assert (n_utt, n_calls) == (len(want_u), len(want_c))
    got = pq.read_table(pu).to_pylist()
    assert [(g["acts"], g["phase"], g["evidence"]) for g in got] == [
        (w["acts"], w["phase"], w["evidence"]) for w in want_u
    ]
    _same_calls(pq.read_table(pc_).to_pylist(), want_c)
    for p in (pu, pc_):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert not list(out.glob(".*.tmp"))  # no temporary left behind


def test_retagging_an_exported_table_replaces_its_labels(tagger, calls, expected, tmp_path):
    """A table written by the exports (acts/phase/evidence already set) is re-tagged in place."""
    want_u, _ = expected
    stale = [dict(r, acts=["hold"], phase="closing", evidence="{}") for r in want_u[:200]]
    write_table(stale, tmp_path / "utterances.parquet")
    pu, _, n, _ = tag_parquet(tagger, tmp_path / "utterances.parquet", tmp_path / "new")
    got = pq.read_table(pu)
    assert got.column_names.count("acts") == 1 and n == 200
    assert got.column("acts").to_pylist() != [["hold"]] * 200
    # the first call is whole inside the 200 rows: its labels are the object path's
    k = sum(1 for r in want_u[:200] if r["call_id"] == want_u[0]["call_id"])
    assert got.column("acts").to_pylist()[:k] == [w["acts"] for w in want_u[:k]]


def test_bad_tables_name_the_file_and_the_problem(tagger, tmp_path):
    t = pa.table({"call_id": ["a", "b", "a"], "speaker": ["caller"] * 3, "text": ["Hei", "Ja", "Mm"]})
    with pytest.raises(TableError, match="not contiguous"):
        tag_table(tagger, t, "x.parquet")
    with pytest.raises(TableError, match=r"x\.parquet: missing column\(s\) speaker"):
        tag_table(tagger, t.drop(["speaker"]), "x.parquet")
    with pytest.raises(TableError, match="without a call_id"):
        tag_table(tagger, pa.table({"call_id": [None, "a"], "speaker": ["caller"] * 2, "text": ["Hei", "Ja"]}))
    with pytest.raises(TableError, match="x.parquet: column start is not numeric"):
        tag_table(
            tagger, pa.table({"call_id": ["a"], "speaker": ["caller"], "text": ["Hei"], "start": ["noon"]}), "x.parquet"
        )
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(TableError, match="junk.parquet: cannot read as Parquet"):
        tag_parquet(tagger, junk, tmp_path / "o")
    with pytest.raises(TableError, match="nowhere.parquet: no such file"):
        tag_parquet(tagger, tmp_path / "nowhere.parquet", tmp_path / "o")
    # two runs of the same call in different chunks
    split = tmp_path / "split.parquet"
    pq.write_table(pa.table({"call_id": ["a", "a", "b", "a"], "speaker": ["caller"] * 4, "text": ["Hei"] * 4}), split)
    with pytest.raises(TableError, match="appears in two separate runs"):
        tag_parquet(tagger, split, tmp_path / "o", rows_per_chunk=2)
    assert not (tmp_path / "o" / "split.parquet").exists()  # nothing half-written
    # nulls and an empty table
    odd = tag_table(tagger, pa.table({"call_id": ["a", "a"], "speaker": [None, "caller"], "text": [None, "Ja"]}))[0]
    assert odd.column("acts").to_pylist()[0] == []
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"call_id": pa.array([], pa.string()), "speaker": pa.array([], pa.string()),
                             "text": pa.array([], pa.string())}), empty)
    assert tag_parquet(tagger, empty, tmp_path / "e")[2:] == (0, 0)


def test_cli_tags_tables_and_transcripts_and_reports_the_bad_one(shared, calls, tmp_path):
    from typer.testing import CliRunner

    from speechpipe.cli import app

    pq.write_table(_input_table(calls[:3]), tmp_path / "archive.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 garbage")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["tag", str(tmp_path / "archive.parquet"), str(tmp_path / "broken.parquet"),
                                   str(shared / "tagger-dev" / "dev-001.json"), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert (out / "archive.parquet").exists() and (out / "archive.calls.parquet").exists()
    assert (out / "dev-001.json").exists()
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["file"] for e in errors] == [str(tmp_path / "broken.parquet")]
    assert pq.read_table(out / "archive.calls.parquet").num_rows == 3
    assert np.all(pq.read_table(out / "archive.parquet").column("phase").to_numpy(zero_copy_only=False) != None)  # noqa: E711
