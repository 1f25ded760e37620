"""Privacy by default: no traffic beyond loopback, nothing written outside --out, owner-only outputs.

Commands run in a subprocess whose ``sitecustomize`` replaces name lookup and
every non-loopback ``connect``/``sendto`` with a recorder that raises (Python's
view), and, where ``strace`` is installed, under ``strace -f`` (every thread
and child process, native code included: onnxruntime's telemetry is C++ and
Ray's GCS/raylet are C++ processes). Both logs must show no DNS query and no
non-loopback address. ``HOME``, ``TMPDIR`` and the working folder are fresh
empty folders and must stay empty: speechpipe writes only into ``--out`` and
its cache folder (``SPEECHPIPE_CACHE``: the assembled model, matplotlib's font
list, numba's compiled code). A control run (pyannote telemetry deliberately
switched on) shows the recorder does catch a real attempt.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "speechpipe"]

GUARD = textwrap.dedent(
    '''
    import ipaddress, os, socket

    _LOG = os.environ["SPEECHPIPE_NET_LOG"]
    _LOCAL = {"localhost", "ip6-localhost", ""}


    def _loopback(host):
        if host is None or str(host).lower() in _LOCAL:
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False


    def _record(what, target):
        with open(_LOG, "a") as f:
            f.write(f"{what} {target!r}\\n")
        raise OSError(f"network disabled in test: {what} {target!r}")


    def _check(self, address, what):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            _record(what, address)


    def _connect(self, address):
        _check(self, address, "connect")
        return _orig_connect(self, address)


    def _connect_ex(self, address):
        _check(self, address, "connect_ex")
        return _orig_connect_ex(self, address)


    def _sendto(self, data, *args):
        _check(self, args[-1], "sendto")
        return _orig_sendto(self, data, *args)


    def _getaddrinfo(host, *a, **k):
        if not _loopback(host):
            _record("getaddrinfo", host)
        return _orig_getaddrinfo(host, *a, **k)


    def _gethostbyname(host):
        if not _loopback(host):
            _record("gethostbyname", host)
        return _orig_gethostbyname(host)


    _orig_connect, _orig_connect_ex = socket.socket.connect, socket.socket.connect_ex
    _orig_sendto = socket.socket.sendto
    _orig_getaddrinfo, _orig_gethostbyname = socket.getaddrinfo, socket.gethostbyname
    socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto = _connect, _connect_ex, _sendto
    socket.getaddrinfo, socket.gethostbyname = _getaddrinfo, _gethostbyname
    socket.gethostbyname_ex = lambda host: _record("gethostbyname_ex", host)
    '''
)
STRACE = shutil.which("strace")
_ADDR = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')


def outside_traffic(trace: str) -> list[str]:
    """strace lines that send to, or connect to, anything but loopback (DNS included).

    >>> dns = '1 connect(8, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.53")}, 16) = 0'
    >>> outside_traffic(dns) == [dns]
    True
    >>> outside_traffic('1 connect(3, {sa_family=AF_INET6, inet_pton(AF_INET6, "::ffff:127.0.0.1", &a)}')
    []
    """
    bad = []
    for line in trace.splitlines():
        for m in _ADDR.finditer(line):
            a = ipaddress.ip_address(m.group(1) or m.group(2))
            a = getattr(a, "ipv4_mapped", None) or a
            if not (a.is_loopback or a.is_unspecified):
                bad.append(line)
                break
    return bad


def cache_root() -> Path:
    """The real cache (the assembled Whisper model is there already): the one folder allowed outside --out."""
    if os.environ.get("SPEECHPIPE_CACHE"):
        return Path(os.environ["SPEECHPIPE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "speechpipe"


def _guarded(cmd, tmp_path, env_extra=None, timeout=600, trace=True, check_written=True):
    """Run ``cmd`` guarded; return (process, attempts seen by the guard or strace)."""
    guard = tmp_path / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "net.log"
    home, tmp, cwd = (tmp_path / n for n in ("home", "tmp", "cwd"))
    for d in (home, tmp, cwd):
        d.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XDG_CACHE_HOME")}
    env.update({"PYTHONPATH": f"{guard}{os.pathsep}{REPO}", "SPEECHPIPE_NET_LOG": str(log), "OMP_NUM_THREADS": "1",
                "HOME": str(home), "TMPDIR": str(tmp), "SPEECHPIPE_CACHE": str(cache_root())})
    env.update(env_extra or {})
    st = tmp_path / "strace.log"
    if trace and STRACE:
        cmd = [STRACE, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(st), *map(str, cmd)]
    proc = subprocess.run(list(map(str, cmd)), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    attempts = log.read_text().splitlines() if log.exists() else []
    if st.exists():
        attempts += outside_traffic(st.read_text(errors="replace"))
    written = sorted(str(p.relative_to(tmp_path)) for d in (home, tmp, cwd) for p in d.rglob("*"))
    assert not check_written or written == [], f"written outside --out: {written}\n{proc.stderr[-2000:]}"
    return proc, attempts


def _speech(shared, d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "Kari-Nordmann-3s.mp3").write_bytes((shared / "audio/real/norwegian-short-3s.mp3").read_bytes())
    sf.write(d / "Ola-silence.wav", np.zeros(16000 * 2, np.float32), 16000)
    return d


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
    proc, attempts = _guarded([sys.executable, "-c", code], tmp_path, env, timeout=300, trace=False,
                              check_written=False)
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
    proc, attempts = _guarded([*CLI, "tag", src, "--out", out, "--redact"], tmp_path, timeout=300)
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
        [*CLI, "run", str(audio), "--out", str(out), "--device", "cpu", "--cpu-threads", "1",
         "--redact", "--pseudonymise"],
        tmp_path, {"SPEECHPIPE_PSEUDONYM_KEY": "test-key"}, timeout=600)
    log = out / "speechpipe.log"
    assert proc.returncode == 0, proc.stderr[-3000:] + (log.read_text() if log.exists() else "")
    assert attempts == []
    files = sorted(p.name for p in out.iterdir())
    jsons = [f for f in files if f.endswith(".json")]
    assert len(jsons) == 1 and jsons[0].startswith("call-") and "norwegian" not in " ".join(files)
    res = json.loads((out / jsons[0]).read_text(encoding="utf-8"))
    assert res["audio"]["path"] is None and "redaction" in res
    assert not [f for f in files if f.lower().endswith((".mp3", ".wav", ".flac", ".ogg"))]
    assert len(files) >= 9  # json + rttm, vtt, srt, TextGrid, eaf, 2 parquet, html
    assert [f for f in files if b"norwegian-short" in (out / f).read_bytes()] == []
    _private(out)


def test_batch_and_sample_make_no_connection_and_pseudonymise_everything(shared, tmp_path):
    """`batch --pseudonymise`, `sample`, `overview`: no traffic, and the input names are in no output file.

    The names (``Kari-Nordmann``, ``Ola``) and the input folder's path must not
    appear in any byte of any file under --out: the call JSON, the per-call and
    batch tables, the parts, errors.jsonl, speechpipe.log, the manifest, the sample.
    """
    src = _speech(shared, tmp_path / "Kari-Nordmann-calls")
    (src / "Ola-broken.wav").write_text("not audio\n")
    out = tmp_path / "out"
    env = {"SPEECHPIPE_PSEUDONYM_KEY": "test-key"}
    proc, attempts = _guarded([*CLI, "batch", src, "--out", out, "--device", "cpu", "--cpu-threads", "1",
                               "--pseudonymise", "--formats", "json,parquet,html", "--no-prosody"], tmp_path, env)
    assert proc.returncode == 2, proc.stderr[-3000:]  # the broken file fails, alone
    assert attempts == []
    proc, attempts = _guarded([*CLI, "sample", out, "--n", "2"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert attempts == []
    (out / "overview.html").unlink()  # batch wrote one; the command must write it again, offline
    proc, attempts = _guarded([*CLI, "overview", out], tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert attempts == [] and (out / "overview.html").is_file()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".json", ".parquet", ".html", ".jsonl", ".log", ".sqlite", ".csv"}
    for needle in ("Kari", "Nordmann", "Ola-", str(src)):
        hits = [str(p.relative_to(out)) for p in files if needle.encode() in p.read_bytes()]
        assert hits == [], f"{needle!r} found in {hits}"
    res = [json.loads(p.read_text()) for p in out.glob("call-*.json")]
    assert len(res) == 2 and all(r["audio"]["path"] is None for r in res)
    _private(out)


@pytest.mark.slow
def test_ray_engine_talks_over_loopback_only(shared, tmp_path):
    """A private Ray instance (GCS, raylet, dashboard, workers: C++ and Python) stays on loopback."""
    pytest.importorskip("ray")
    src = _speech(shared, tmp_path / "in")
    out = tmp_path / "out"
    proc, attempts = _guarded([*CLI, "batch", src, "--out", out, "--engine", "ray", "--device", "cpu",
                               "--cpu-threads", "1", "--formats", "json", "--no-prosody", "--no-tag"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert attempts == [], attempts[:5]
    assert len(list(out.glob("*.json"))) == 2
