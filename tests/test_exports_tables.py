"""Parquet tables: rows from real gold calls, written and read back with pyarrow."""

from __future__ import annotations

import os
import stat

import pytest
from test_exports_data import text_call, timed_call

from speechpipe.outputs.tables import call_row, read_table, utterance_rows, write_table


@pytest.fixture(scope="module")
def call(shared):
    return timed_call(shared / "audio/sim-calls/dev-002.ref.json")


def test_utterance_table_round_trip(call, tmp_path):
    rows = utterance_rows(call)
    path = write_table(rows, tmp_path / "t" / "u.parquet")
    back = read_table(path)
    assert len(back) == len(call.utterances)
    for u, r in zip(call.utterances, back):
        assert r["speaker"] == u.speaker and r["text"] == u.text
        assert r["acts"] == u.acts and r["phase"] == u.phase
        assert r["duration"] == pytest.approx(u.end - u.start, abs=1e-3)
        assert r["prosody_f0_median_hz"] == u.prosody["f0_median_hz"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_call_row_flattens_summary_and_counts_breaths(call, tmp_path):
    row = call_row(call)
    assert row["talk_share_caller"] == call.summary["talk_share"]["caller"]
    assert row["structure"] == call.summary["structure"]
    assert row["n_breaths"] == len(call.events) > 0
    assert row["n_heavy_breaths"] == sum(e.heavy for e in call.events)
    back = read_table(write_table([row], tmp_path / "c.parquet"))[0]
    assert back == row


def test_text_only_call_has_null_times(shared):
    rows = utterance_rows(text_call(shared / "tagger-dev/dev-003.json"))
    assert rows and all(r["start"] is None and r["duration"] is None for r in rows)
