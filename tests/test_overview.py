"""overview.html over a 16-call batch built from the shared sim-call references: content, links, filters,
no person filter, build time, and a real headless Chromium render."""

from __future__ import annotations

import re
import time

import pytest
from test_exports_data import timed_call
from test_report import _not_blank, browser  # noqa: F401  (the module's Chromium fixture)

from speechpipe.analytics.call import analyse_call
from speechpipe.outputs.overview import load_rows, write_overview
from speechpipe.outputs.tables import call_row, write_table


@pytest.fixture(scope="module")
def batch_dir(shared, tmp_path_factory):
    """A batch-like directory: 16 call JSONs, reports for half of them, calls.parquet with metadata."""
    from speechpipe.outputs.report import write_report
    from speechpipe.outputs.writers import write_call_json

    out = tmp_path_factory.mktemp("batch")
    rows = []
    for n, ref in enumerate(sorted((shared / "audio/sim-calls").glob("dev-*.ref.json"))):
        call = timed_call(ref)
        call.summary = {k: call.summary[k] for k in ("structure", "reopenings", "what_more_position")}
        analyse_call(call)
        write_call_json(call, out)
        if n % 2 == 0:
            write_report(call, out / f"{call.call_id}.html")
        row = call_row(call)
        row.update(meta_date=f"2026-{9 + n % 3:02d}-{1 + n:02d}", meta_region=["Oslo", "Bergen"][n % 2],
                   meta_counsellor_id=f"K{n % 4}")
        rows.append(row)
    write_table(rows, out / "calls.parquet")
    return out


def test_overview_builds_fast_with_aggregates_links_and_filters(batch_dir):
    t = time.perf_counter()
    path = write_overview(batch_dir)
    took = time.perf_counter() - t
    assert took < 5.0, f"overview of 16 calls took {took:.1f} s"
    html = path.read_text(encoding="utf-8")
    rows = load_rows(batch_dir)
    assert len(rows) == 16
    assert "never ranks or scores individual counsellors" in html
    # no remote resources: the Vega bundle is inlined
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    # calls per category: every matched call listed, linked only when its report exists
    for r in rows:
        for cat in r["categories"]:
            section = html.split(f'id="cat-{cat}"')[1].split("</tr>")[0]
            assert r["call_id"] in section
            linked = f'href="{r["call_id"]}.html"' in section
            assert linked == (batch_dir / f"{r['call_id']}.html").exists()
    # filters on region and date (month); never on the counsellor column
    assert '"f_region"' in html and '"f_date"' in html and "2026-10" in html
    assert "f_counsellor_id" not in html and "counsellor_id" in html.split("</header>")[0]
    n_matched = sum("dead_air" in r["categories"] for r in rows)
    assert f"{n_matched} of 16 calls" in html.split('id="cat-dead_air"')[1].split("</tr>")[0]


def test_overview_from_call_jsons_without_a_table(batch_dir, tmp_path):
    import shutil

    for p in batch_dir.glob("dev-00*.json"):
        shutil.copy(p, tmp_path / p.name)
    rows = load_rows(tmp_path)
    assert len(rows) == 9 and all(r["latency_counsellor_s"] is not None for r in rows)
    html = write_overview(tmp_path).read_text(encoding="utf-8")
    assert "9 calls" in html and "f_region" not in html


@pytest.mark.slow
def test_overview_in_chromium(browser, batch_dir):  # noqa: F811
    path = write_overview(batch_dir)
    log = browser.load(path.as_uri(), wait_js="document.querySelectorAll('.chart svg').length >= 1 && "
                                              "document.querySelectorAll('.vega-bind select').length === 2 && "
                                              "document.querySelectorAll('.chart svg .mark-rect path').length >= 10")
    assert log["ready"], "charts were not drawn"
    assert log["console_errors"] == [] and log["exceptions"] == []
    assert all(u.startswith(("file:", "data:", "blob:", "about:")) for u in log["requests"]), log["requests"]
    assert _not_blank(log["screenshot"]) > 10
    (batch_dir / "overview.png").write_bytes(log["screenshot"])


def test_cli_overview(cli, batch_dir, tmp_path):
    import subprocess

    out = tmp_path / "o.html"
    p = subprocess.run([*cli, "overview", str(batch_dir), "--out", str(out)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "16 call(s)" in p.stderr and "never ranks" in out.read_text(encoding="utf-8")
    p = subprocess.run([*cli, "overview", str(tmp_path / "empty")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "not a directory" in p.stderr and "Traceback" not in p.stderr
