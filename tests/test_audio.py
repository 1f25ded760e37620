"""Audio input: every common call format decodes to 16 kHz; bad files fail with the file and reason."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
import soundfile as sf

from speechpipe.audio import AudioError, load_audio


def tone(sr, seconds=1.0, channels=1, f=220.0):
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * f * t).astype(np.float32)
    if channels == 1:
        return x
    return np.stack([x * (k + 1) / channels for k in range(channels)], axis=1)


@pytest.mark.parametrize(
    "name,sr,subtype,channels",
    [
        ("pcm16.wav", 8000, "PCM_16", 1),
        ("ulaw.wav", 8000, "ULAW", 1),
        ("alaw.wav", 8000, "ALAW", 2),
        ("float.wav", 96000, "FLOAT", 1),
        ("pcm24.wav", 44100, "PCM_24", 2),
        ("call.flac", 16000, "PCM_16", 2),
        ("call.ogg", 48000, "VORBIS", 1),
    ],
)
def test_formats_decode_to_16k_with_channels_kept(tmp_path, name, sr, subtype, channels):
    p = tmp_path / name
    sf.write(p, tone(sr, 1.0, channels), sr, subtype=subtype)
    a = load_audio(p)
    assert a.sample_rate == 16000 and a.orig_sample_rate == sr
    assert a.channels == channels
    assert a.samples.dtype == np.float32
    assert abs(a.duration - 1.0) < 0.01
    if channels == 2:  # channels stay separate: right is twice as loud as left here
        ratio = np.abs(a.samples[1]).mean() / np.abs(a.samples[0]).mean()
        assert 1.8 < ratio < 2.2


def test_mp3_decodes(shared):
    a = load_audio(shared / "audio/real/norwegian-short-3s.mp3")
    assert a.sample_rate == 16000 and a.channels == 1 and 2.5 < a.duration < 4.5


def test_resampled_tone_keeps_its_pitch(tmp_path):
    p = tmp_path / "t.wav"
    sf.write(p, tone(8000, 1.0, 1, f=440.0), 8000, subtype="ULAW")
    x = load_audio(p).mono
    spec = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spec) * 16000 / len(x) - 440.0) < 2.0


def _bad_files(tmp_path):
    files = {}
    files["empty.wav"] = b""
    files["random.wav"] = np.random.default_rng(1).bytes(4000)
    files["text.mp3"] = "dette er ikke lyd\n".encode() * 50
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    sf.write(tmp_path / "short.wav", tone(8000, 0.1), 8000)
    sf.write(tmp_path / "three.wav", tone(8000, 1.0, 3), 8000)
    nan = tone(16000, 1.0)
    nan[100:200] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    inf = tone(16000, 1.0)
    inf[5] = np.inf
    sf.write(tmp_path / "inf.wav", inf, 16000, subtype="FLOAT")
    (tmp_path / "dangling.wav").symlink_to(tmp_path / "does-not-exist.wav")
    return {
        "empty.wav": "empty",
        "random.wav": "decode|not a recognised audio",
        "text.mp3": "decode|not a recognised audio",
        "short.wav": "too short",
        "three.wav": "3 channels",
        "nan.wav": "NaN",
        "inf.wav": "infinite",
        "missing.wav": "not found",
        "dangling.wav": "dangling",
    }


def test_bad_inputs_fail_with_file_and_reason(tmp_path):
    expected = _bad_files(tmp_path)
    for name, reason in expected.items():
        p = tmp_path / name
        with pytest.raises(AudioError) as e:
            load_audio(p)
        assert e.value.path == str(p)
        assert name in str(e.value)
        assert re.search(reason, e.value.reason, re.I), (name, e.value.reason)


def test_cli_reports_bad_files_without_traceback_and_exits_2(tmp_path, cli):
    _bad_files(tmp_path)
    out = tmp_path / "out"
    r = subprocess.run(
        [*cli, "run", str(tmp_path / "empty.wav"), str(tmp_path / "three.wav"),
         "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert "empty.wav" in r.stderr and "three.wav" in r.stderr
    lines = (out / "errors.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "empty" in lines[0]


def test_cli_usage_error_exits_1(tmp_path, cli):
    r = subprocess.run([*cli, "run", "x.wav", "--out", str(tmp_path),
                        "--counsellor-channel", "middle"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "counsellor-channel" in r.stderr and "Traceback" not in r.stderr
