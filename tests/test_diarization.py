"""Diarisation and roles on real and simulated calls (../shared) and generated audio."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pyannote.core import Annotation, Segment

from speechpipe.evaluation import role_time_accuracy
from speechpipe.records import AudioData, Utterance, Word

ROLE_OF_CHANNEL = {"counsellor": 0, "caller": 1}


def ref_utterances(ref_json, channel: bool, with_text: bool = True):
    """Utterances as ASR would give them, from a ``*.ref.json`` (text optional: a poor transcript)."""
    d = json.loads(ref_json.read_text(encoding="utf-8"))
    out = []
    for u in d["utterances"]:
        text = u["spoken"] if with_text else ""
        toks = text.split() or [""]
        step = (u["end"] - u["start"]) / len(toks)
        words = [Word(t, u["start"] + i * step, u["start"] + (i + 1) * step) for i, t in enumerate(toks) if t]
        out.append(Utterance("unknown", u["start"], u["end"], text, words,
                             channel=ROLE_OF_CHANNEL.get(u["speaker"]) if channel else None))
    return d, out


def reference(path):
    from pyannote.database.util import load_rttm

    return next(iter(load_rttm(str(path)).values()))


def der(ref, hyp, collar=0.25):
    from pyannote.metrics.diarization import DiarizationErrorRate

    return DiarizationErrorRate(collar=collar)(ref, hyp)


def test_split_by_speaker_splits_at_changes_and_keeps_a_short_backchannel():
    from speechpipe.speakers.diarization import split_by_speaker

    ann = Annotation()
    ann[Segment(0, 4)] = "A"
    ann[Segment(4, 4.4)] = "B"  # «mm» inside A's turn
    ann[Segment(4.4, 8)] = "A"
    words = [Word("jeg", 0.5, 1), Word("ringer", 1, 2), Word("mm", 4.05, 4.3), Word("om", 4.6, 5), Word("penger", 5, 6)]
    out = split_by_speaker([Utterance("unknown", 0.5, 6, "jeg ringer mm om penger", words)], ann)
    assert [(u.cluster, u.text) for u in out] == [("A", "jeg ringer"), ("B", "mm"), ("A", "om penger")]
    assert out[1].start == 4.05 and out[1].end == 4.3


def test_roles_from_reference_turns_right_on_every_sim_call_with_and_without_text(shared):
    """Role cues alone (reference turns), with the reference text and with no text at all."""
    from speechpipe.speakers.roles import assign_roles

    calls = sorted((shared / "audio/sim-calls").glob("*.ref.json"))
    assert len(calls) >= 16
    for ref_json in calls:
        ann = reference(ref_json.with_name(ref_json.name.replace(".ref.json", ".rttm")))
        d = json.loads(ref_json.read_text(encoding="utf-8"))
        for with_text in (True, False):
            turns = [(u["speaker"], u["start"], u["end"], u["spoken"] if with_text else "") for u in d["utterances"]]
            dec = assign_roles(ann, turns)
            assert dec.roles["counsellor"] == "counsellor", (ref_json.name, with_text, dec.evidence)
            assert dec.roles["caller"] == "caller", (ref_json.name, with_text)
            if "other" in dec.roles:
                assert dec.roles["other"] == "other", ref_json.name
            assert 0.5 < dec.confidence <= 1.0


# ------------------------------------------------------------------ stereo


def test_stereo_auto_finds_the_counsellor_on_every_stereo_sim_call(shared):
    from speechpipe.audio import load_audio
    from speechpipe.audio.vad import speech_probabilities
    from speechpipe.speakers.assign import assign_words, speaker_turns
    from speechpipe.speakers.diarization import StereoDiarizer

    d = StereoDiarizer()
    files = sorted((shared / "audio/sim-calls").glob("*.stereo.flac"))
    assert files
    for f in files:
        audio = load_audio(f)
        probs = [speech_probabilities(audio.samples[c]) for c in range(2)]  # one VAD pass, as the pipeline shares it
        turns = speaker_turns(d, audio, probs)  # once per file (each channel may go through the neural diariser)
        ref_json = f.with_name(f.name.replace(".stereo.flac", ".ref.json"))
        for with_text in (True, False):
            _, utts = ref_utterances(ref_json, channel=True, with_text=with_text)
            out, _, roles = assign_words(d, audio, utts, counsellor_channel="auto", diarised=turns)
            assert roles["method"] == "stereo-auto" and roles["counsellor"] == "left", (f.name, roles)
            assert roles["confidence"] > 0.5
            assert {u.speaker for u in out} == {"counsellor", "caller"}
        # a forced channel is obeyed
        _, utts = ref_utterances(ref_json, channel=True)
        out, _, roles = assign_words(d, audio, utts, counsellor_channel="right", diarised=turns)
        assert roles["counsellor"] == "right" and out[0].speaker == "caller"
        # who-spoke-when from the channels matches the reference turns
        assert der(reference(f.with_name(f.name.replace(".stereo.flac", ".rttm"))),
                   turns[0].rename_labels({"left": "counsellor", "right": "caller"})) < 0.08


def test_stereo_crosstalk_leak_is_not_speech(shared):
    """Right channel = a faint, delayed copy of the left talker (echo) plus its own talker later."""
    from speechpipe.audio import load_audio
    from speechpipe.speakers.diarization import StereoDiarizer

    a = load_audio(shared / "audio/realconv/rcdev-01.wav").mono
    sr = 16000
    left = np.zeros(sr * 20, np.float32)
    right = np.zeros(sr * 20, np.float32)
    left[: sr * 7] = a[: sr * 7]  # talker A, 0-7 s
    right[int(sr * 0.02): int(sr * 7.02)] += 0.05 * a[: sr * 7]  # −26 dB leak of A on the right
    right[sr * 10: sr * 16] = a[sr * 8: sr * 14]  # talker B, 10-16 s
    audio = AudioData("leak.wav", np.stack([left, right]), sr)
    d = StereoDiarizer()
    ann = d.diarize(audio)
    right_speech = ann.label_timeline("right")
    assert right_speech.crop(Segment(0, 8)).duration() < 0.2
    assert right_speech.crop(Segment(10, 16)).duration() > 4.0
    utts = [
        Utterance(
            "unknown", 0.5, 6.5, "hei du snakker med kari", [Word("hei", 0.5, 1.0), Word("du", 1.2, 6.5)], channel=0
        ),
        Utterance("unknown", 0.6, 6.4, "ekko", [Word("ekko", 0.6, 6.4)], channel=1),  # ASR hearing the leak
        Utterance(
            "unknown", 10.2, 15.8, "jeg lurer på noe", [Word("jeg", 10.2, 11), Word("lurer", 11, 15.8)], channel=1
        ),
    ]
    out, _ = d.assign(audio, utts)
    assert [u.text for u in out if u.transcribed] == ["hei du snakker med kari", "jeg lurer på noe"]
    # speech with no words is kept as untranscribed utterances, but never the leak
    assert not [u for u in out if not u.transcribed and u.channel == 1 and u.start < 8]


# ------------------------------------------------------------------ mono, embedded


@pytest.fixture(scope="session")
def embedded():
    from speechpipe.speakers.diarization import EmbeddedDiarizer

    return EmbeddedDiarizer()


@pytest.fixture(scope="session")
def diarized(shared, embedded):
    """``diarized(relative path)`` -> (audio, embedded diarisation), each file diarised once per session."""
    from speechpipe.audio import load_audio

    memo = {}

    def get(name):
        if name not in memo:
            audio = load_audio(shared / "audio" / name)
            memo[name] = (audio, embedded.diarize(audio))
        return memo[name]

    return get


# Measured with the defaults (pyannote DER, collar 0.25), see the lead's report table:
# dev00 9.0 %, sample 10.0 % (12.5 % before regions needed a Silero peak), rcdev-01 8.3 %,
# rcdev-01.tel 23.7 % (its reference keeps pauses inside turns that the telephone band leaves
# silent: 15.6 % of it is missed speech; FEO072's first 1-s turn sounds like FEO070 to GE2E: 8.1 %).
REAL_BARS = {"real/dev00.wav": 0.11, "real/sample.wav": 0.12, "realconv/rcdev-01.wav": 0.15,
             "realconv/rcdev-01.tel.wav": 0.27}


@pytest.mark.parametrize("name", sorted(REAL_BARS))
def test_embedded_der_on_real_two_speaker_recordings(shared, diarized, name):
    f = shared / "audio" / name
    _, hyp = diarized(name)
    assert len(hyp.labels()) == 2
    assert der(reference(f.with_name(f.name.split(".")[0] + ".rttm")), hyp) < REAL_BARS[name]


def test_embedded_false_alarm_is_small_on_real_speech(shared, diarized):
    """Pauses between turns are not speech (the old ASR-style regions bridged them: 19.6 % FA)."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    r = DiarizationErrorRate(collar=0.25)(reference(shared / "audio/realconv/rcdev-01.rttm"),
                                          diarized("realconv/rcdev-01.wav")[1], detailed=True)
    assert r["false alarm"] / r["total"] < 0.03  # measured 0.002


def test_embedded_sim_call_der_and_roles(shared, embedded, diarized):
    from speechpipe.speakers.assign import assign_mono as _assign_mono

    sim = shared / "audio/sim-calls"
    audio, hyp = diarized("sim-calls/dev-016.mono.wav")
    ref = reference(sim / "dev-016.rttm")
    assert der(ref, hyp) < 0.03  # measured 0.013 (0.022 with loud breaths as speech, 0.057 with pauses)
    for with_text in (True, False):
        _, utts = ref_utterances(sim / "dev-016.ref.json", channel=False, with_text=with_text)
        # the public path once (it diarises again), the same role mapping on the cached turns otherwise
        out, roles = embedded.assign(audio, utts) if with_text else _assign_mono(hyp, utts, embedded.name)
        assert roles["counsellor"] == "SPEAKER_00" and roles["confidence"] > 0.5
        assert all(u.cluster in roles["clusters"] for u in out)
        assert role_time_accuracy(ref, out) > 0.9


def test_embedded_finds_the_third_voice_of_dev014_as_other(shared, embedded, diarized):
    """The caller's daughter takes the phone: her voice resembles her father's (no eigengap),
    but she holds her own stretch of the call, so she is a third speaker, role ``other``."""
    sim = shared / "audio/sim-calls"
    ref = reference(sim / "dev-014.rttm")
    _, hyp = diarized("sim-calls/dev-014.mono.wav")
    assert len(hyp.labels()) == 3
    assert der(ref, hyp) < 0.05  # measured 0.031 (0.177 when she was merged with the caller)
    turns = [Utterance("unknown", s.start, s.end, "") for s in hyp.itersegments()]
    from speechpipe.speakers.assign import assign_mono as _assign_mono

    out, roles = _assign_mono(hyp, turns, embedded.name)
    assert roles["counsellor"] == "SPEAKER_00"
    assert sorted(roles["clusters"].values()) == ["caller", "counsellor", "other"]
    assert role_time_accuracy(ref, out, only="other") > 0.9  # measured 0.95
    assert role_time_accuracy(ref, out) > 0.93  # measured 0.967 (0.694 before)


def test_loud_breaths_between_turns_are_not_speech_but_faint_in_turn_breaths_stay(shared, diarized):
    """dev-007's caller breathes heavily between turns (31 breaths in its reference): none may count
    as speech. The real dev00's faint breaths inside turns are speech in its reference: they stay."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    from speechpipe.audio.vad import breath_regions, speech_probabilities

    sim = shared / "audio/sim-calls"
    ref = reference(sim / "dev-007.rttm")
    _, hyp = diarized("sim-calls/dev-007.mono.wav")
    r = DiarizationErrorRate(collar=0.25)(ref, hyp, detailed=True)
    assert r["false alarm"] / r["total"] < 0.025  # measured 0.013 (0.066 when breaths counted as speech)
    assert r["diarization error rate"] < 0.03  # measured 0.016 (0.069)
    breaths = json.loads((sim / "dev-007.ref.json").read_text(encoding="utf-8"))["breaths"]
    speech = hyp.get_timeline().support()
    heard = [b for b in breaths
             if speech.crop(Segment(b["start"], b["end"])).duration() > 0.5 * (b["end"] - b["start"])]
    assert len(heard) <= 1, heard  # measured 0 of 31

    real, real_hyp = diarized("real/dev00.wav")
    dev00 = reference(shared / "audio/real/dev00.rttm").get_timeline().support()
    regions = [(t.start, t.end) for t in real_hyp.get_timeline().support()]
    found = breath_regions(real.mono, speech_probabilities(real.mono), regions)
    assert sum(dev00.crop(Segment(a, b)).duration() for a, b in found) < 0.1  # measured 0.0


def test_third_voice_test_tells_a_takeover_from_a_split_voice():
    from speechpipe.speakers.diarization import distinct_third_voice, time_separation

    rng = np.random.default_rng(0)
    t = np.arange(600) * 0.25  # 150 s of windows
    voices = rng.normal(size=(2, 16))
    lab = np.where(np.arange(600) % 3 == 0, 2, 0)  # counsellor (2) and caller (0) take turns
    emb = voices[(lab == 2).astype(int)] + 0.05 * rng.normal(size=(600, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    # takeover: a third cluster (as alike the caller as can be) holds the second half of the call
    late = (lab == 0) & (t > 75)
    ok, stats = distinct_third_voice(emb, t, np.where(late, 1, lab), 0.25)
    assert ok and stats["time_auc"] == 1.0
    # one voice split in two, interleaved all through the call: rejected
    alt = (lab == 0) & (np.arange(600) % 2 == 0)
    ok, stats = distinct_third_voice(emb, t, np.where(alt, 1, lab), 0.25)
    assert not ok and stats["time_auc"] < 0.6
    # a takeover that is too short to be trusted: rejected
    brief = (lab == 0) & (t > 140)
    assert not distinct_third_voice(emb, t, np.where(brief, 1, lab), 0.25)[0]
    assert time_separation(np.array([]), t) == 0.5


def test_tight_speech_regions_leave_out_pauses_and_slow_silero_tails():
    from speechpipe.audio.vad import FRAME_S, probabilities_to_regions, tight_speech_regions

    sr = 16000
    rng = np.random.default_rng(1)
    t = np.arange(8 * sr) / sr
    on = ((t > 1) & (t < 2.5)) | ((t > 3.3) & (t < 4)) | ((t > 4.2) & (t < 6))  # 0.8 s pause, 0.2 s pause
    x = (0.1 * np.sin(2 * np.pi * 180 * t) * on + rng.normal(0, 1e-3, len(t))).astype(np.float32)
    frames = np.arange(len(x) // 512 + 1) * FRAME_S
    # Silero-like: confident inside speech, decaying slowly (above the loose 0.15) for 0.6 s after it
    p = np.zeros(len(frames))
    for s, e in ((1, 2.5), (3.3, 4), (4.2, 6)):
        p[(frames >= s) & (frames < e)] = 0.9
        tail = (frames >= e) & (frames < e + 0.6)
        p[tail] = np.maximum(p[tail], 0.4)
    loose = probabilities_to_regions(p, 0.15, 0.25, 0.1, 0.1, 8.0)
    assert len(loose) == 1  # the ASR-style regions bridge the 0.8 s pause
    tight = tight_speech_regions(p, x, pad_s=0.0)
    assert [(round(s, 1), round(e, 1)) for s, e in tight] == [(1.0, 2.5), (3.3, 6.0)]
    # digital silence (a muted line) does not pull the noise floor down to nothing
    x2 = x.copy()
    x2[int(6.5 * sr):] = 0
    assert [(round(s, 1), round(e, 1)) for s, e in tight_speech_regions(p, x2, pad_s=0.0)] == [(1.0, 2.5), (3.3, 6.0)]
    assert tight_speech_regions(np.zeros(len(frames)), x) == []


def test_tight_speech_regions_drop_a_noise_burst_silero_barely_hears():
    """Energy may extend speech Silero heard, not create it: a loud rustle between turns
    (Silero 0.25 there, inside the loose region) is speech without ``min_peak``, not with it."""
    from speechpipe.audio.vad import FRAME_S, probabilities_to_regions, tight_speech_regions

    sr = 16000
    rng = np.random.default_rng(2)
    t = np.arange(6 * sr) / sr
    voice = ((t > 0.5) & (t < 2)) | ((t > 4) & (t < 5.5))
    burst = (t > 2.9) & (t < 3.3)
    x = 0.1 * np.sin(2 * np.pi * 180 * t) * voice + rng.normal(0, 0.05, len(t)) * burst
    x = (x + rng.normal(0, 1e-3, len(t))).astype(np.float32)
    frames = np.arange(len(x) // 512 + 1) * FRAME_S
    p = np.where(((frames > 0.5) & (frames < 2)) | ((frames > 4) & (frames < 5.5)), 0.9, 0.02)
    p[(frames > 2) & (frames < 4)] = 0.25  # Silero's tail and the burst: above the loose 0.15 only
    loose = probabilities_to_regions(p, 0.15, 0.25, 0.1, 0.1, 6.0)
    kw = dict(pad_s=0.0, merge_gap_s=0.5, loose=loose)
    assert [(round(a, 1), round(b, 1)) for a, b in tight_speech_regions(p, x, **kw)] == [
        (0.5, 2.0),
        (2.9, 3.3),
        (4.0, 5.5),
    ]
    assert [(round(a, 1), round(b, 1)) for a, b in tight_speech_regions(p, x, min_peak=0.35, **kw)] == [
        (0.5, 2.0),
        (4.0, 5.5),
    ]


def test_caller_is_who_first_speaks_three_seconds_not_whose_first_segment_is_earliest():
    """A clustering slip gives 0.5 s of the caller's first turn to the relative who takes the
    phone later; she must still be ``other`` (this flipped dev-014's roles in an experiment)."""
    from speechpipe.speakers.roles import assign_roles, time_to_speak

    ann = Annotation()
    turns = [("C", 0, 4, "NAV, du snakker med Line. Hva kan jeg hjelpe deg med?"),
             ("R", 4.5, 5.0, ""), ("P", 5.0, 12, "Jeg lurer på dagpengene mine"),
             ("C", 12.5, 16, "Ja, skal vi se. Hva er fødselsnummeret ditt?"), ("P", 16.5, 20, "Det er ..."),
             ("R", 30, 45, "Hei, det er datteren hans, jeg tar over"), ("C", 45.5, 50, "Hei, ja, hva gjelder det?")]
    for lab, a, b, _ in turns:
        ann[Segment(a, b)] = lab
    assert time_to_speak(ann, "R", 3.0) == 32.5 and time_to_speak(ann, "P", 3.0) == 8.0
    d = assign_roles(ann, turns)
    assert d.roles == {"C": "counsellor", "P": "caller", "R": "other"}


def test_embedded_silence_and_tiny_input(embedded):
    audio = AudioData("silence.wav", np.zeros((1, 16000 * 3), np.float32), 16000)
    assert len(embedded.diarize(audio)) == 0
    out, roles = embedded.assign(audio, [])
    assert out == [] and roles["counsellor"] is None


# ------------------------------------------------------------------ CLI


def test_eval_diarization_command_table_and_exit_code(shared, tmp_path):
    import warnings

    from typer.testing import CliRunner

    from speechpipe.cli import app

    rc = shared / "audio/realconv"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok = CliRunner().invoke(
            app, ["eval", "diarization", str(rc / "rcdev-01.tel.wav"), "--ref", str(rc / "rcdev-01.rttm")]
        )
    assert ok.exit_code == 0, ok.output
    # the whole name (rcdev-01.wav and .tel.wav must not both read "rcdev-01.…"), and the scored
    # region is stated, so pyannote.metrics does not warn about approximating it
    assert "rcdev-01.tel.wav" in ok.output and "DER" in ok.output and "all" in ok.output
    assert not [w for w in caught if "uem" in str(w.message)]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    res = CliRunner().invoke(app, ["eval", "diarization", str(bad), "--ref", str(rc / "rcdev-01.rttm")])
    assert res.exit_code == 2 and "bad.wav" in res.output and "Traceback" not in res.output


@pytest.mark.slow
def test_embedded_roles_from_real_asr_output(shared, embedded, diarized, embedded_transcriber):
    """Whisper base mis-hears the robotic sim voices (WER ≈ 0.9): roles must still come out right."""
    from speechpipe.audio import load_audio

    sim = shared / "audio/sim-calls"
    audio = load_audio(sim / "dev-016.mono.wav")
    utts = embedded_transcriber.transcribe(audio.mono)
    assert utts and all(u.channel is None for u in utts)
    out, roles = embedded.assign(audio, utts)
    assert [u.start for u in out] == sorted(u.start for u in out)
    assert {u.speaker for u in out} <= {"counsellor", "caller", "other"}
    assert roles["counsellor"] == "SPEAKER_00" and roles["confidence"] > 0.5  # the voice that greets first
    # Whisper's word times on this audio are hallucinated ("Hva er det?" everywhere), so
    # score the role map on the diariser's own turns: who-spoke-when labelled with roles.
    turns = [Utterance(roles["clusters"][lab], s.start, s.end, "")
             for s, _, lab in diarized("sim-calls/dev-016.mono.wav")[1].itertracks(yield_label=True)]
    assert role_time_accuracy(reference(sim / "dev-016.rttm"), turns) > 0.9


def test_build_diarizer_choices_and_auto_dispatch():
    from speechpipe.config import ConfigError, PipelineConfig
    from speechpipe.speakers.diarization import (
        AutoDiarizer,
        EmbeddedDiarizer,
        StereoDiarizer,
        build_diarizer,
    )
    from speechpipe.speakers.neural import NeuralDiarizer

    assert isinstance(build_diarizer(PipelineConfig(diarizer="stereo")), StereoDiarizer)
    assert isinstance(build_diarizer(PipelineConfig(diarizer="neural")), NeuralDiarizer)
    assert isinstance(build_diarizer(PipelineConfig(diarizer="embedded")), EmbeddedDiarizer)
    # bad choices are refused when the settings are made, before any model is built
    with pytest.raises(ConfigError, match="pipeline directory") as e:
        PipelineConfig(diarizer="pyannote")
    assert e.value.setting == "pyannote_pipeline"
    with pytest.raises(ConfigError, match="diarizer must be one of"):
        PipelineConfig(diarizer="magic")
    auto = build_diarizer(PipelineConfig())
    assert isinstance(auto, AutoDiarizer)
    sr = 16000
    t = np.arange(sr * 4) / sr
    tone = (0.2 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    stereo = AudioData("s.wav", np.stack([tone, np.zeros_like(tone)]), sr)
    utts = [Utterance("unknown", 0.5, 1.5, "hei", [Word("hei", 0.5, 1.5)], channel=0)]
    out, roles = auto.assign(stereo, utts, counsellor_channel="left")
    assert auto.name == "stereo-channels" and roles["method"] == "stereo-forced" and out[0].speaker == "counsellor"
    out, roles = auto.assign(AudioData("m.wav", np.zeros((1, sr * 2), np.float32), sr), [])
    assert auto.name == NeuralDiarizer.name and out == []  # mono: the neural diariser


def test_label_index_answers_like_cropping_the_annotation():
    """The binary-search word labeller gives what Annotation.crop gives, query by query."""
    from pyannote.core import Annotation, Segment

    from speechpipe.speakers.diarization import LabelIndex

    def by_crop(ann, start, end):  # the direct definition: most overlap, else nearest within 1 s
        best, best_ov = None, 0.0
        for seg, _, lab in ann.crop(Segment(start, max(end, start + 1e-3)), mode="intersection").itertracks(
            yield_label=True
        ):
            if seg.duration > best_ov:
                best, best_ov = lab, seg.duration
        if best is not None:
            return best
        near = ann.crop(Segment(start - 1.0, end + 1.0), mode="loose")
        dist = [(min(abs(s.end - start), abs(s.start - end)), lab) for s, _, lab in near.itertracks(yield_label=True)]
        return min(dist)[1] if dist else None

    rng = np.random.default_rng(1)
    ann, t = Annotation(), 0.0
    for i in range(200):  # exclusive diarisation: turns one after another, gaps of 0-3 s
        t += rng.uniform(0, 3)
        d = rng.uniform(0.1, 6)
        ann[Segment(round(t, 2), round(t + d, 2)), i] = str(rng.choice(["A", "B", "C"]))
        t += d
    queries = [(a, a + rng.uniform(0, 0.8)) for a in rng.uniform(-2, t + 5, 1500)]
    queries += [(a, a) for a in rng.uniform(0, t, 100)]
    idx = LabelIndex(ann)
    got = [idx(a, b) for a, b in queries]
    assert got == [by_crop(ann, a, b) for a, b in queries]
    assert None in got and len(set(got) - {None}) == 3  # both branches exercised
