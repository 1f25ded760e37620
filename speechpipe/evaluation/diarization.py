"""Scoring what users get: the exported RTTM of an output folder against reference RTTMs."""

from __future__ import annotations

from pathlib import Path


def stem(path: str | Path) -> str:
    """The recording name a reference is matched on: ``dev-001.mono.rttm`` → ``dev-001``."""
    return Path(path).name.split(".")[0]


def score_output_dir(out_dir: str | Path, refs: list[Path], collar: float = 0.25,
                     skip_overlap: bool = False) -> tuple[list[dict], dict]:
    """DER of every ``OUT_DIR/*.rttm`` that has a reference (matched by :func:`stem`).

    Returns ``(rows, pooled)``; each row has ``file``, ``der``, ``miss``, ``fa``,
    ``confusion`` (fractions of scored speech), ``covered`` (1 − miss), ``speakers``
    (reference/hypothesis counts) and ``total`` (scored seconds).
    """
    from pyannote.database.util import load_rttm
    from pyannote.metrics.diarization import DiarizationErrorRate

    from speechpipe.evaluation import scored_region

    ref_by = {}
    for r in refs:
        for uri, ann in load_rttm(str(r)).items():
            ref_by[stem(uri)] = ann
    total = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)
    rows = []
    for hyp_path in sorted(Path(out_dir).glob("*.rttm")):
        reference = ref_by.get(stem(hyp_path))
        if reference is None:
            continue
        hyps = load_rttm(str(hyp_path))
        from pyannote.core import Annotation

        hyp = next(iter(hyps.values())) if hyps else Annotation()
        uem = scored_region(reference, hyp)
        r = DiarizationErrorRate(collar=collar, skip_overlap=skip_overlap)(reference, hyp, uem=uem, detailed=True)
        total(reference, hyp, uem=uem)
        rows.append(_row(hyp_path.name, r, f"{len(reference.labels())}/{len(hyp.labels())}"))
    pooled = _row("all", total.accumulated_, "") if rows else {}
    return rows, pooled


def _row(name: str, r: dict, speakers: str) -> dict:
    tot = r["total"] or 1.0
    miss = r["missed detection"] / tot
    return {"file": name, "der": (r["missed detection"] + r["false alarm"] + r["confusion"]) / tot, "miss": miss,
            "fa": r["false alarm"] / tot, "confusion": r["confusion"] / tot, "covered": 1.0 - miss,
            "speakers": speakers, "total": r["total"]}
