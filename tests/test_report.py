"""HTML report: rendered from real gold calls, loaded in a real headless Chromium.

The browser is driven over the DevTools protocol (aiohttp websocket): console
errors, uncaught exceptions and every network request are recorded, and a
screenshot is checked for content.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from test_exports_data import text_call, timed_call

from speechpipe.outputs.report import index_entry, render_report, reopening_indices, write_index, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--window-size=1280,1600"]


class Browser:
    """One headless Chromium for the module, driven over the DevTools protocol."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="speechpipe-chromium-")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}",
                                      "--remote-debugging-port=0", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.time() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if time.time() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws_url = f"ws://127.0.0.1:{port}{path}"

    def load(self, url: str, wait_js: str = "true", timeout: float = 30) -> dict:
        return asyncio.run(self._load(url, wait_js, timeout))

    async def _load(self, url, wait_js, timeout):
        import aiohttp

        log = {"console_errors": [], "exceptions": [], "requests": [], "screenshot": None, "ready": False}
        async with aiohttp.ClientSession() as http, http.ws_connect(self.ws_url, max_msg_size=0) as ws:
            ids = iter(range(1, 10**6))
            pending: dict[int, asyncio.Future] = {}
            session = None

            async def reader():
                async for msg in ws:
                    m = json.loads(msg.data)
                    if "id" in m and m["id"] in pending:
                        pending.pop(m["id"]).set_result(m)
                        continue
                    meth, p = m.get("method"), m.get("params", {})
                    if meth == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                        log["console_errors"].append(
                            " ".join(str(a.get("value", a.get("description"))) for a in p["args"])
                        )
                    elif meth == "Runtime.exceptionThrown":
                        log["exceptions"].append(
                            p["exceptionDetails"].get("exception", {}).get("description")
                            or p["exceptionDetails"].get("text")
                        )
                    elif meth == "Log.entryAdded" and p["entry"]["level"] == "error":
                        log["console_errors"].append(p["entry"]["text"])
                    elif meth == "Network.requestWillBeSent":
                        log["requests"].append(p["request"]["url"])

            async def call(method, params=None, sid=None):
                i = next(ids)
                fut = asyncio.get_running_loop().create_future()
                pending[i] = fut
                msg = {"id": i, "method": method, "params": params or {}}
                if sid:
                    msg["sessionId"] = sid
                await ws.send_str(json.dumps(msg))
                res = await asyncio.wait_for(fut, timeout)
                if "error" in res:
                    raise RuntimeError(f"{method}: {res['error']}")
                return res.get("result", {})

            task = asyncio.create_task(reader())
            try:
                target = (await call("Target.createTarget", {"url": "about:blank"}))["targetId"]
                session = (await call("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
                for dom in ("Runtime", "Log", "Network", "Page"):
                    await call(f"{dom}.enable", sid=session)
                await call(
                    "Emulation.setDeviceMetricsOverride",
                    {"width": 1280, "height": 1600, "deviceScaleFactor": 1, "mobile": False},
                    sid=session,
                )
                await call("Page.navigate", {"url": url}, sid=session)
                deadline = time.time() + timeout
                while time.time() < deadline:
                    r = await call(
                        "Runtime.evaluate",
                        {"expression": f"document.readyState === 'complete' && ({wait_js})", "returnByValue": True},
                        sid=session,
                    )
                    if r.get("result", {}).get("value") is True:
                        log["ready"] = True
                        break
                    await asyncio.sleep(0.2)
                await asyncio.sleep(0.3)  # let late console messages arrive
                shot = await call("Page.captureScreenshot", {"format": "png"}, sid=session)
                log["screenshot"] = base64.b64decode(shot["data"])
                log["svg_count"] = (
                    await call(
                        "Runtime.evaluate",
                        {"expression": "document.querySelectorAll('.chart svg').length", "returnByValue": True},
                        sid=session,
                    )
                )["result"]["value"]
                await call("Target.closeTarget", {"targetId": target})
            finally:
                task.cancel()
        return log

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        pytest.skip("chromium not installed (make test installs it with apt-get when run as root)")
    pytest.importorskip("aiohttp")
    b = Browser()
    yield b
    b.close()


@pytest.fixture(scope="module")
def reports(shared, tmp_path_factory):
    """Reports for an hourglass call with times (dev-004) and a text-only call, plus an index."""
    out = tmp_path_factory.mktemp("reports")
    refs = {
        json.loads(p.read_text())["structure"]: p for p in sorted((shared / "audio/sim-calls").glob("dev-*.ref.json"))
    }
    timed = timed_call(refs.get("hourglass") or sorted(refs.values())[0])
    text = text_call(shared / "tagger-dev/dev-003.json")
    paths = {"timed": write_report(timed, out / f"{timed.call_id}.html"),
             "text": write_report(text, out / "text" / f"{text.call_id}.html")}
    entries = [index_entry(timed, f"{timed.call_id}.html"), index_entry(text, f"text/{text.call_id}.html")]
    paths["index"] = write_index(entries, out / "index.html")
    return {"out": out, "paths": paths, "timed": timed, "text": text}


def _not_blank(png: bytes) -> float:
    from PIL import Image, ImageStat

    img = Image.open(io.BytesIO(png)).convert("L")
    return ImageStat.Stat(img).stddev[0]


def test_report_content_and_no_remote_resources(reports):
    html = reports["paths"]["timed"].read_text(encoding="utf-8")
    call = reports["timed"]
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"""@import|url\(\s*["']?https?:""", html, re.I)
    for u in call.utterances[:5]:
        assert u.speaker in html
    # every act of the call appears, with its evidence as hover text
    acts = {a for u in call.utterances for a in u.acts}
    for a in acts:
        assert f'title="{a}' in html
    assert "hourglass" in html if call.summary["structure"] == "hourglass" else "funnel" in html
    for word in ("score", "rating", "rank "):
        assert word not in html.split("<script>")[0].lower()


def test_reopenings_found_match_gold(shared):
    for ref in sorted((shared / "audio/sim-calls").glob("dev-*.ref.json")):
        call = timed_call(ref)
        assert len(reopening_indices(call.utterances)) == call.summary["reopenings"], ref.name


@pytest.mark.slow
def test_report_in_chromium(browser, reports):
    log = browser.load(
        reports["paths"]["timed"].as_uri(), wait_js="document.querySelectorAll('.chart svg').length >= 2"
    )
    assert log["ready"], "charts were not drawn"
    assert log["console_errors"] == [] and log["exceptions"] == []
    assert all(u.startswith(("file:", "data:", "blob:", "about:")) for u in log["requests"]), log["requests"]
    assert log["svg_count"] >= 2
    assert _not_blank(log["screenshot"]) > 10
    (reports["out"] / "timed.png").write_bytes(log["screenshot"])


@pytest.mark.slow
def test_text_only_report_and_index_in_chromium(browser, reports):
    log = browser.load(reports["paths"]["text"].as_uri(), wait_js="document.querySelectorAll('.chart svg').length >= 1")
    assert log["ready"] and log["console_errors"] == [] and log["exceptions"] == []
    assert _not_blank(log["screenshot"]) > 10
    log = browser.load(reports["paths"]["index"].as_uri(), wait_js="document.links.length === 2")
    assert log["ready"] and not log["console_errors"] and not log["exceptions"]
    assert _not_blank(log["screenshot"]) > 5


def test_index_links_resolve(reports):
    idx = reports["paths"]["index"]
    links = re.findall(r'href="([^"]+)"', idx.read_text(encoding="utf-8"))
    assert len(links) == 2
    for link in links:
        assert (idx.parent / link).is_file()
    assert "text only" in idx.read_text(encoding="utf-8")


def test_render_report_escapes_text():
    from speechpipe.records import CallResult, Utterance

    r = CallResult("x", [Utterance("caller", 0.0, 1.0, "<script>alert(1)</script> & hei")])
    html = render_report(r)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


@pytest.fixture(scope="module")
def audio_report(shared, tmp_path_factory):
    """A stereo sim call's report with the audio player (the recording referenced, not copied), stress cues,
    breaths, categories and low-confidence acts."""
    from dataclasses import fields

    from speechpipe.analytics.call import analyse_call
    from speechpipe.records import Utterance

    class ConfUtterance(Utterance):
        """Until the tagger writes ``act_confidence`` on every utterance (tagger issue)."""

    out = tmp_path_factory.mktemp("audio-report")
    call = timed_call(shared / "audio/sim-calls/dev-002.ref.json")
    call.audio["path"] = str(shared / "audio/sim-calls/dev-002.stereo.flac")
    call.utterances = [ConfUtterance(**{f.name: getattr(u, f.name) for f in fields(u)}) for u in call.utterances]
    for i, u in enumerate(call.utterances):
        u.prosody.update(f0_z=1.6 if i % 7 == 3 else 0.1, breaths=1 if i % 5 == 0 else 0)
        u.act_confidence = {a: (0.35 if i % 4 == 1 else 0.9) for a in u.acts}
    analyse_call(call)
    path = write_report(call, out / "reports" / f"{call.call_id}.html", audio=True)
    return call, path


def test_report_audio_player_sentences_cues_and_uncertain_acts(audio_report):
    call, path = audio_report
    html = path.read_text(encoding="utf-8")
    src = re.search(r'<audio id="call-audio"[^>]* src="([^"]+)"', html).group(1)
    assert not src.startswith(("/", "file:", "http")) and (path.parent / src).resolve().is_file()
    assert list(path.parent.iterdir()) == [path]  # nothing copied next to the report
    assert html.count("data-start=") == len(call.utterances)
    # measures are sentences, not raw dicts
    measures = html.split("<h2>Call measures</h2>")[1].split("</section>")[0]
    assert "{" not in measures and "per_min_talk" not in measures and "took the floor after a median" in measures
    assert "◆ raised pitch" in html and "1 breath<" in html
    low = [(i, a) for i, u in enumerate(call.utterances) for a in u.acts if i % 4 == 1]
    assert low and html.count('class="act low"') == len(low)
    matched = [c["name"] for c in call.summary["categories"] if c["matched"]]
    assert matched and all(f"<b>{m}</b>" in html for m in matched)
    # without --report-audio, or without a path (pseudonymised), there is no player
    assert "<audio" not in render_report(call)
    call.audio["path"] = None
    assert "<audio" not in write_report(call, path.parent / "x.html", audio=True).read_text(encoding="utf-8")


@pytest.mark.slow
def test_report_audio_seek_in_chromium(browser, audio_report):
    call, path = audio_report
    k = 10
    start = call.utterances[k].start
    seek = (f"(function(){{var a=document.getElementById('call-audio'); if (a.readyState < 1) return false;"
            f"document.getElementById('u{k + 1}').click();"
            f"return Math.abs(a.currentTime - {start}) < 0.05 && a.duration > 100"
            f" && document.querySelectorAll('.chart svg').length >= 1;}})()")
    log = browser.load(path.as_uri(), wait_js=seek)
    assert log["ready"], "the recording did not load, or a click on a line did not seek to it"
    assert log["exceptions"] == [] and log["console_errors"] == []
    assert all(u.startswith(("file:", "data:", "blob:", "about:")) for u in log["requests"]), log["requests"]
    assert _not_blank(log["screenshot"]) > 10
    (path.parent.parent / "report-audio.png").write_bytes(log["screenshot"])


def test_report_audio_link_resolves_from_the_output_folder(audio_report, shared, tmp_path):
    """write_outputs stages every file before moving it in: the player's link must still resolve where it lands."""
    import copy
    from urllib.parse import unquote

    from speechpipe.outputs import write_outputs

    call = copy.deepcopy(audio_report[0])
    rec = tmp_path / "recordings" / "dev-002.flac"  # near the outputs, so a wrong relative path cannot land on it
    rec.parent.mkdir()
    shutil.copy(shared / "audio/sim-calls/dev-002.stereo.flac", rec)
    call.audio["path"] = str(rec)
    out = tmp_path / "out" / "deeper"
    html = next(p for p in write_outputs(call, out, ("json", "html"), report_audio=True) if p.suffix == ".html")
    src = re.search(r'<audio id="call-audio"[^>]* src="([^"]+)"', html.read_text(encoding="utf-8")).group(1)
    assert (html.parent / unquote(src)).resolve() == Path(call.audio["path"]).resolve()
