"""The dashboard end to end in headless Chromium (Debian's ``chromium``, driven by Playwright).

A real uvicorn server (``web_server``), a work chain run in this interpreter, and the page as a user
sees it: the chain appears in the table and changes state live, is opened, paused and played from
its page, another process is killed, and the provenance graph is drawn.  Screenshots (1280x800) are
kept in the test's tmp folder; their path is printed.
"""

from __future__ import annotations

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import plait
from plait import WorkChain
from plait.orm import Float, Int, load_node

CHROMIUM = os.environ.get("PLAIT_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 15_000


def _playwright():
    """Playwright's sync API, or a skip (a failure when PLAIT_CI=1) when it or chromium is missing."""
    missing = []
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        missing.append("the Python package playwright (pip install playwright)")
        expect = sync_playwright = None
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        missing.append(f"chromium ({CHROMIUM}; apt-get install chromium)")
    if missing:
        message = "the dashboard test needs " + " and ".join(missing)
        if os.environ.get("PLAIT_CI") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright, expect


class NappingChain(WorkChain):
    """Reports, sleeps ``seconds`` (waiting, durably), then returns 1."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input("seconds", valid_type=Float)
        spec.output("result", valid_type=Int)
        spec.outline(cls.start, cls.nap, cls.finish)

    def start(self):
        self.report(f"napping for {self.inputs.seconds.value} s")

    async def nap(self):
        await self.sleep(self.inputs.seconds.value)

    def finish(self):
        self.report("awake")
        self.out("result", Int(1).store())


@pytest.mark.timeout(120)
def test_the_dashboard_follows_controls_and_draws_a_chain(web_server, tmp_path):
    sync_playwright, expect = _playwright()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\ndashboard screenshots: {shots}")

    def shot(page, name: str) -> Path:
        path = shots / f"{name}.png"
        page.screenshot(path=str(path))
        return path

    results: dict = {}

    def run_chain() -> None:
        try:
            results["run"] = plait.run_get_node(NappingChain, seconds=Float(3.0))
        except BaseException as exc:  # reported by the main thread
            results["error"] = exc

    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium"),
            args=["--no-sandbox"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{web_server.url}/#token={web_server.token}")
            assert "token" not in page.url  # the token left the address bar
            page.wait_for_selector("#live.on")
            page.wait_for_selector("#process-rows >> text=no process matches")

            # a chain run in this interpreter appears and changes state live
            thread = threading.Thread(target=run_chain, daemon=True)
            thread.start()
            row = page.locator("#process-rows tr.row").first
            row.wait_for()
            page.wait_for_selector('#process-rows tr.row[data-state="waiting"]')
            assert "NappingChain" in row.inner_text()
            # stays created (no daemon runs); submitted from a thread, as Playwright's loop runs in this one
            with ThreadPoolExecutor(1) as pool:
                other = pool.submit(plait.submit, NappingChain, seconds=Float(60.0)).result(timeout=30)
            page.wait_for_selector(f'#process-rows tr.row[data-pk="{other.pk}"]')
            shot(page, "1-table")
            pk = int(page.locator('#process-rows tr.row[data-state="waiting"]').get_attribute("data-pk"))

            # open it, pause and play it (each confirmed in the dialog)
            page.locator(f'#process-rows tr.row[data-pk="{pk}"] td').nth(2).click()
            page.wait_for_selector("#process-state >> text=waiting")
            page.wait_for_selector("#report >> text=napping for 3.0 s")
            page.click('button[data-action="pause"]')
            page.click("#confirm-ok")
            page.wait_for_selector("#process-state >> text=paused")
            assert load_node(pk).paused
            shot(page, "2-process-paused")
            page.click('button[data-action="play"]')
            page.click("#confirm-ok")
            page.wait_for_selector("#process-state .flag", state="detached")
            page.wait_for_selector("#process-state >> text=finished", timeout=30_000)
            page.wait_for_selector("#report >> text=awake")
            thread.join(timeout=30)
            assert "error" not in results, results.get("error")
            outputs, node = results["run"]
            assert node.is_finished_ok and outputs["result"].value == 1
            shot(page, "3-process-finished")

            # kill the other one; a cancelled dialog does nothing
            page.goto(f"{web_server.url}/#/process/{other.pk}")
            page.wait_for_selector("#process-state >> text=created")
            page.click('button[data-action="kill"]')
            page.click("#confirm >> text=Cancel")
            assert load_node(other.pk).process_state.value == "created"
            page.click('button[data-action="kill"]')
            page.click("#confirm-ok")
            page.wait_for_selector("#process-state >> text=killed")
            assert load_node(other.pk).process_state.value == "killed"

            # the table saw both ends live
            page.click("header nav >> text=Processes")
            page.wait_for_selector(f'#process-rows tr.row[data-pk="{pk}"][data-state="finished"]')
            page.wait_for_selector(f'#process-rows tr.row[data-pk="{other.pk}"][data-state="killed"]')
            page.select_option("#filter-state", "killed")
            expect(page.locator("#process-rows tr.row")).to_have_count(1)
            shot(page, "4-table-filtered")

            # its provenance graph: the chain, its input and output; a click expands a neighbour
            page.goto(f"{web_server.url}/#/process/{pk}")
            page.click("#open-graph")
            page.wait_for_selector(f'#graph .node[data-pk="{pk}"]')
            result_pk = outputs["result"].pk
            page.wait_for_selector(f'#graph .node[data-pk="{result_pk}"]')
            before = page.locator("#graph .node").count()
            page.select_option("#highlight", "NappingChain")
            assert page.locator("#graph .node.hl").count() == 1
            shot(page, "5-graph")
            page.locator(f'#graph .node[data-pk="{result_pk}"]').click()
            page.wait_for_selector(f'#graph .node.selected[data-pk="{result_pk}"]')
            assert page.locator("#graph .node").count() >= before

            # the daemon panel, with no daemon running
            page.click("header nav >> text=Daemon")
            page.wait_for_selector("#daemon >> text=not running")
            assert not errors, errors
        except BaseException:
            shot(page, "failure")
            raise
        finally:
            browser.close()


def test_the_page_and_its_assets_are_public_and_the_data_is_not(web_server):
    with web_server.client(token="") as anonymous:
        page = anonymous.get("/")
        assert page.status_code == 200 and "static/app.js" in page.text
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe" not in policy
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "set-cookie" not in page.headers  # the token lives in the tab's sessionStorage only
        for asset in ("/static/app.js", "/static/style.css"):
            assert anonymous.get(asset).status_code == 200
        for escape in ("/static/../auth.py", "/static/%2e%2e/auth.py", "/static/..%2Fauth.py"):
            answer = anonymous.get(escape)
            assert answer.status_code in (401, 404) and "import" not in answer.text, escape
        for path in ("/api/events", "/api/processes", "/indexx.html", "/staticx/app.js"):
            assert anonymous.get(path).status_code == 401, path


def test_the_event_stream_announces_each_change_once(web_server):
    import json

    with web_server.client() as client, client.stream("GET", "/api/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        events: list[tuple[str, dict]] = []
        kind = ""
        for line in lines:
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
                if kind == "ready":  # listening: now make a change
                    with ThreadPoolExecutor(1) as pool:
                        pk = pool.submit(plait.submit, NappingChain, seconds=Float(60.0)).result(30).pk
                    with web_server.client() as second:
                        second.post(f"/api/processes/{pk}/kill")
                if events[-1][0] == "process" and events[-1][1]["state"] == "killed":
                    break
    changes = [data for kind, data in events if kind == "process"]
    assert [c["state"] for c in changes] == ["created", "killed"] or [c["state"] for c in changes] == [
        "killed"
    ]
    assert all(c["pk"] == pk and c["process_label"] == "NappingChain" for c in changes)
    assert len({c["mtime"] for c in changes}) == len(changes)  # each row version once
