"""The Ray engine on a private local instance with 2 workers gives the local engine's outputs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import soundfile as sf

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def inputs(shared, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ray-calls")
    (d / "norwegian-short-3s.mp3").write_bytes((shared / "audio/real/norwegian-short-3s.mp3").read_bytes())
    x, sr = sf.read(shared / "audio/sim-calls/dev-003.mono.wav", dtype="int16")
    sf.write(d / "sim3.wav", x[: sr * 4], sr, subtype="ULAW")
    x, sr = sf.read(shared / "audio/sim-calls/dev-001.stereo.flac", dtype="int16")
    sf.write(d / "sim1-stereo.flac", x[sr * 20 : sr * 24], sr)
    (d / "broken.mp3").write_text("not audio\n" * 20)
    return d


def _config():
    from speechpipe.asr.whisper import ASRConfig
    from speechpipe.pipeline import PipelineConfig

    return PipelineConfig(asr=ASRConfig(device="cpu", cpu_threads=1), prosody=False, tag=False)


def _outputs(out: Path) -> dict:
    res = {}
    for p in sorted(out.glob("*.json")):
        d = json.loads(p.read_text())
        d["models"].pop("timings_s", None)
        res[p.name] = d
    with sqlite3.connect(out / "manifest.sqlite") as db:
        rows = db.execute(
            "SELECT call_id, status, content_hash, settings_hash, reason, models FROM calls ORDER BY call_id"
        ).fetchall()
    return {"json": res, "manifest": rows, "errors": (out / "errors.jsonl").read_text()}


def test_ray_two_workers_equal_local(inputs, tmp_path):
    from speechpipe.batch.runner import discover, run_batch

    local = run_batch(discover(inputs), tmp_path / "local", _config(), engine="local")
    ray_s = run_batch(discover(inputs), tmp_path / "ray", _config(), engine="ray", workers=2)
    assert (local.done, local.failed) == (ray_s.done, ray_s.failed) == (3, 1)
    a, b = _outputs(tmp_path / "local"), _outputs(tmp_path / "ray")
    assert a["json"] and a == b
    import ray

    assert not ray.is_initialized()  # the private instance was shut down

    # One manifest format: resuming the Ray run locally skips what Ray did.
    again = run_batch(discover(inputs), tmp_path / "ray", _config(), engine="local", resume=True)
    assert (again.skipped, again.done, again.failed) == (3, 0, 1)
