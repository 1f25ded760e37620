"""`speechpipe batch` / `sample`: bad inputs, resume, kill -9, aggregates, offline.

Every batch runs the real CLI in a subprocess (the way users run it) on a
few seconds of shared audio plus generated bad inputs. The uninterrupted run
is the reference that the killed-and-resumed run must reproduce exactly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
FAST = ["--device", "cpu", "--cpu-threads", "1", "--no-tag", "--no-prosody", "--formats", "json"]
GOOD = {"sim1", "sim2", "norwegian-short-3s", "silence"}
BAD = {"text": "not a recognised audio format", "id3only": "ID3 tag but no audio", "dangling": "dangling symbolic link",
       "nan": "NaN"}

# Run the CLI with every non-local socket refused: the batch must not need a network.
OFFLINE_MAIN = r"""
import socket, sys
def _refuse(*a, **k):
    raise OSError("network disabled by test")
_connect = socket.socket.connect
def _guard(self, addr, *a):
    if self.family == getattr(socket, "AF_UNIX", None):
        return _connect(self, addr, *a)
    _refuse()
socket.socket.connect = _guard
socket.socket.connect_ex = lambda self, addr: _guard(self, addr) or 0
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
from speechpipe.cli import main
sys.argv = ["speechpipe"] + sys.argv[1:]
main()
"""


def cli(*args, check_rc=None, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    p = subprocess.run([sys.executable, "-c", OFFLINE_MAIN, *map(str, args)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=timeout)
    if check_rc is not None:
        assert p.returncode == check_rc, p.stdout + p.stderr
    return p


def start_cli(*args) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", OFFLINE_MAIN, *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def calls(shared, tmp_path_factory) -> Path:
    """A small archive: real and simulated speech, silence, and broken files."""
    d = tmp_path_factory.mktemp("calls")
    x, sr = sf.read(shared / "audio/sim-calls/dev-001.mono.wav", dtype="int16")
    sf.write(d / "sim1.wav", x[: sr * 5], sr, subtype="ULAW")
    x, sr = sf.read(shared / "audio/sim-calls/dev-002.stereo.flac", dtype="int16")
    (d / "sub").mkdir()
    sf.write(d / "sub" / "sim2.flac", x[sr * 10 : sr * 15], sr)
    (d / "norwegian-short-3s.mp3").write_bytes((shared / "audio/real/norwegian-short-3s.mp3").read_bytes())
    sf.write(d / "silence.wav", np.zeros(8000 * 120, np.int16), 8000)  # two minutes of silence
    (d / "text.mp3").write_text("this is a text file renamed to .mp3\n" * 50)
    (d / "id3only.mp3").write_bytes(b"ID3\x04\x00\x00\x00\x00\x00\x0b" + b"TIT2\x00\x00\x00\x01\x00\x00a" + bytes(64))
    os.symlink(d / "gone.wav", d / "dangling.wav")
    y = np.full(8000, 0.1, np.float32)
    y[100] = np.nan
    sf.write(d / "nan.wav", y, 8000, subtype="FLOAT")
    (d / "notes.txt").write_text("not an input: wrong extension\n")
    return d


def comparable(out: Path) -> dict[str, dict]:
    """Every call JSON in ``out`` without the run-dependent timings."""
    res = {}
    for p in sorted(out.glob("*.json")):
        d = json.loads(p.read_text())
        d["models"].pop("timings_s", None)
        res[p.name] = d
    return res


def manifest_rows(out: Path) -> list[tuple]:
    with sqlite3.connect(out / "manifest.sqlite") as db:
        return db.execute(
            "SELECT input, call_id, status, content_hash, settings_hash, reason FROM calls ORDER BY input"
        ).fetchall()


@pytest.fixture(scope="module")
def reference(calls, tmp_path_factory):
    """One uninterrupted batch run, offline."""
    out = tmp_path_factory.mktemp("ref") / "out"
    p = cli("batch", calls, "--out", out, *FAST, check_rc=2)
    return out, p


def test_batch_processes_good_and_records_bad_inputs(reference):
    out, p = reference
    text = p.stdout + p.stderr
    assert "Traceback" not in text
    for stem, reason in BAD.items():  # one line on screen names the file and the problem
        line = next(ln for ln in text.splitlines() if f"{stem}." in ln and "failed" in ln)
        assert reason in line
    errors = [json.loads(ln) for ln in (out / "errors.jsonl").read_text().splitlines()]
    assert {Path(e["file"]).stem for e in errors} == set(BAD)
    assert all(BAD[Path(e["file"]).stem] in e["reason"] for e in errors)
    assert "Traceback" in (out / "speechpipe.log").read_text()  # full detail goes to the log
    rows = manifest_rows(out)
    assert {Path(r[0]).stem: r[2] for r in rows} == {**{s: "done" for s in GOOD}, **{s: "failed" for s in BAD}}
    assert set(comparable(out)) == {f"{s}.json" for s in GOOD}
    assert comparable(out)["silence.json"]["utterances"] == []  # silence processes, with nothing said
    assert comparable(out)["norwegian-short-3s.json"]["utterances"], "real speech should be recognised"
    assert "done" in text and "skipped" in text and "real-time factor" in text
    for f in out.rglob("*"):  # private by default
        if f.is_file():
            assert f.stat().st_mode & 0o077 == 0, f


def test_aggregate_tables_read_by_pandas_and_duckdb(reference):
    import duckdb
    import pandas as pd

    out, _ = reference
    calls_df = pd.read_parquet(out / "calls.parquet")
    assert sorted(calls_df.call_id) == sorted(GOOD)
    assert (calls_df.set_index("call_id").loc["silence", "n_utterances"]) == 0
    utts = pd.read_parquet(out / "utterances.parquet")
    per_call = {k: len(json.loads((out / f"{k}.json").read_text())["utterances"]) for k in GOOD}
    assert utts.groupby("call_id").size().to_dict() == {k: v for k, v in per_call.items() if v}
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{out / 'utterances.parquet'}')").fetchall()[0][0]
    assert n == sum(per_call.values())
    assert "never ranks or scores" in (out / "overview.html").read_text(encoding="utf-8")  # batch writes the overview


def test_resume_skips_done_and_redoes_changed(reference, calls, tmp_path):
    import shutil

    src, _ = reference
    out = tmp_path / "out"
    shutil.copytree(src, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    p = cli("batch", calls, "--out", out, "--resume", *FAST, check_rc=2)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")} == before  # nothing redone
    assert re.search(rf"skipped \(already done\)\s*│\s*{len(GOOD)}\s", p.stderr), p.stderr
    with sqlite3.connect(out / "manifest.sqlite") as db:
        last = db.execute("SELECT done, failed, skipped FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    assert last == (0, len(BAD), len(GOOD))
    # Changed settings → everything done again; here only the settings hash changes.
    assert len({r[4] for r in manifest_rows(out)}) == 1
    assert [r[2] for r in manifest_rows(out)].count("failed") == len(BAD)
    assert len((out / "errors.jsonl").read_text().splitlines()) == len(BAD)  # rebuilt, not appended twice
    # A list of only the good inputs: all already done → exit 0 (2 is for failures).
    listing = tmp_path / "good.txt"
    listing.write_text("".join(f"{r[0]}\n" for r in manifest_rows(out) if r[2] == "done"))
    cli("batch", listing, "--out", out, "--resume", *FAST, check_rc=0)


def test_kill9_then_resume_equals_uninterrupted(reference, calls, tmp_path):
    ref, _ = reference
    out = tmp_path / "out"
    proc = start_cli("batch", calls, "--out", out, *FAST)
    deadline = time.time() + 300
    while not list(out.glob("*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the batch ended before it could be killed"
    cli("batch", calls, "--out", out, "--resume", *FAST, check_rc=2)

    assert comparable(out) == comparable(ref)
    assert [f for f in out.rglob("*") if f.name.endswith(".tmp")] == []
    rows = manifest_rows(out)
    assert len(rows) == len({r[0] for r in rows}) == len(GOOD) + len(BAD)
    assert [(Path(r[0]).name, r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        (Path(r[0]).name, r[1], r[2], r[3], r[4], r[5]) for r in manifest_rows(ref)
    ]
    assert sorted((out / "errors.jsonl").read_text().splitlines()) == sorted(
        (ref / "errors.jsonl").read_text().splitlines()
    )
    import pandas as pd

    for table in ("calls", "utterances"):
        a, b = pd.read_parquet(out / f"{table}.parquet"), pd.read_parquet(ref / f"{table}.parquet")
        a, b = (t.drop(columns=[c for c in t.columns if "timings" in c]) for t in (a, b))
        pd.testing.assert_frame_equal(a, b)


def test_csv_manifest_metadata_and_sample(calls, reference, tmp_path):
    """A CSV list carries per-call metadata; `sample` draws reproducibly from the batch tables."""
    from speechpipe.batch.runner import discover

    csv = tmp_path / "list.csv"
    csv.write_text("path,counsellor_channel,team\nsub/sim2.flac,right,A\nsim1.wav,,B\nnorwegian-short-3s.mp3,up,A\n")
    (tmp_path / "sub").mkdir()
    for rel in ("sub/sim2.flac", "sim1.wav", "norwegian-short-3s.mp3"):
        os.symlink(calls / rel, tmp_path / rel)
    items = {i.call_id: i for i in discover(csv)}
    assert items["sim2"].counsellor_channel == "right" and items["sim2"].meta == {"team": "A"}
    assert items["sim1"].counsellor_channel is None
    assert "counsellor_channel 'up'" in items["norwegian-short-3s"].error

    out, _ = reference
    a = cli("sample", out, "--n", "2", "--seed", "3", "--out", tmp_path / "s1", check_rc=0)
    b = cli("sample", out, "--n", "2", "--seed", "3", "--out", tmp_path / "s2", check_rc=0)
    assert "Traceback" not in a.stderr + b.stderr
    s1 = json.loads((tmp_path / "s1/sample.json").read_text())["call_ids"]
    assert s1 == json.loads((tmp_path / "s2/sample.json").read_text())["call_ids"] and len(s1) == 2
    assert set(s1) <= GOOD
    cli("sample", out, "--n", "9", "--where", "n_utterances = 0", "--out", tmp_path / "s3", check_rc=0)
    assert json.loads((tmp_path / "s3/sample.json").read_text())["call_ids"] == ["silence"]
    bad = cli("sample", out, "--where", "nonexistent_column > 1", check_rc=1)
    assert "nonexistent_column" in bad.stderr and "Traceback" not in bad.stderr
