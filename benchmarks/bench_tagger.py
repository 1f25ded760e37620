"""Tagger throughput: vectorised batch paths vs the per-utterance reference, same run.

Three vectorised figures: ``columnar`` (an Arrow utterance table in, tagged
utterance and call tables out: :func:`speechpipe.tagging.table.tag_table`, what
re-tagging an archive runs), ``vectorised`` (``Tagger.tag_calls`` on ``Utterance``
objects, what ``speechpipe run`` uses) and ``core`` (the array core alone).

Workload: the 16 dev calls resampled (whole calls drawn with replacement, half of
them as an ASR-like copy: lower case, no punctuation, word errors) to >= 1M
utterances. The reference is timed on a small sample and reported per utterance;
the ratio is taken within this run because the machine is noisy.

Timings are process CPU time (``time.process_time``: one thread, so CPU seconds =
seconds on one core), because the shared development machine is heavily
oversubscribed and wall-clock time there mostly measures other people's jobs; the
wall-clock rates are reported too.

Run: ``.venv/bin/python -m benchmarks.bench_tagger [--quick] [--torch]``
(single core: set ``OMP_NUM_THREADS=1`` etc. — the module does so itself when run as a script).
"""

from __future__ import annotations

import copy
import os
import random
import resource
import sys
import time
from pathlib import Path


def _reference():
    """The per-utterance reference the speed-ups are measured against: it lives with the tests (tests/oracles.py)."""
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from oracles import tag_call_reference

    return tag_call_reference

SHARED = Path(os.environ.get("SPEECHPIPE_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def workload(n_utt: int, seed: int = 0):
    from speechpipe.records import Utterance
    from speechpipe.tagging.train import asr_copy, load_gold_dir

    # the 16 calls of the first writer, as since round 1, so the figures stay comparable across rounds
    gold = [c for c in load_gold_dir(SHARED / "tagger-dev") if c["call_id"] <= "dev-016"]
    pool = [c["utterances"] for c in gold] + [asr_copy(c, 7 + i)["utterances"] for i, c in enumerate(gold)]
    rng = random.Random(seed)
    calls, total = [], 0
    while total < n_utt:
        src = rng.choice(pool)
        calls.append([Utterance(u.speaker, u.start, u.end, u.text) for u in src])
        total += len(src)
    return calls, total


def workload_distinct(n_utt: int, seed: int = 0):
    """Like real ASR archives, where nearly every utterance's text is new: each drawn call is a
    fresh ASR-like copy (its own word drops, swaps and spellings), so ~40 % of texts are distinct."""
    from speechpipe.tagging.train import asr_copy, load_gold_dir

    gold = [c for c in load_gold_dir(SHARED / "tagger-dev") if c["call_id"] <= "dev-016"]
    rng = random.Random(seed)
    calls, total = [], 0
    while total < n_utt:
        c = asr_copy(rng.choice(gold), 10_000 + len(calls))["utterances"]
        calls.append(c)
        total += len(c)
    return calls, total


def utterance_table(calls):
    """The workload as an Arrow utterance table (the columns ``utterances.parquet`` exports carry)."""
    import pyarrow as pa

    flat = [u for c in calls for u in c]
    call_id = [f"call{k:06d}" for k, c in enumerate(calls) for _ in c]
    idx = [i for c in calls for i in range(len(c))]
    return pa.table(
        {"call_id": call_id, "idx": idx, "speaker": [u.speaker for u in flat], "text": [u.text for u in flat]}
    )


def full_mode(quick: bool) -> dict:
    """The default model (tagger-v3, sentence embeddings) on the columnar path and per utterance, each with an
    empty embedding cache, on a smaller resample of the same workload: embedding each distinct text dominates."""
    from speechpipe.tagging.embed import Embedder
    from speechpipe.tagging.table import tag_table
    from speechpipe.tagging.tagger import TaggerError, load_tagger

    try:
        full = load_tagger(fallback=False)
    except TaggerError as e:
        return {"full_mode": f"not measured: {e}"}
    calls, n = workload(3_000 if quick else 50_000, seed=1)  # quick: ~5 s of embedding, inside the bench budget
    table = utterance_table(calls)
    full.fs.embedder = Embedder()
    t = time.process_time()
    utts, _ = tag_table(full, table)
    col_s = time.process_time() - t
    distinct = len(full.fs.embedder._mem)
    sample = copy.deepcopy(calls[: (2 if quick else 8)])
    n_ref = sum(len(c) for c in sample)
    full.fs.embedder = Embedder()
    t = time.process_time()
    for c in sample:
        _reference()(full, c)
    ref_s = time.process_time() - t
    flat = [u for c in sample for u in c]
    same = utts.column("acts").to_pylist()[:len(flat)] == [u.acts for u in flat]
    return {
        "full_utterances": n,
        "full_distinct_embedded_texts": distinct,
        "full_columnar_utt_per_s": round(n / col_s),
        "full_reference_utt_per_s": round(n_ref / ref_s),
        "full_columnar_speedup_vs_reference": round((n / col_s) / (n_ref / ref_s), 1),
        "full_cpu_ms_per_distinct_text": round(1000 * col_s / max(1, distinct), 2),
        "full_same_labels_on_sample": same,
    }


def run(quick: bool = False, backend: str = "numpy", device: str | None = None, full: bool = True,
        smoke: bool = False) -> dict:
    """Time both paths; returns utterances/s, ratio, peak memory and workload size. The main figures are the
    fast model's (tagger-v3-fast: what archive re-tags run); ``full`` adds the default model's (``full_*``)."""
    import numpy as np

    from speechpipe.tagging.features import encode_calls
    from speechpipe.tagging.table import tag_table
    from speechpipe.tagging.tagger import load_tagger

    n_target = 100_000 if quick else 1_000_000
    tagger = load_tagger(fast=True)
    calls, n = workload(n_target)
    rss0 = _rss_mb()

    # reference: per utterance, on a sample of calls
    sample = copy.deepcopy(calls[: (20 if quick else 60)])
    n_ref = sum(len(c) for c in sample)
    t, w = time.process_time(), time.perf_counter()
    for c in sample:
        _reference()(tagger, c)
    ref_s, ref_w = time.process_time() - t, time.perf_counter() - w
    ref_ups = n_ref / ref_s

    # vectorised, end to end from Utterance objects (encode, tag, write back, summaries)
    tagger.tag_calls(copy.deepcopy(calls[:50]))  # warm-up
    t, w = time.process_time(), time.perf_counter()
    tagger.tag_calls(calls)
    vec_s, vec_w = time.process_time() - t, time.perf_counter() - w
    rss1 = _rss_mb()
    # array core only (features → scores → Viterbi), what a columnar batch job would call
    t = time.process_time()
    b = encode_calls(calls)
    enc_s = time.process_time() - t
    t, w = time.process_time(), time.perf_counter()
    out = tagger.tag_batch(b)
    core_s, core_w = time.process_time() - t, time.perf_counter() - w
    # the other stages of tag_calls, timed alone (where the end-to-end time goes)
    import gc

    from speechpipe.tagging.tagger import summarise_batch

    gc.disable()
    t = time.process_time()
    tagger._write_back(calls, b, out)
    wb_s = time.process_time() - t
    t = time.process_time()
    summarise_batch(b, out["acts"], out["phase"], out["n_tokens"], out.get("conf"), out.get("p_funnel"))
    sum_s = time.process_time() - t
    gc.enable()
    same = all(u.acts == v.acts and u.phase == v.phase for c, r in zip(calls, sample) for u, v in zip(c, r))

    # columnar: an utterance table in, tagged utterance + call tables out (Arrow), as
    # `speechpipe tag utterances.parquet` re-tags an archive; building the table is not timed
    table = utterance_table(calls)
    tag_table(tagger, table.slice(0, 5000))  # warm-up
    t, w = time.process_time(), time.perf_counter()
    utts, call_tab = tag_table(tagger, table)
    col_s, col_w = time.process_time() - t, time.perf_counter() - w
    flat = [u for c in calls for u in c]
    col_same = (utts.column("acts").to_pylist() == [u.acts for u in flat]
                and utts.column("phase").to_pylist() == [u.phase for u in flat] and call_tab.num_rows == len(calls))
    del utts, call_tab, table, flat
    res = {
        "model": tagger.name,
        "utterances": n,
        "calls": len(calls),
        "unique_texts": len(b.texts),
        "reference_utt_per_s": round(ref_ups),
        "columnar_utt_per_s": round(n / col_s),
        "columnar_speedup_vs_reference": round((n / col_s) / ref_ups, 1),
        "wall_columnar_utt_per_s": round(n / col_w),
        "columnar_same_labels": col_same,
        "vectorised_utt_per_s": round(n / vec_s),
        # → tagger_utterances_per_s / tagger_speedup_vs_reference in `speechpipe bench`: the columnar
        # batch path (archive re-tagging); the object path's figures are the vectorised_* ones
        "utterances_per_s": round(n / col_s),
        "core_utt_per_s": round(n / core_s),
        "speedup_vs_reference": round((n / col_s) / ref_ups, 1),
        "vectorised_speedup_vs_reference": round((n / vec_s) / ref_ups, 1),
        "wall_reference_utt_per_s": round(n_ref / ref_w),
        "wall_vectorised_utt_per_s": round(n / vec_w),
        "wall_core_utt_per_s": round(n / core_w),
        "core_speedup_vs_reference": round((n / core_s) / ref_ups, 1),
        "stage_cpu_s": {"encode": round(enc_s, 3), "core": round(core_s, 3), "write_back": round(wb_s, 3),
                        "summaries": round(sum_s, 3)},
        "peak_rss_mb": round(max(rss1, _rss_mb())),
        "workload_rss_mb": round(rss0),
        "same_labels_on_sample": same,
    }
    if not quick:
        # the same columnar path on text as varied as real ASR output (per-distinct-text work dominates)
        dcalls, dn = workload_distinct(200_000)
        dtable = utterance_table(dcalls)
        t = time.process_time()
        tag_table(tagger, dtable)
        res["varied_text_utterances"] = dn
        res["varied_text_distinct_texts"] = len(set(dtable.column("text").to_pylist()))
        res["varied_text_columnar_utt_per_s"] = round(dn / (time.process_time() - t))
        res["peak_rss_mb"] = round(max(res["peak_rss_mb"], _rss_mb()))
        del dcalls, dtable
    if full and not smoke:
        res.update(full_mode(quick))
    if backend == "torch":
        import torch

        tt = load_tagger(backend="torch", device=device, fast=True)
        tt.tag_batch(encode_calls(calls[:50]))
        dev = tt.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        out = tt.tag_batch(b)
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
            res["torch_gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        ts = time.perf_counter() - t
        ref_out = tagger.tag_batch(b)
        res.update(
            torch_device=dev,
            torch_core_utt_per_s=round(n / ts),
            torch_same_as_numpy=bool(
                np.array_equal(out["acts"], ref_out["acts"]) and np.array_equal(out["phase"], ref_out["phase"])
            ),
        )
    return res


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    res = run(quick="--quick" in argv, backend="torch" if "--torch" in argv else "numpy")
    w = max(len(k) for k in res)
    print(f"{'metric':<{w}}  value")
    for k, v in res.items():
        print(f"{k:<{w}}  {v}")
    return res


if __name__ == "__main__":
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(v, "1")
    main()
