"""Drive headless Chromium through the DevTools protocol (a websocket; aiohttp's client).

``inspect_page(html_file, screenshot=...)`` loads a file in a fresh headless Chromium at a fixed
viewport, waits for the load event, and returns what a reader would see: console errors and
uncaught exceptions, every image's decode result and natural size, every table's body row count,
the page's scroll width, and a full-page screenshot. Nothing here is specific to qigbench.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INSTALL = "apt-get install -y chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    explicit = os.environ.get("QIGBENCH_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


@dataclass
class PageReport:
    console_errors: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)  # alt, decoded, width, height
    tables: list[dict[str, Any]] = field(default_factory=list)  # id, rows, width, container width
    scroll_width: int = 0
    viewport_width: int = 0
    screenshot: Path | None = None


_PROBE = """
(async () => {
  const images = await Promise.all(Array.from(document.images).map(async (img) => {
    let decoded = true;
    try { await img.decode(); } catch (e) { decoded = false; }
    return {alt: img.alt, decoded, width: img.naturalWidth, height: img.naturalHeight};
  }));
  const tables = Array.from(document.querySelectorAll('table')).map((t) => ({
    id: (t.closest('section') || {}).id || '',
    rows: Array.from(t.tBodies).reduce((n, b) => n + b.rows.length, 0),
    placeholder: t.innerText.includes('no rows'),
    width: Math.ceil(t.getBoundingClientRect().right),
  }));
  return {images, tables, scroll: document.documentElement.scrollWidth, viewport: window.innerWidth,
          height: document.documentElement.scrollHeight};
})()
"""


class _Session:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        await self.ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads((await self.ws.receive()).data)
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self.events.append(message)

    async def wait_for(self, event: str, timeout: float) -> None:
        if any(e.get("method") == event for e in self.events):
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads((await asyncio.wait_for(self.ws.receive(), deadline - time.monotonic())).data)
            self.events.append(message)
            if message.get("method") == event:
                return
        raise TimeoutError(f"no {event} within {timeout}s")


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            out.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            out.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
    return out


async def _inspect(port: int, url: str, width: int, height: int, screenshot: Path | None) -> PageReport:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as listing:
            pages = [t for t in await listing.json(content_type=None) if t.get("type") == "page"]
        async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            s = _Session(ws)
            for domain in ("Page", "Runtime", "Log"):
                await s.call(f"{domain}.enable")
            await s.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                         mobile=False)
            s.events.clear()
            await s.call("Page.navigate", url=url)
            await s.wait_for("Page.loadEventFired", 60)
            probe = await s.call("Runtime.evaluate", expression=_PROBE, awaitPromise=True, returnByValue=True)
            if "exceptionDetails" in probe:
                raise RuntimeError(f"page probe failed: {probe['exceptionDetails']}")
            found = probe["result"]["value"]
            report = PageReport(
                images=found["images"],
                tables=found["tables"],
                scroll_width=int(found["scroll"]),
                viewport_width=int(found["viewport"]),
            )
            if screenshot is not None:
                full = max(height, int(found["height"]))
                await s.call("Emulation.setDeviceMetricsOverride", width=width, height=full, deviceScaleFactor=1,
                             mobile=False)
                shot = await s.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                report.screenshot = screenshot
            report.console_errors = _errors(s.events)
            return report


def inspect_page(
    html_file: Path, *, width: int = 1280, height: int = 900, screenshot: Path | None = None, timeout: float = 120
) -> PageReport:
    """Load ``html_file`` in headless Chromium (fresh profile) and report what it shows."""
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError(f"no Chromium found; install it with `{INSTALL}` (as root)")
    with tempfile.TemporaryDirectory(prefix="qigbench-chromium-") as profile:
        proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not (port_file.is_file() and port_file.read_text().strip()):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{binary} did not start (exit {proc.poll()})")
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            url = html_file.resolve().as_uri()
            return asyncio.run(asyncio.wait_for(_inspect(port, url, width, height, screenshot), timeout))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
