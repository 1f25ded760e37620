"""Write one call's outputs: the call JSON plus the chosen research exports.

``DIR/<call_id>.json`` first, then ``.rttm``, ``.vtt``, ``.srt``,
``.TextGrid``, ``.eaf``, the Parquet tables ``.utterances.parquet`` and
``.call.parquet``, and the report ``.html`` — owner-only, and atomic as a
set: every format is written into a private staging folder inside ``DIR`` and
moved in only when all succeeded, so a failed call leaves none of its files.
Files are named by :func:`speechpipe.privacy.safe_stem` of the call id (the id
itself is kept in the JSON). Timed formats are skipped for text-only results.
"""

from __future__ import annotations

from pathlib import Path

from speechpipe.outputs.writers import Staging, write_call_json
from speechpipe.records import CallResult

ALL_FORMATS = ("json", "rttm", "vtt", "srt", "textgrid", "eaf", "parquet", "html")
TIMED_FORMATS = ("rttm", "vtt", "srt", "textgrid", "eaf")


def parse_formats(spec: str) -> tuple[str, ...]:
    """``"all"`` or a comma list → validated tuple; JSON is always written."""
    if spec.strip() == "all":
        return ALL_FORMATS
    fmts = tuple(f.strip().lower() for f in spec.split(",") if f.strip())
    bad = [f for f in fmts if f not in ALL_FORMATS]
    if bad:
        import typer

        raise typer.BadParameter(f"unknown format(s) {', '.join(bad)}; choose from {', '.join(ALL_FORMATS)}")
    return tuple(dict.fromkeys(("json",) + fmts))


def write_outputs(
    result: CallResult,
    out_dir: str | Path,
    formats: tuple[str, ...] = ALL_FORMATS,
    stem: str | None = None,
    staging: Staging | None = None,
    report_audio: bool = False,
) -> list[Path]:
    """Write ``DIR/<stem>.json`` and each export as one set; return the final paths (JSON first).

    ``stem`` defaults to the call id made a safe file name. With ``staging``
    (an open :class:`~speechpipe.outputs.writers.Staging`) the files stay staged
    and the caller commits them together with its own files.

    ``report_audio``: the HTML report gets a player for the original recording (by relative path).

    Examples
    --------
    >>> paths = write_outputs(result, "out", ("json", "srt"))  # doctest: +SKIP
    >>> [p.name for p in paths]                                 # doctest: +SKIP
    ['dev-001.json', 'dev-001.srt']
    """
    from speechpipe.privacy import safe_stem

    stem = stem or safe_stem(result.call_id)
    if staging is None:
        with Staging(out_dir) as st:
            staged = _write_all(result, st.dir, formats, stem, report_audio, Path(out_dir))
        return [st.target(p) for p in staged]
    return [staging.target(p) for p in _write_all(result, staging.dir, formats, stem, report_audio, Path(out_dir))]


def _write_all(result: CallResult, out: Path, formats: tuple[str, ...], stem: str, report_audio: bool = False,
               final_dir: Path | None = None) -> list[Path]:
    """Write every format into ``out`` (a staging folder); links inside them are relative to ``final_dir``."""
    written = [write_call_json(result, out, stem)]
    has_times = any(u.start is not None and u.end is not None for u in result.utterances)
    for fmt in formats:
        if fmt == "json":
            continue
        if fmt in TIMED_FORMATS:
            if not has_times:
                continue  # a text-only result has no timeline to export
            from speechpipe.outputs.exports import write_export

            written.append(write_export(result, fmt, out, stem))
        elif fmt == "parquet":
            from speechpipe.outputs.tables import call_row, utterance_rows, write_table

            written.append(write_table(utterance_rows(result), out / f"{stem}.utterances.parquet"))
            written.append(write_table([call_row(result)], out / f"{stem}.call.parquet"))
        elif fmt == "html":
            from speechpipe.outputs.report import write_report

            written.append(write_report(result, out / f"{stem}.html", audio=report_audio, relative_to=final_dir))
    return written
