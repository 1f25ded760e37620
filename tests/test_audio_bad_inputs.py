"""Inputs a batch meets in real archives: each loads correctly or fails with a clear reason.

(The basic malformed cases — empty, too short, NaN/inf, >2 channels,
undecodable — are in tests/test_audio.py.) Everything here is generated.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import soundfile as sf

from speechpipe.audio import AudioError, block_bounds, load_audio

SR = 8000


def tone(sr=SR, seconds=3.0, amp=0.3):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@pytest.fixture()
def wav(tmp_path):
    p = tmp_path / "good.wav"
    sf.write(p, tone(), SR, subtype="PCM_16")
    return p


def _patch_data_size(src, dst, size):
    b = bytearray(src.read_bytes())
    i = b.find(b"data")
    b[i + 4 : i + 8] = struct.pack("<I", size)
    dst.write_bytes(bytes(b))
    return dst


def expect_error(path, *words):
    with pytest.raises(AudioError) as e:
        load_audio(path)
    assert str(path) in str(e.value)  # the message names the file
    assert "\n" not in e.value.reason and len(e.value.reason) < 200
    for w in words:
        assert w in e.value.reason, e.value.reason
    return e.value.reason


def test_truncated_header(wav, tmp_path):
    p = tmp_path / "trunc.wav"
    p.write_bytes(wav.read_bytes()[:30])
    expect_error(p, "truncated or corrupt")


def test_random_bytes_and_text_renamed(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("random.wav", "random.flac", "random.mp3"):
        (tmp_path / name).write_bytes(rng.bytes(4000))
        reason = expect_error(tmp_path / name)
        # FFmpeg may "find" a stream in noise that then yields no samples
        assert "not a recognised audio format" in reason or "no audio samples" in reason, reason
    (tmp_path / "text.mp3").write_text("Hei, dette er ikke lyd.\n" * 100)
    expect_error(tmp_path / "text.mp3", "not a recognised audio format")


def test_id3_only_mp3(tmp_path):
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x0b" + b"TIT2\x00\x00\x00\x01\x00\x00a"
    p = tmp_path / "tag.mp3"
    p.write_bytes(tag + bytes(100))  # tag plus padding, no MPEG frames
    expect_error(p, "ID3 tag but no audio")


def test_dangling_symlink(tmp_path):
    os.symlink(tmp_path / "moved-away.wav", tmp_path / "link.wav")
    expect_error(tmp_path / "link.wav", "dangling symbolic link")


def test_96k_float_resampled_once(tmp_path):
    p = tmp_path / "hi.wav"
    sf.write(p, tone(96000), 96000, subtype="FLOAT")
    a = load_audio(p)
    assert a.orig_sample_rate == 96000 and a.sample_rate == 16000
    assert a.samples.shape == (1, 48000)
    spec = np.abs(np.fft.rfft(a.samples[0]))
    assert abs(np.argmax(spec) * 16000 / len(a.samples[0]) - 220) < 1  # the tone survives resampling


def test_clipped_pcm_and_out_of_range_float(tmp_path):
    p = tmp_path / "clipped.wav"
    sf.write(p, np.clip(tone() * 10, -1, 1), SR, subtype="PCM_16")
    a = load_audio(p)
    assert a.duration == pytest.approx(3.0) and np.isfinite(a.samples).all()
    f = tmp_path / "loud.wav"
    sf.write(f, tone() * 10, SR, subtype="FLOAT")  # unnormalised float: peak 3.0
    b = load_audio(f)
    assert np.abs(b.samples).max() == pytest.approx(1.0, abs=0.05)


def test_minutes_of_silence_loads(tmp_path):
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros(SR * 180, np.int16), SR)
    a = load_audio(p)
    assert a.duration == pytest.approx(180.0) and not a.samples.any()


@pytest.mark.parametrize("size", [10**8, 0xFFFFFFFF])
def test_header_claims_more_data_than_file_has(wav, tmp_path, size):
    a = load_audio(_patch_data_size(wav, tmp_path / "lies.wav", size))
    assert a.duration == pytest.approx(3.0, abs=0.01)  # what is really there


def test_header_claims_less_data_than_file_has(wav, tmp_path):
    reason = expect_error(_patch_data_size(wav, tmp_path / "lies.wav", 1000), "too short")
    assert "0.06" in reason


def test_truncated_data_keeps_what_is_there(wav, tmp_path):
    p = tmp_path / "half.wav"
    b = wav.read_bytes()
    p.write_bytes(b[: 44 + (len(b) - 44) // 2])
    assert load_audio(p).duration == pytest.approx(1.5, abs=0.01)


def test_mp3_named_wav_falls_back_to_ffmpeg(shared, tmp_path):
    p = tmp_path / "really-mp3.wav"
    p.write_bytes((shared / "audio/real/norwegian-short-3s.mp3").read_bytes())
    a = load_audio(p)
    assert 2.5 < a.duration < 4.0


def test_truncated_mp3_keeps_what_decodes(shared, tmp_path):
    data = (shared / "audio/real/norwegian-medium-8s.mp3").read_bytes()
    p = tmp_path / "cut.mp3"
    p.write_bytes(data[: len(data) // 3])
    assert 1.5 < load_audio(p).duration < 4.0


def test_block_bounds_cut_long_audio_in_quiet_places():
    sr = 16000
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(sr * 700) * 0.1).astype(np.float32)
    quiet = [280, 570]  # seconds: one silent second in each search window
    for q in quiet:
        x[q * sr : (q + 1) * sr] = 0
    b = block_bounds(x, sr)
    assert b[0] == 0 and b[-1] == len(x) and len(b) == 4
    assert all(0 < (hi - lo) / sr <= 300 for lo, hi in zip(b[:-1], b[1:]))
    for cut, q in zip(b[1:-1], quiet):
        assert q <= cut / sr <= q + 1
    assert block_bounds(x[: sr * 299], sr) == [0, sr * 299]
