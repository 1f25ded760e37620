"""Rule files and categories: every shipped rule fires on a call where it must and not on one where it must not
(calls built from the shared reference transcripts), the condition language, bad files, tables and sampling."""

from __future__ import annotations

import copy
import subprocess

import pytest
from test_exports_data import text_call, timed_call

from speechpipe.analytics.call import analyse_call
from speechpipe.analytics.categories import categorise
from speechpipe.analytics.rules import RulesError, load_rules, parse_rules
from speechpipe.records import CallResult, Utterance

DEFAULTS = load_rules()


@pytest.fixture(scope="module")
def sim(shared):
    return shared / "audio" / "sim-calls"


def _call(sim, n: int) -> CallResult:
    c = timed_call(sim / f"dev-{n:03d}.ref.json")
    c.summary = {}
    return c


def _matched(call: CallResult, name: str):
    analyse_call(call, rules=DEFAULTS)
    cat = next(c for c in call.summary["categories"] if c["name"] == name)
    return cat["matched"], cat["evidence"]


def _shift_after(call: CallResult, i: int, seconds: float) -> CallResult:
    """Insert ``seconds`` of silence after utterance ``i`` (every later utterance and event moves)."""
    t = call.utterances[i].end
    for u in call.utterances[i + 1:]:
        u.start += seconds
        u.end += seconds
        for w in u.words:
            w.start += seconds
            w.end += seconds
    for e in call.events:
        if e.start >= t:
            e.start += seconds
            e.end += seconds
    call.audio["duration"] += seconds
    return call


def _with_hold(call: CallResult, seconds: float) -> CallResult:
    """The counsellor puts the caller on hold in the middle of the call for ``seconds``."""
    i = next(k for k, u in enumerate(call.utterances)
             if u.speaker == "counsellor" and u.phase == "solution" and k + 1 < len(call.utterances))
    call.utterances[i].acts = [*call.utterances[i].acts, "hold"]
    return _shift_after(call, i, seconds)


# (rule, call where it must fire, call where it must not), each built from the reference of a sim call
CASES = {
    "empathy_after_emotion": (lambda s: _call(s, 2), lambda s: _call(s, 3)),
    "emotion_without_empathy": (lambda s: _call(s, 3), lambda s: _call(s, 2)),
    "what_more_before_solution": (lambda s: _call(s, 1), lambda s: _call(s, 3)),
    "long_hold": (lambda s: _with_hold(_call(s, 1), 130.0), lambda s: _with_hold(_call(s, 1), 60.0)),
    "reopening_after_closing": (lambda s: _call(s, 3), lambda s: _call(s, 1)),
    "no_summary_before_goodbye": (lambda s: _call(s, 6), lambda s: _call(s, 1)),
    "greeting_in_first_15s": (lambda s: _call(s, 1), lambda s: _shift_after(_call(s, 1), -1, 20.0)),
    "caller_stress_at_end": (lambda s: _call(s, 3), lambda s: _call(s, 1)),
    "dead_air": (lambda s: _shift_after(_call(s, 1), 10, 12.0), lambda s: _call(s, 1)),
}


def test_every_default_rule_has_cases():
    assert sorted(CASES) == sorted(r.name for r in DEFAULTS.categories)


@pytest.mark.parametrize("name", sorted(CASES))
def test_default_rule_fires_and_does_not(sim, name):
    fire, quiet = CASES[name]
    ok, ev = _matched(fire(sim), name)
    assert ok is True, name
    ok2, ev2 = _matched(quiet(sim), name)
    assert ok2 is False and ev2 == [], name


def test_evidence_points_at_the_utterances(sim):
    call = _call(sim, 2)
    ok, ev = _matched(call, "empathy_after_emotion")
    u = call.utterances[ev[0]["utterance"]]
    assert u.speaker == "counsellor" and {"empathic_statement", "acknowledgement", "agreement"} & set(u.acts)
    assert ev[0]["start"] == round(u.start, 3) and u.text.startswith(ev[0]["text"].rstrip("…"))
    emo = next(x for x in call.utterances if x.speaker == "caller" and "emotion" in x.acts)
    assert 0 < u.start - emo.start <= 30
    ok, ev = _matched(_with_hold(_call(sim, 1), 130.0), "long_hold")
    assert ev[0]["utterance"] is None and ev[0]["text"].startswith("interaction.holds.longest_s = 13")


def test_text_only_calls_leave_rules_in_seconds_undecided(shared):
    call = text_call(shared / "tagger-dev" / "dev-003.json")
    call.summary = {}
    analyse_call(call, rules=DEFAULTS)
    got = {c["name"]: c["matched"] for c in call.summary["categories"]}
    assert got["empathy_after_emotion"] is None and got["emotion_without_empathy"] is None
    assert got["greeting_in_first_15s"] is None
    assert got["reopening_after_closing"] is True and got["what_more_before_solution"] is False
    assert "interaction" not in call.summary  # no times, no turn-taking measures


def _call_of(*utts) -> CallResult:
    return CallResult("x", [Utterance(*u[:4], acts=list(u[4]) if len(u) > 4 else []) for u in utts],
                      audio={"duration": 100.0})


def test_condition_language_keywords_counts_windows_negation():
    call = _call_of(("counsellor", 1.0, 3.0, "Hei, du snakker med Kari", ["greeting"]),
                    ("caller", 4.0, 9.0, "Jeg ringer om Meldekortet mitt", ["request"]),
                    ("counsellor", 10.0, 12.0, "Mm", ["backchannel"]),
                    ("counsellor", 50.0, 52.0, "mm", ["backchannel"]),
                    ("counsellor", 85.0, 88.0, "Ha en fin dag", ["greeting"]))
    rs = parse_rules("""
categories:
  - {name: kw, when: {keyword: meldekortet, speaker: caller}}
  - {name: kw_phrase, when: {keyword: ["fin dag", "god helg"]}}
  - {name: kw_partial_word_no, when: {keyword: melde}}
  - {name: two_bc, when: {act: backchannel, count: 2}}
  - {name: at_most_one_bc, when: {act: backchannel, count: 0, at_most: 1}}
  - {name: bc_first_20pct, when: {act: backchannel, window: {first: 20%}}}
  - {name: greet_last_20s, when: {act: greeting, window: {last: 20s}}}
  - {name: between, when: {act: backchannel, window: {from: 30s, to: 60%}}}
  - {name: no_info, when: {not: {act: information}}}
  - name: any_all
    when:
      any:
        - [{act: information}, {act: greeting}]
        - {all: [{speaker: caller}, {phase: closing}]}
  - {name: after_within, when: {act: backchannel, after: {act: request}, within: 6s}}
  - {name: after_within_no, when: {act: backchannel, after: {act: request}, within: 5.5s}}
  - {name: before_last, when: {act: backchannel, before: {act: greeting, occurrence: last}, count: 2}}
  - {name: measure_eq, when: {measure: interaction.turn_source, eq: utterances}}
""")
    analyse_call(call, rules=rs)
    got = {c["name"]: c["matched"] for c in call.summary["categories"]}
    assert got == {"kw": True, "kw_phrase": True, "kw_partial_word_no": False, "two_bc": True, "at_most_one_bc": False,
                   "bc_first_20pct": True, "greet_last_20s": True, "between": True, "no_info": True, "any_all": False,
                   "after_within": True, "after_within_no": False, "before_last": True, "measure_eq": True}


BAD = [
    ("categories:\n  - name: a\n    when: {act: hug}\n", 3, "'hug' is not an act"),
    ("categories:\n  - name: a\n    when:\n      - {act: greeting}\n      - {phase: middle}\n", 5, "not a phase"),
    ("categories:\n  - name: a\n    when: {measure: interaction.holds.longest_s}\n", 3, "needs a comparison"),
    ("categories:\n  - name: a\n    when: {act: greeting, window: {first: 2 min}}\n", 3, "is not a time"),
    ("categories:\n  - name: a\n    when: {act: greeting}\n  - name: a\n    when: {act: hold}\n", 4, "defined twice"),
    ("categories:\n  - name: a\n  when: {act: greeting}\n", 3, "not valid YAML"),
    ("categories:\n  - name: a b\n    when: {act: greeting}\n", 2, "lower case"),
    ("categories:\n  - name: a\n    when:\n      not:\n        act: greeting\n        windw: {first: 3s}\n",
     6, "windw"),
]


@pytest.mark.parametrize("text,line,msg", BAD)
def test_bad_rule_file_names_the_line(text, line, msg):
    with pytest.raises(RulesError) as e:
        parse_rules(text, "my-rules.yaml")
    assert str(e.value).startswith(f"my-rules.yaml:{line}:") and msg in str(e.value)


def test_cli_rejects_a_bad_rule_file_before_reading_inputs(cli, tmp_path, shared):
    bad = tmp_path / "rules.yaml"
    bad.write_text("categories:\n  - name: a\n    when: {act: hug}\n", encoding="utf-8")
    p = subprocess.run([*cli, "tag", str(shared / "tagger-dev" / "dev-001.json"), "--out", str(tmp_path / "o"),
                        "--rules", str(bad)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 or p.returncode == 1
    assert f"{bad}:3" in p.stderr.replace("\n", "") or f"{bad.name}:3" in p.stderr.replace("\n", "")
    assert not (tmp_path / "o" / "dev-001.json").exists()


def test_cli_tag_with_rules_writes_categories(cli, tmp_path, shared):
    rules = tmp_path / "r.yaml"
    rules.write_text("categories:\n  - {name: asks_what_more, when: {act: what_more}}\n", encoding="utf-8")
    p = subprocess.run([*cli, "tag", str(shared / "tagger-dev" / "dev-001.json"), "--out", str(tmp_path),
                        "--rules", str(rules)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    import json

    d = json.loads((tmp_path / "dev-001.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in d["summary"]["categories"]] == ["asks_what_more"]


def test_category_columns_and_sample_where(sim, tmp_path):
    from speechpipe.batch.sample import draw_sample
    from speechpipe.outputs.tables import call_row, write_table

    rows = []
    for n in (1, 2, 3, 6):
        c = _call(sim, n)
        analyse_call(c, rules=DEFAULTS)
        rows.append(call_row(c))
    assert rows[0]["category_what_more_before_solution"] is True and "interaction_per_turn" not in rows[0]
    assert rows[0]["interaction_response_latency_s_counsellor_median"] is not None
    write_table(rows, tmp_path / "calls.parquet")
    got = draw_sample(tmp_path, n=10, where="category_reopening_after_closing")
    want = sorted(r["call_id"] for r in rows if r["category_reopening_after_closing"])
    assert sorted(r["call_id"] for r in got) == want
    got = draw_sample(tmp_path, n=10, where="list_contains(categories_matched, 'no_summary_before_goodbye')")
    assert [r["call_id"] for r in got] == ["dev-006"]


def test_categories_do_not_change_other_summary_keys(sim):
    call = _call(sim, 1)
    call.summary = {"structure": "funnel", "reopenings": 0}
    before = copy.deepcopy(call.summary.to_dict())
    analyse_call(call)
    after = call.summary.to_dict()
    assert {k: after[k] for k in before} == before and list(after)[:2] == ["structure", "reopenings"]
    assert categorise(call, parse_rules("categories: []")) == []
