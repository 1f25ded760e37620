"""Privacy by default: no network connection is attempted, outputs are owner-only, no audio is copied.

Commands run in a subprocess whose ``sitecustomize`` replaces socket
connection and name lookup with a recorder that raises; the recorder's log
must stay empty. A control run (pyannote telemetry deliberately switched on)
shows the recorder does catch a real attempt.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPEECHPIPE = Path(sys.executable).with_name("speechpipe")

GUARD = textwrap.dedent(
    '''
    import os, socket

    _LOG = os.environ["SPEECHPIPE_NET_LOG"]


    def _record(what, target):
        with open(_LOG, "a") as f:
            f.write(f"{what} {target!r}\\n")
        raise OSError(f"network disabled in test: {what} {target!r}")


    def _connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _record("connect", address)
        return _orig_connect(self, address)


    def _connect_ex(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _record("connect_ex", address)
        return _orig_connect_ex(self, address)


    _orig_connect, _orig_connect_ex = socket.socket.connect, socket.socket.connect_ex
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
    socket.create_connection = lambda address, *a, **k: _record("create_connection", address)
    socket.getaddrinfo = lambda host, *a, **k: _record("getaddrinfo", host)
    socket.gethostbyname = lambda host: _record("gethostbyname", host)
    '''
)


def _guarded(cmd, tmp_path, env_extra=None, timeout=600):
    guard = tmp_path / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "net.log"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"PYTHONPATH": str(guard), "SPEECHPIPE_NET_LOG": str(log), "OMP_NUM_THREADS": "1"})
    env.update(env_extra or {})
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    attempts = log.read_text().splitlines() if log.exists() else []
    return proc, attempts


def _private(out: Path):
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o700
    for p in out.rglob("*"):
        want = 0o700 if p.is_dir() else 0o600
        assert stat.S_IMODE(os.stat(p).st_mode) == want, p


def test_pyannote_telemetry_off_and_guard_catches_it_when_on(tmp_path):
    """pyannote.audio's telemetry, switched on, does try to connect (so the guard works);
    after ``offline.enforce_env()`` the same calls make no attempt. One subprocess,
    because importing pyannote.audio takes most of the time."""
    code = textwrap.dedent(
        """
        import os
        from pyannote.audio.telemetry import metrics as m
        log = os.environ["SPEECHPIPE_NET_LOG"]
        n = lambda: len(open(log).read().splitlines()) if os.path.exists(log) else 0
        m.track_pipeline_init(object()); m.provider.force_flush(5000)
        on = n()
        from speechpipe import offline
        offline.enforce_env()
        assert not m.is_metrics_enabled()
        m.track_pipeline_init(object()); m.track_model_init(object()); m.provider.force_flush(5000)
        print("attempts", on, n() - on)
        """
    )
    env = {"PYANNOTE_METRICS_ENABLED": "1", "OTEL_SDK_DISABLED": "false", "HF_HUB_OFFLINE": "1"}
    proc, attempts = _guarded([sys.executable, "-c", code], tmp_path, env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    on, off = map(int, proc.stdout.split("attempts")[1].split())
    assert on > 0 and any("pyannote" in a for a in attempts)
    assert off == 0


def test_tag_makes_no_connection_and_writes_private_redacted_outputs(shared, tmp_path):
    out = tmp_path / "out"
    src = tmp_path / "in" / "call-7.json"
    src.parent.mkdir()
    gold = json.loads((shared / "tagger-dev/dev-002.json").read_text(encoding="utf-8"))
    gold["call_id"] = "call-7"
    gold["utterances"][1]["text"] = "Ja, det er meg, fødselsnummeret er 150765 00565."
    src.write_text(json.dumps(gold, ensure_ascii=False), encoding="utf-8")
    proc, attempts = _guarded([str(SPEECHPIPE), "tag", str(src), "--out", str(out), "--redact"], tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert attempts == []
    res = json.loads((out / "call-7.json").read_text(encoding="utf-8"))
    assert "150765" not in json.dumps(res) and "[FØDSELSNUMMER]" in res["utterances"][1]["text"]
    assert res["redaction"]["counts"]["national_id"] == 1
    _private(out)


@pytest.mark.slow
def test_run_makes_no_connection_private_outputs_no_audio_copy(shared, tmp_path):
    """A real `speechpipe run` (Whisper, diarisation, prosody, tagger, every export) with sockets disabled."""
    out = tmp_path / "out"
    audio = shared / "audio/real/norwegian-short-3s.mp3"
    proc, attempts = _guarded(
        [str(SPEECHPIPE), "run", str(audio), "--out", str(out), "--device", "cpu", "--cpu-threads", "1",
         "--redact", "--pseudonymise"],
        tmp_path, {"SPEECHPIPE_PSEUDONYM_KEY": "test-key"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + (out / "speechpipe.log").read_text() if (out / "speechpipe.log").exists() else proc.stderr[-3000:]
    assert attempts == []
    files = sorted(p.name for p in out.iterdir())
    jsons = [f for f in files if f.endswith(".json")]
    assert len(jsons) == 1 and jsons[0].startswith("call-") and "norwegian" not in " ".join(files)
    res = json.loads((out / jsons[0]).read_text(encoding="utf-8"))
    assert res["audio"]["path"] is None and "redaction" in res
    assert not [f for f in files if f.lower().endswith((".mp3", ".wav", ".flac", ".ogg"))]
    assert len(files) >= 9  # json + rttm, vtt, srt, TextGrid, eaf, 2 parquet, html
    _private(out)
