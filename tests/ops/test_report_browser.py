"""The report in a real browser (docs/report.md): Debian's headless Chromium opens the file with
the network off and reports no request, no console error and no exception; every section's
plots render (screenshots that are not blank); printing to PDF gives the same page count
twice. Skipped when /usr/bin/chromium is absent (``make test`` installs it: OPS_PACKAGES)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from pipeline.report.figures import collect
from pipeline.report.html import render
from tests.conftest import migrated_clickhouse
from tests.integration.test_report import FIRST, LAST, build, load, set_k

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
SECTIONS = [
    "adoption",
    "participation",
    "cross-silo",
    "communities",
    "growth",
    "ideation",
    "coverage",
]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Debian's chromium is not installed (/usr/bin/chromium; `make test` installs it)",
    ),
]


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A report over the random organisation of tests/integration/test_report.py (k = 1)."""
    root = tmp_path_factory.mktemp("report-browser")
    with migrated_clickhouse(root, min_group_size=1) as client:
        load(client, build(seed=8))
        set_k(client, 1)
        html = render(collect(client, "teilhabe", FIRST, LAST, [], "UTC", datetime.now(UTC)))
    out = root / "report.html"
    out.write_text(html, encoding="utf-8")
    yield out


def chromium(*args: str) -> subprocess.CompletedProcess[bytes]:
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        return subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            timeout=60,
            check=False,
        )


class DevTools:
    """One page of a headless Chromium over the DevTools protocol: commands and events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.next_id = 0

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json(timeout=30)
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                result: dict[str, Any] = msg["result"]
                return result
            self.events.append(msg)

    async def until(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(await self.ws.receive_json(timeout=30))


async def devtools_port(profile: Path, proc: subprocess.Popen[bytes]) -> int:
    """The port Chromium chose (``--remote-debugging-port=0`` writes it to the profile)."""
    port_file = profile / "DevToolsActivePort"
    for _ in range(300):
        if port_file.exists() and port_file.read_text().strip():
            return int(port_file.read_text().split()[0])
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        await asyncio.sleep(0.05)
    raise AssertionError("chromium published no DevTools port")


async def open_offline(url: str) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Open ``url`` with the network emulated offline; the protocol events and a screenshot
    of every section's figures."""
    # Chromium's helper processes may still write to the profile as the browser exits.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        profile = Path(tmp)
        proc = subprocess.Popen(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "--window-size=1200,1600",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: the browser and its helpers
        )
        try:
            port = await devtools_port(profile, proc)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    targets = await resp.json()
                page = next(t for t in targets if t["type"] == "page")
                async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    cdp = DevTools(ws)
                    for domain in ("Network", "Runtime", "Log", "Page"):
                        await cdp.send(f"{domain}.enable")
                    await cdp.send(
                        "Network.emulateNetworkConditions",
                        offline=True,
                        latency=0,
                        downloadThroughput=-1,
                        uploadThroughput=-1,
                    )
                    await cdp.send("Page.navigate", url=url)
                    await cdp.until("Page.loadEventFired")
                    shots = {}
                    for section in SECTIONS:
                        got = await cdp.send(
                            "Runtime.evaluate",
                            expression=(
                                f"JSON.stringify([...document.querySelectorAll('#{section} "
                                "figure svg')].map(e => {const r = e.getBoundingClientRect(); "
                                "return [r.x, r.y + window.scrollY, r.width, r.height];}))"
                            ),
                        )
                        rects = json.loads(got["result"]["value"])
                        assert rects, f"section {section}: no plot"
                        x, y, w, h = rects[0]
                        shot = await cdp.send(
                            "Page.captureScreenshot",
                            format="png",
                            captureBeyondViewport=True,
                            clip={"x": x, "y": y, "width": w, "height": h, "scale": 1},
                        )
                        shots[section] = base64.b64decode(shot["data"])
                    return cdp.events, shots
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # the group this test started, by its id
            proc.wait(timeout=30)


def test_offline_no_request_no_error_every_section_drawn(report_file: Path) -> None:
    url = report_file.as_uri()
    events, shots = asyncio.run(open_offline(url))
    requests = [
        e["params"]["request"]["url"]
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
        and e["params"]["request"]["url"] != url
        and not e["params"]["request"]["url"].startswith("data:")
    ]
    assert requests == []
    assert [e for e in events if e.get("method") == "Runtime.exceptionThrown"] == []
    console = [
        e["params"]
        for e in events
        if (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert console == []
    for section, png in shots.items():
        image = Image.open(io.BytesIO(png)).convert("RGB")
        colours: list[tuple[int, tuple[int, int, int]]] = image.getcolors(1 << 20) or []  # type: ignore[assignment]
        inked = sum(n for n, (r, g, b) in colours if r + g + b < 3 * 235)
        assert len(colours) > 2, f"{section}: blank plot"
        assert inked > 0.01 * image.width * image.height, f"{section}: almost blank plot"


def pages(pdf: bytes) -> int:
    """Page objects (``/Type /Page``, not the ``/Pages`` tree nodes)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def test_prints_to_pdf_with_a_stable_page_count(report_file: Path, tmp_path: Path) -> None:
    counts = []
    for i in range(2):
        pdf = tmp_path / f"report-{i}.pdf"
        done = chromium("--no-pdf-header-footer", f"--print-to-pdf={pdf}", report_file.as_uri())
        assert pdf.exists(), done.stderr.decode(errors="replace")[-2000:]
        counts.append(pages(pdf.read_bytes()))
    assert counts[0] == counts[1]
    assert counts[0] >= len(SECTIONS) + 1  # the cover, then every section on a page of its own
