"""Adversarial inputs, all generated here (no binary fixtures): what a careless user or an attacker tries.

Silence, white noise, hold-music tones and zero-length audio; one name in two
folders; a 230-character name; unreadable files and symlink loops; call ids that
try to leave ``--out`` (``../../x``, absolute paths, control characters) in
batch lists and tag transcripts; NaN, Infinity and boolean times; unknown
speakers; an ``--out`` that is a file or not writable; ``--device cuda``
without a GPU; a full disk (an injected ``OSError``, and a small tmpfs where
root may mount one). Commands run as users run them, in a subprocess.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "speechpipe"]
FAST = ["--device", "cpu", "--cpu-threads", "1", "--no-prosody"]
SR = 16000
LONG = "n" * 230


def speechpipe(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    """The CLI of this checkout; stderr is a pipe, as in a log file or CI."""
    e = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    e.update({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})})
    return subprocess.run([*CLI, *map(str, args)], cwd=REPO, env=e, capture_output=True, text=True, timeout=timeout)


def strict_json(path: Path):
    """Parse as strict JSON readers do: a bare NaN or Infinity is an error."""
    def bad(name):
        raise ValueError(f"{path}: {name} is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=bad)


def unreadable(path: Path) -> Path:
    """A file the process cannot read: mode 000, or a folder with an audio name when running as root."""
    if os.geteuid() == 0:
        path.mkdir()
    else:
        path.write_bytes(b"RIFF")
        path.chmod(0)
    return path


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("adversarial-audio")
    rng = np.random.default_rng(0)
    t = np.arange(SR * 4) / SR
    sf.write(d / "silence.wav", np.zeros(SR * 4, np.float32), SR)
    sf.write(d / "noise.wav", (0.3 * rng.standard_normal(SR * 4)).astype(np.float32), SR)
    # Hold music: a three-note loop of pure tones.
    notes = sum(0.2 * np.sin(2 * np.pi * f * t) * ((t * 2).astype(int) % 3 == k) for k, f in enumerate((440, 554, 659)))
    sf.write(d / "music.wav", notes.astype(np.float32), SR)
    sf.write(d / "empty.wav", np.zeros(0, np.float32), SR)
    for sub, x in (("a", np.zeros(SR * 2)), ("b", 0.01 * rng.standard_normal(SR * 3))):
        (d / sub).mkdir()
        sf.write(d / sub / "call.wav", x.astype(np.float32), SR)
    sf.write(d / f"{LONG}.wav", np.zeros(SR, np.float32), SR)
    unreadable(d / "unreadable.wav")
    os.symlink(d / "loop2.wav", d / "loop1.wav")
    os.symlink(d / "loop1.wav", d / "loop2.wav")
    return d


@pytest.fixture(scope="module")
def run_out(audio, tmp_path_factory):
    """One `speechpipe run` over every adversarial recording (tagger on, so no-speech calls reach it)."""
    out = tmp_path_factory.mktemp("run") / "out"
    names = ["silence.wav", "noise.wav", "music.wav", "empty.wav", "a/call.wav", "b/call.wav", f"{LONG}.wav",
             "unreadable.wav", "loop1.wav"]
    p = speechpipe("run", *(audio / n for n in names), "--out", out, *FAST, "--formats", "json")
    return p, out


# --- calls without speech ------------------------------------------------------------------


@pytest.mark.slow
def test_silence_noise_and_music_are_calls_without_speech(run_out):
    p, out = run_out
    reasons = {}
    for name in ("silence", "noise", "music"):
        res = strict_json(out / f"{name}.json")
        assert res["utterances"] == [], name
        reasons[name] = res["summary"]["no_speech_reason"]
    assert "silence" in reasons["silence"] and "silence" not in reasons["noise"]
    assert "cannot reshape" not in p.stderr and "Traceback" not in p.stderr


def test_tag_of_an_empty_transcript_is_a_call_without_speech(tmp_path):
    src = tmp_path / "empty.json"
    src.write_text(json.dumps({"call_id": "e", "utterances": []}))
    p = speechpipe("tag", src, "--out", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    res = strict_json(tmp_path / "out" / "e.json")
    assert res["utterances"] == [] and res["summary"]["no_speech_reason"]


# --- names ------------------------------------------------------------------------------


@pytest.mark.slow
def test_one_name_in_two_folders_gets_two_outputs(run_out, audio):
    p, out = run_out
    a, b = strict_json(out / "call.json"), strict_json(out / "call-2.json")
    assert (a["audio"]["path"], b["audio"]["path"]) == (str(audio / "a/call.wav"), str(audio / "b/call.wav"))
    assert "call-2.json (name already used)" in p.stderr


@pytest.mark.slow
def test_230_character_name_is_written_under_a_short_safe_name(run_out):
    _, out = run_out
    [js] = list(out.glob("nnnn*.json"))
    assert len(js.name.encode()) <= 255 - len(".utterances.parquet") + len(".json")
    assert strict_json(js)["call_id"] == LONG  # the JSON keeps the real id


@pytest.mark.slow
def test_bad_files_fail_alone_in_one_unwrapped_line_each(run_out, audio):
    p, out = run_out
    assert p.returncode == 2, p.stderr
    failed = {json.loads(x)["file"] for x in (out / "errors.jsonl").read_text().splitlines()}
    assert failed == {str(audio / n) for n in ("empty.wav", "unreadable.wav", "loop1.wav")}
    lines = [x for x in p.stderr.splitlines() if x.startswith("failed ")]
    assert len(lines) == 3 and all(": " in x.split(".wav", 1)[1] for x in lines)  # path and reason on one line
    assert "Traceback" not in p.stderr and "site-packages" not in p.stderr
    assert not [x for x in os.listdir(out) if x.startswith(".")]  # no staging folder left


def test_traversal_ids_in_tag_transcripts_stay_inside_out(tmp_path):
    ids = ["../../escaped-rel", str(tmp_path / "abs" / "escaped-abs"), "ctl\x07\x1b[31mid", "same", "same"]
    srcs = []
    for i, cid in enumerate(ids):
        src = tmp_path / "in" / f"t{i}.json"
        src.parent.mkdir(exist_ok=True)
        src.write_text(json.dumps({"call_id": cid, "utterances": [
            {"speaker": "counsellor", "start": 0.0, "end": 1.0, "text": "Hei, du snakker med Kari i NAV."}]}))
        srcs.append(src)
    out = tmp_path / "deep" / "out"
    p = speechpipe("tag", *srcs, "--out", out)
    assert p.returncode == 0, p.stderr
    outside = [q for q in tmp_path.rglob("*") if q.is_file() and out not in q.parents and q.parent.name != "in"]
    assert outside == []
    found = {strict_json(q)["call_id"]: q.name for q in out.glob("*.json")}
    assert set(found) == set(ids) - {"same"} | {"same"} and len(found) == 4
    assert sorted(q.name for q in out.glob("same*.json")) == ["same-2.json", "same.json"]
    assert all("/" not in n and not n.startswith(".") and n.isprintable() for n in os.listdir(out))


def test_traversal_ids_in_a_batch_list_stay_inside_out(audio, tmp_path):
    """CSV call ids try to leave --out; user files and folder modes must survive the batch."""
    abs_id = str(tmp_path / "abs" / "escaped-abs")
    rows = [("silence.wav", "../../escaped-rel"), ("a/call.wav", abs_id), ("noise.wav", "ctl\x07id")]
    lst = tmp_path / "list.csv"
    lst.write_text("path,call_id\n" + "".join(f"{audio / a},{b}\n" for a, b in rows))
    out = tmp_path / "sub1" / "sub2" / "out"
    out.mkdir(parents=True, mode=0o755)
    os.chmod(out, 0o755)
    (out / ".mine.tmp").write_text("a user's own file")
    (out / "keep").mkdir()
    (out / "keep" / ".notes.tmp").write_text("another")
    p = speechpipe("batch", lst, "--out", out, *FAST, "--no-tag", "--formats", "json")
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / "escaped-rel.json").exists() and not Path(abs_id + ".json").exists()
    outside = [q for q in tmp_path.rglob("*") if q.is_file() and out not in q.parents and q != lst]
    assert outside == []
    assert (out / ".mine.tmp").exists() and (out / "keep" / ".notes.tmp").exists()  # never deleted
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # an existing folder is never chmod-ed
    for d in (out / "parts", out / "parts" / "calls"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    import pandas as pd

    calls = pd.read_parquet(out / "calls.parquet")
    assert sorted(calls["call_id"]) == sorted(b for _, b in rows)
    assert {strict_json(q)["call_id"] for q in out.glob("*.json")} == {b for _, b in rows}
    assert not (out / ".speechpipe-work").exists()


# --- transcripts with bad values ----------------------------------------------------------


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "true"])
def test_tag_rejects_non_finite_and_boolean_times(tmp_path, value):
    src = tmp_path / "bad.json"
    src.write_text('{"call_id": "b", "utterances": [{"speaker": "caller", "start": 0, "end": 1, "text": "Hei"},'
                   f' {{"speaker": "caller", "start": {value}, "end": 2, "text": "Hallo"}}]}}')
    out = tmp_path / "out"
    p = speechpipe("tag", src, "--out", out)
    assert p.returncode == 2
    assert f"{src}: utterance 1: 'start' must be a finite number" in p.stderr
    assert not list(out.glob("*.json"))


def test_tag_maps_unknown_speakers_to_other_with_a_warning(tmp_path):
    src = tmp_path / "spk.json"
    src.write_text(json.dumps({"call_id": "s", "utterances": [
        {"speaker": "robot", "start": 0, "end": 1, "text": "Hei, du snakker med Kari i NAV."}]}))
    p = speechpipe("tag", src, "--out", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    assert "utterance 0: speaker 'robot'" in p.stderr
    assert strict_json(tmp_path / "out" / "s.json")["utterances"][0]["speaker"] == "other"


def test_tag_redact_applies_to_parquet_tables(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    secrets = {"15076500565": "[FØDSELSNUMMER]", "912 34 567": "[TELEFONNUMMER]", "ola@eksempel.no": "[E-POST]"}
    texts = [f"Fødselsnummeret mitt er {list(secrets)[0]}.", f"Ring meg på {list(secrets)[1]}.",
             f"Skriv til {list(secrets)[2]}, takk."]
    src = tmp_path / "utts.parquet"
    pq.write_table(pa.table({"call_id": ["c1"] * 3, "idx": [0, 1, 2], "speaker": ["caller"] * 3, "text": texts}), src)
    p = speechpipe("tag", src, "--out", tmp_path / "out", "--redact")
    assert p.returncode == 0, p.stderr
    for f in (tmp_path / "out").glob("*.parquet"):
        blob = f.read_bytes() + json.dumps(pq.read_table(f).to_pylist(), ensure_ascii=False).encode()
        for s in secrets:
            assert s.encode() not in blob, (f.name, s)
    text = pq.read_table(tmp_path / "out" / "utts.parquet").column("text").to_pylist()
    assert all(ph in " ".join(text) for ph in secrets.values())


# --- a bad --out, a missing GPU: usage errors before any work --------------------------------------


@pytest.mark.parametrize("command", ["run", "batch", "tag"])
@pytest.mark.parametrize("kind", ["file", "not-writable"])
def test_bad_out_is_a_usage_error_before_any_work(audio, tmp_path, command, kind):
    out = tmp_path / "afile" if kind == "file" else Path("/proc/1/speechpipe-out")
    if kind == "file":
        out.write_text("keep me")
    src = tmp_path / "t.json" if command == "tag" else audio / "silence.wav"
    src = audio if command == "batch" else src
    if command == "tag":
        src.write_text(json.dumps({"call_id": "t", "utterances": []}))
    p = speechpipe(command, src, "--out", out, timeout=120)
    assert p.returncode == 1, p.stderr
    assert "Invalid value for '--out'" in p.stderr and "Traceback" not in p.stderr
    assert "speechpipe.log" not in p.stderr
    if kind == "file":
        assert out.read_text() == "keep me"


def test_device_cuda_without_gpu_is_one_usage_error(audio, tmp_path):
    import ctranslate2

    if ctranslate2.get_cuda_device_count():
        pytest.skip("a CUDA GPU is present")
    for cmd in ("run", "batch"):
        p = speechpipe(cmd, audio / "silence.wav" if cmd == "run" else audio, "--out", tmp_path / cmd,
                       "--device", "cuda", timeout=120)
        assert p.returncode == 1 and "Invalid value for '--device'" in p.stderr, p.stderr
        assert not (tmp_path / cmd / "errors.jsonl").exists()


def test_only_created_folders_become_private(tmp_path):
    shared_dir = tmp_path / "shared"
    shared_dir.mkdir()
    os.chmod(shared_dir, 0o1777)
    src = tmp_path / "t.json"
    src.write_text(json.dumps({"call_id": "t", "utterances": []}))
    assert speechpipe("tag", src, "--out", shared_dir).returncode == 0
    assert stat.S_IMODE(shared_dir.stat().st_mode) == 0o1777
    assert speechpipe("tag", src, "--out", shared_dir / "x" / "y").returncode == 0
    for d in (shared_dir / "x", shared_dir / "x" / "y"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


# --- a full disk: a call's outputs are a set -----------------------------------------------------


def _result():
    from speechpipe.records import CallResult, Utterance, Word

    u = Utterance("counsellor", 0.0, 1.0, "Hei, du snakker med Kari.", words=[Word("Hei,", 0.0, 0.4)])
    return CallResult(call_id="full", utterances=[u, Utterance("caller", 1.2, 2.0, "Hei.")],
                      audio={"path": None, "duration": 2.0, "sample_rate": 16000, "channels": 1})


def test_disk_full_leaves_no_partial_outputs(tmp_path, monkeypatch):
    from speechpipe.outputs import ALL_FORMATS, report, write_outputs

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "write_report", full)  # html is written last: all others exist by then
    out = tmp_path / "out"
    with pytest.raises(OSError):
        write_outputs(_result(), out, ALL_FORMATS)
    assert list(out.iterdir()) == []


def test_batch_call_that_cannot_be_written_leaves_nothing_and_the_manifest_agrees(tmp_path, monkeypatch):
    from speechpipe.batch.items import BatchItem, Outcome
    from speechpipe.batch.runner import BatchDir
    from speechpipe.outputs import report

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "write_report", full)
    out = tmp_path / "out"
    bdir = BatchDir(out, {"pseudonymise": False}, ("json", "srt", "parquet", "html"))
    try:
        item = BatchItem(input=str(tmp_path / "full.wav"), call_id="full", stem="full", content_hash="h")
        oc = bdir.record(Outcome(item, "done", result=_result()))
    finally:
        bdir.close()
    assert oc.status == "failed" and "No space left" in oc.reason
    left = sorted(p.name for p in out.rglob("*") if p.is_file() and not p.name.startswith("manifest.sqlite"))
    assert left == [".batch.lock", "errors.jsonl", "speechpipe.log"]
    with sqlite3.connect(out / "manifest.sqlite") as db:
        assert db.execute("SELECT status, outputs FROM calls").fetchall() == [("failed", "[]")]


def test_small_tmpfs_fills_up_without_partial_outputs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        from speechpipe.outputs import ALL_FORMATS, write_outputs
        from speechpipe.records import Utterance

        r = _result()
        r.utterances = [Utterance("caller", i, i + 0.5, "ord " * 40) for i in range(200)]
        with pytest.raises(OSError):
            write_outputs(r, mnt / "out", ALL_FORMATS)
        assert list((mnt / "out").iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# --- resume with other settings; symlink loops under --pseudonymise --------------------------------


@pytest.mark.slow
def test_resume_with_other_formats_removes_only_stale_outputs(shared, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "speech.mp3").write_bytes((shared / "audio/real/norwegian-short-3s.mp3").read_bytes())
    os.symlink(src / "loop-b.wav", src / "loop-a.wav")
    os.symlink(src / "loop-a.wav", src / "loop-b.wav")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.vtt").write_text("a user's own file\n")
    env = {"SPEECHPIPE_PSEUDONYM_KEY": "k"}
    p = speechpipe("batch", src, "--out", out, *FAST, "--no-tag", "--pseudonymise", "--formats", "json,vtt", env=env)
    assert p.returncode == 2, p.stderr  # the loops fail, one line each; the speech is done
    assert "RuntimeError" not in p.stderr and len(list(out.glob("call-*.vtt"))) == 1
    p = speechpipe("batch", src, "--out", out, *FAST, "--no-tag", "--pseudonymise", "--formats", "json", "--resume",
                   env=env)
    assert p.returncode == 2, p.stderr
    assert list(out.glob("call-*.vtt")) == [] and len(list(out.glob("call-*.json"))) == 1
    assert (out / "mine.vtt").exists()
    with sqlite3.connect(out / "manifest.sqlite") as db:
        listed = [json.loads(o) for (o,) in db.execute("SELECT outputs FROM calls WHERE status = 'done'")]
    assert [sorted(Path(x).suffix for x in o) for o in listed] == [[".json", ".parquet", ".parquet"]]  # + 2 parts
    assert all(Path(x).exists() for o in listed for x in o)


def test_sklearn_warnings_are_not_printed_and_others_carry_no_path(tmp_path):
    code = ("from speechpipe.cli.common import quiet_warnings; quiet_warnings(); import warnings\n"
            "warnings.warn_explicit('Graph is not fully connected', UserWarning, '/x/site-packages/sklearn/m.py', 1,"
            " module='sklearn.manifold._spectral_embedding')\n"
            "warnings.warn_explicit('other', UserWarning, '/x/site-packages/lib/m.py', 1, module='lib.m')\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                       capture_output=True, text=True)
    assert p.stderr.strip() == "warning: UserWarning: other"


@pytest.mark.slow
def test_a_short_call_prints_no_library_warning(shared, tmp_path):
    """4 s of a simulated mono call: scikit-learn's spectral embedding warns (with its site-packages path)."""
    x, sr = sf.read(shared / "audio/sim-calls/dev-003.mono.wav", dtype="int16")
    sf.write(tmp_path / "short.wav", x[: sr * 4], sr, subtype="ULAW")
    p = speechpipe("run", tmp_path / "short.wav", "--out", tmp_path / "out", *FAST, "--no-tag", "--formats", "json")
    assert p.returncode == 0, p.stderr
    assert "Warning" not in p.stderr and "site-packages" not in p.stderr, p.stderr
