"""Turns from the audio (issue 16): channel layout, words on turns, untranscribed speech, acoustic backchannels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pyannote.core import Annotation, Segment

from speechpipe.audio.layout import apply_channel_layout, detect_channel_layout
from speechpipe.records import AudioData, CallResult, Utterance, Word


def _noise_speech(seed: int, n: int = 16000 * 4) -> np.ndarray:
    """Noise bursts switched on and off like talk (a stand-in voice for level/correlation tests)."""
    rng = np.random.default_rng(seed)
    env = np.repeat(rng.random(n // 1600) > 0.5, 1600).astype(np.float32)
    return (0.1 * rng.standard_normal(n) * env).astype(np.float32)


def test_channel_layout_on_synthetic_cases():
    a, b = _noise_speech(1), _noise_speech(2)
    assert detect_channel_layout(a[None])[0] == "mono"
    assert detect_channel_layout(np.stack([a, a]))[0] == "duplicated"
    # the same signal a little quieter on one side and lightly noisy (a converted recording)
    noisy = 0.8 * a + 0.002 * np.random.default_rng(3).standard_normal(len(a)).astype(np.float32)
    assert detect_channel_layout(np.stack([a, noisy]))[0] == "duplicated"
    # two parties with crosstalk/echo: each channel also carries the other 20 dB down
    assert detect_channel_layout(np.stack([a + 0.1 * b, b + 0.1 * a]))[0] == "two_party"
    layout, stats = detect_channel_layout(np.stack([1e-5 * a, b]))
    assert layout == "one_silent" and stats["silent_channel"] == 0


def test_layout_makes_duplicated_and_one_silent_mono_and_reports_it():
    a, b = _noise_speech(1), _noise_speech(2)
    dup = apply_channel_layout(AudioData("x.wav", np.stack([a, a]), 8000))
    assert dup.channels == 1 and dup.info()["channels"] == 2 and dup.info()["channel_layout"] == "duplicated"
    silent = apply_channel_layout(AudioData("x.wav", np.stack([1e-5 * a, b]), 8000))
    assert silent.channel_layout == "one_silent" and np.allclose(silent.samples[0], b)  # the live channel, not a mix
    two = apply_channel_layout(AudioData("x.wav", np.stack([a, b]), 8000))
    assert two.channels == 2 and two.info()["channel_layout"] == "two_party"
    forced = apply_channel_layout(AudioData("x.wav", np.stack([a, b]), 8000), "mono")
    assert forced.channels == 1 and forced.layout_stats["detected"] == "two_party"
    with pytest.raises(ValueError, match="channel layout"):
        apply_channel_layout(two, "quad")


def test_duplicated_real_mp3_gives_the_words_of_its_mono_downmix(shared, tmp_path, embedded_transcriber):
    """A real clip encoded as a stereo MP3 carrying it twice: one party, each sentence once."""
    av = pytest.importorskip("av")
    from speechpipe.audio import load_audio
    from speechpipe.config import PipelineConfig
    from speechpipe.evaluation import word_error_rate
    from speechpipe.pipeline import Pipeline

    clip = shared / "audio" / "real" / "norwegian-medium-8s.mp3"
    x = load_audio(clip).mono
    path = tmp_path / "dup.mp3"
    with av.open(str(path), "w") as out:
        st = out.add_stream("libmp3lame", rate=16000, layout="stereo")
        fr = av.AudioFrame.from_ndarray(np.stack([x, x]).astype(np.float32), format="fltp", layout="stereo")
        fr.sample_rate = 16000
        for p in [*st.encode(fr), *st.encode(None)]:
            out.mux(p)
    stereo = load_audio(path)
    assert stereo.channels == 2
    pipe = Pipeline(PipelineConfig(prosody=False, tag=False), asr=embedded_transcriber)
    res = pipe.process(path)
    downmix = AudioData(str(path), stereo.samples.mean(0, dtype=np.float32)[None], stereo.orig_sample_rate)
    mono = pipe.process(downmix, call_id="dup")
    assert res.audio["channel_layout"] == "duplicated" and res.audio["channels"] == 2
    words = [w.text for u in res.utterances for w in u.words]
    assert words and words == [w.text for u in mono.utterances for w in u.words]
    ref = (shared / "audio" / "real" / "norwegian-medium-8s.ref.txt").read_text(encoding="utf-8")
    wer = word_error_rate([ref], [" ".join(u.text for u in res.utterances if u.text)])
    assert wer == word_error_rate([ref], [" ".join(u.text for u in mono.utterances if u.text)]) and wer < 0.9


class _Fixed:
    """A diariser that returns a fixed annotation (the interface the pipeline needs)."""

    name = "fixed"

    def __init__(self, ann: Annotation):
        self.ann = ann
        self.seen = None

    def diarize(self, audio, speech_probs=None) -> Annotation:
        self.seen = speech_probs
        return self.ann


def test_words_hang_on_turns_and_speech_without_words_is_kept():
    from speechpipe.outputs.exports import to_rttm
    from speechpipe.speakers.assign import assign_words

    ann = Annotation()
    ann[Segment(0.0, 4.0)] = "S0"
    ann[Segment(2.0, 2.4), "bc"] = "S1"  # a «mm» inside S0's turn: no word
    ann[Segment(4.5, 9.0)] = "S1"
    ann[Segment(9.5, 12.0)] = "S0"  # a whole turn the recogniser missed
    words = [Word("velkommen", 0.2, 0.8), Word("til", 0.9, 1.0), Word("nav", 1.1, 1.5), Word("hei", 4.6, 5.0),
             Word("jeg", 5.2, 5.4), Word("lurer", 5.5, 6.0)]
    utts = [Utterance("unknown", 0.2, 6.0, "velkommen til nav hei jeg lurer", words)]
    audio = AudioData("call.wav", np.zeros((1, 16000 * 12), np.float32), 8000)
    d = _Fixed(ann)
    out, turns, roles = assign_words(d, audio, utts, speech_probs=[np.zeros(375)])
    assert d.seen is not None and d.seen.ndim == 1  # the mono Silero pass is handed on
    got = [(u.speaker, u.start, u.end, u.text, u.transcribed) for u in out]
    assert got == [
        ("counsellor", 0.2, 1.5, "velkommen til nav", True),
        ("counsellor", 1.5, 4.0, "", False),  # the turn goes on after the last word
        ("caller", 2.0, 2.4, "", False),
        ("caller", 4.6, 6.0, "hei jeg lurer", True),
        ("caller", 6.0, 9.0, "", False),  # the untranscribed rest of the caller's turn
        ("counsellor", 9.5, 12.0, "", False),
    ]
    assert roles["counsellor"] == "S0"
    assert [t.speaker for t in turns] == ["counsellor", "caller", "caller", "counsellor"]
    res = CallResult("call", out, turns=turns)
    d2 = json.loads(json.dumps(res.to_dict()))
    assert d2["turns"][1] == {"speaker": "caller", "start": 2.0, "end": 2.4, "cluster": "S1"}
    assert [u.get("transcribed", True) for u in d2["utterances"]] == [True, False, False, True, False, False]
    back = CallResult.from_dict(d2)
    assert [u.transcribed for u in back.utterances] == [u.transcribed for u in out]
    # the RTTM users get is the turns: all the speech, words or not
    rttm = to_rttm(back).splitlines()
    assert len(rttm) == 4 and rttm[1].split()[3:5] == ["2.000", "0.400"]


def test_stereo_words_in_the_other_channels_turn_split_the_utterance():
    from speechpipe.speakers.assign import attach_words

    ann = Annotation()
    ann[Segment(0, 3)] = "left"
    ann[Segment(3.2, 6)] = "right"
    ann[Segment(6.2, 9)] = "left"
    ws = [Word("a", 0.5, 1.0), Word("b", 2.0, 2.5), Word("c", 6.5, 7.0)]
    u = Utterance("unknown", 0.5, 7.0, "a b c", ws, channel=0)
    out = attach_words(ann, [u], stereo=True)
    assert [(v.text, v.start, v.end) for v in out] == [("a b", 0.5, 2.5), ("c", 6.5, 7.0)]


def test_backchannels_found_acoustically_on_a_stereo_sim_call_with_no_words(shared):
    """No ASR at all: the short listener turns of the audio carry the gold backchannels and their intonation."""
    from speechpipe.audio import load_audio
    from speechpipe.prosody.analyzer import ProsodyAnalyzer
    from speechpipe.prosody.backchannel import short_listener_turns
    from speechpipe.speakers.assign import assign_words
    from speechpipe.speakers.stereo import StereoDiarizer

    ref = json.loads((shared / "audio" / "sim-calls" / "dev-002.ref.json").read_text())
    audio = load_audio(shared / "audio" / "sim-calls" / "dev-002.stereo.flac")
    utts, turns, _ = assign_words(StereoDiarizer(), audio, [], counsellor_channel="left")
    assert utts and all(not u.transcribed for u in utts)
    utts = short_listener_turns(utts, turns)
    ProsodyAnalyzer().analyse(audio, utts)
    found = [u for u in utts if u.prosody.get("acoustic_backchannel")]
    gold = [g for g in ref["utterances"] if "backchannel" in g["acts"]]
    hits = [next((u for u in found if u.speaker == g["speaker"] and u.start < g["end"] and u.end > g["start"]), None)
            for g in gold]
    assert len(gold) >= 4
    assert sum(h is not None for h in hits) >= 0.85 * len(gold)
    assert sum(h is not None and h.intonation == g["intonation"] for g, h in zip(gold, hits)) >= 0.8 * len(gold)
    for u in found:
        assert u.prosody["backchannel_evidence"]["source"] == "acoustic:short_turn"
    # From the audio alone a short «Ja.» answering a question looks like one that keeps the other
    # talking (in the dev references about one short response in three is no backchannel), so words
    # are what sorts them out; without any, the candidates stay bounded by the short turns.
    spurious = [u for u in found if not any(u.start < g["end"] and u.end > g["start"] for g in gold)]
    assert len(spurious) <= 2 * len(gold)
    assert all(u.end - u.start <= 1.45 for u in found)


def test_eval_diarization_from_output_scores_the_exported_rttm(shared, tmp_path, cli):
    import os
    import subprocess

    from speechpipe.cli.diarize import load_reference
    from speechpipe.outputs.exports import to_rttm
    from speechpipe.records import Turn

    rttm = shared / "audio" / "sim-calls" / "dev-003.rttm"
    ref = load_reference(rttm)
    turns = [Turn(lab, s.start, s.end) for s, _, lab in ref.itertracks(yield_label=True)]
    (tmp_path / "dev-003.mono.rttm").write_text(to_rttm(CallResult("dev-003.mono", [], turns=turns)))
    # a second output that misses half of the speech
    (tmp_path / "dev-004.mono.rttm").write_text(to_rttm(CallResult("dev-004.mono", [], turns=turns[::2])))
    r = subprocess.run([*cli, "eval", "diarization", "--from-output", str(tmp_path), "--ref", str(rttm),
                        "--ref", str(shared / "audio" / "sim-calls" / "dev-004.rttm")],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    row3 = next(line for line in r.stdout.splitlines() if "dev-003.mono.rttm" in line)
    assert row3.split("│")[2].strip() == "0.0"  # DER of a perfect export
    row4 = next(line for line in r.stdout.splitlines() if "dev-004.mono.rttm" in line)
    assert float(row4.split("│")[2]) > 20


def test_short_turn_position_rules():
    """A caller's turn head is an answer's start, a counsellor's is «Okei. [next question]»; in mono a
    short turn on the other party's recognised words is a mislabelled piece of their speech."""
    from speechpipe.prosody.backchannel import short_listener_turns
    from speechpipe.records import Turn, Utterance, Word

    turns = [
        Turn("counsellor", 0.0, 4.0), Turn("caller", 4.3, 4.7), Turn("caller", 4.7, 9.0),  # caller head
        Turn("counsellor", 9.3, 9.7), Turn("counsellor", 9.7, 12.0),  # counsellor head
        Turn("caller", 12.3, 20.0), Turn("counsellor", 14.0, 14.4),  # inside, on the caller's words
        Turn("counsellor", 17.0, 17.4),  # inside, in a pause of the caller's
    ]
    words = [Word("ord", 13.6, 14.2, 0.9), Word("ord", 14.2, 14.6, 0.9), Word("ord", 18.0, 18.9, 0.9)]
    utts = [Utterance(t.speaker, t.start, t.end, "", transcribed=False) for t in turns if t.end - t.start > 1.5]
    utts[2] = Utterance("caller", 12.3, 20.0, "ord ord ord", words=words)
    out = short_listener_turns(utts, turns)
    short = {(u.speaker, u.start) for u in out if "short_turn" in u.prosody}
    assert short == {("counsellor", 9.3), ("counsellor", 17.0)}
    # stereo: the channel tells who spoke, so the same overlap is a real overlapping «mm»
    st = [Turn(t.speaker, t.start, t.end, channel=0 if t.speaker == "counsellor" else 1) for t in turns]
    out = short_listener_turns(utts, st)
    assert ("counsellor", 14.0) in {(u.speaker, u.start) for u in out if "short_turn" in u.prosody}


def test_a_turn_head_the_recogniser_wrote_as_a_minimal_response_alone_is_a_candidate():
    """A caller's turn head is an answer's start, unless Whisper wrote it as an utterance of its own made
    only of a minimal response («Ja...» then «Hva er det med?», dev-004): then it is one, measured on
    the turn (Whisper's times lag it), and the recognised utterance is taken over, not kept twice."""
    from speechpipe.prosody.backchannel import short_listener_turns
    from speechpipe.records import Turn, Utterance, Word

    turns = [Turn("counsellor", 0.0, 4.0), Turn("caller", 4.3, 4.65), Turn("caller", 4.65, 9.0)]
    ja = Utterance("caller", 4.5, 4.9, "Ja...", words=[Word("Ja...", 4.5, 4.9, 0.9)])
    rest = Utterance("caller", 4.9, 9.0, "hva er det med", words=[Word("hva", 4.9, 5.2, 0.9)])
    out = short_listener_turns([Utterance("counsellor", 0.0, 4.0, "du har stått i det lenge"), ja, rest], turns)
    short = [u for u in out if "short_turn" in u.prosody]
    assert [(u.start, u.end, u.text) for u in short] == [(4.3, 4.65, "Ja...")]
    assert sum(u.text == "Ja..." for u in out) == 1
    # the same head under an answer's first words stays part of the answer
    ans = Utterance("caller", 4.3, 9.0, "ja det er riktig", words=[Word("ja", 4.3, 4.5, 0.9), Word("det", 4.7, 4.9)])
    out = short_listener_turns([Utterance("counsellor", 0.0, 4.0, "har du søkt"), ans], turns)
    assert not any("short_turn" in u.prosody for u in out)


def test_flagged_short_turn_is_a_backchannel_whatever_the_recogniser_wrote():
    """The prosody stage flags a voiced short listener turn (≤ 2 words); the tagger takes it as a
    backchannel alone even when Whisper wrote a question on it (the sim voices' «Okei» → «Hvor høy?»)."""
    from speechpipe.records import Utterance
    from speechpipe.tagging.tagger import ACOUSTIC_BC, load_tagger

    def call(flag):
        return [Utterance("caller", 0.0, 4.0, "Jeg har ventet i tre uker på svar fra dere."),
                Utterance("counsellor", 4.3, 4.9, "Hvor høy?", prosody={ACOUSTIC_BC: True} if flag else {}),
                Utterance("caller", 5.1, 8.0, "og nå er pengene helt slutt")]

    tagger = load_tagger()
    a, b = call(True), call(False)
    tagger.tag_call(a)
    tagger.tag_call(b)
    assert a[1].acts == ["backchannel"] and a[1].evidence == {"backchannel": "acoustic:short_turn"}
    assert b[1].acts != ["backchannel"]


def test_stretched_words_and_minimal_responses_of_the_other_party_do_not_hide_a_short_turn():
    """Mono: Whisper stretches a word over speech it did not write («jeg» over 4 s, dev-003), and writes a
    «mm» on the talker (dev-004); neither shows the talker speaking over the listener's short turn."""
    from speechpipe.prosody.backchannel import short_listener_turns
    from speechpipe.records import Turn, Utterance, Word

    turns = [Turn("counsellor", 0.0, 12.0), Turn("caller", 3.0, 3.4), Turn("caller", 8.0, 8.4)]
    talk = Utterance("counsellor", 0.0, 7.5, "nå har jeg sendt", words=[
        Word("nå", 0.0, 0.3), Word("har", 0.3, 0.5), Word("jeg", 0.5, 4.6), Word("sendt", 4.6, 5.0)])
    mm = Utterance("counsellor", 8.05, 8.35, "Mm.", words=[Word("Mm.", 8.05, 8.35)])
    out = short_listener_turns([talk, mm, Utterance("counsellor", 9.0, 12.0, "så", words=[Word("så", 9.0, 9.3)])],
                               turns)
    short = {(u.speaker, u.start, u.text) for u in out if "short_turn" in u.prosody}
    assert short == {("caller", 3.0, ""), ("caller", 8.0, "Mm.")}
    assert not any(u.speaker == "counsellor" and u.text == "Mm." for u in out)  # taken over, not duplicated
    # a word of ordinary length over the short turn still vetoes it
    talk.words[2] = Word("jeg", 2.9, 3.5)
    out = short_listener_turns([talk], turns[:2])
    assert not any("short_turn" in u.prosody for u in out)
