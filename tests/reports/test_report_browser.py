"""Open a generated report in headless Chromium and check it through the DevTools protocol.

Checks: the page loads (``Page.loadEventFired``), every ``<img>`` decoded (naturalWidth > 0), no console
errors (``Runtime.consoleAPICalled`` of type error, ``Runtime.exceptionThrown``, ``Log.entryAdded`` of
level error — the latter is where Chromium reports a missing image file). The DevTools websocket is
spoken by a small stdlib client below (no websocket package needed). Set ``LRBENCH_SCREENSHOT=path.png``
to keep a screenshot of the page.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.reports.cost_records import cost_records, write_records
from tests.reports.test_report_fixture import write_synthetic_results

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,900")


def find_or_install_chromium() -> str:
    """Path of a Chromium binary; installs Debian's ``chromium`` when root with apt, else skips."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("LRBENCH_NO_INSTALL"):
        pytest.skip("Chromium not installed and LRBENCH_NO_INSTALL is set (apt-get install -y chromium)")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Chromium not installed and it cannot be installed here (needs root and apt-get: "
                    "apt-get update && apt-get install -y chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=300, env=env)
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, capture_output=True, timeout=900,
                       env=env)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"Chromium could not be installed with apt-get ({type(exc).__name__}); no network?")
    path = shutil.which("chromium")
    if not path:
        pytest.skip("apt-get installed 'chromium' but no chromium binary is on PATH")
    return path


class DevToolsSocket:
    """Minimal RFC 6455 client (text frames, client-side masking) for one DevTools target."""

    def __init__(self, ws_url: str, timeout: float = 30.0) -> None:
        match = re.match(r"ws://([^/:]+):(\d+)(/.*)", ws_url)
        assert match, ws_url
        host, port, path = match.group(1), int(match.group(2)), match.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            response += chunk
        head, _, self.buffer = response.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _send_text(self, text: str) -> None:
        payload = text.encode()
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _receive_message(self) -> dict[str, Any]:
        message = b""
        while True:
            first, second = self._read(2)
            opcode, n = first & 0x0F, second & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if second & 0x80 else b""
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the websocket")
            if opcode in (0x9, 0xA):  # ping/pong: ignore
                continue
            message += payload
            if first & 0x80:  # FIN
                return json.loads(message)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command and return its result; events received meanwhile are kept in ``events``."""
        self.next_id += 1
        self._send_text(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = self._receive_message()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> dict[str, Any]:
        """Wait for an event named ``method`` (returns it)."""
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while time.monotonic() < deadline:
            message = self._receive_message()
            self.events.append(message)
            if message.get("method") == method:
                return message
        raise TimeoutError(f"no {method} within {timeout}s")

    def close(self) -> None:
        self.sock.close()


def start_chromium(binary: str, profile: Path) -> tuple[subprocess.Popen, int]:
    """Launch headless Chromium with a DevTools port; returns the process and the port."""
    process = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            raise RuntimeError(f"chromium exited with code {process.returncode} before DevTools started")
        match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
        if match:  # keep draining stderr so a chatty browser never blocks on a full pipe
            threading.Thread(target=process.stderr.read, daemon=True).start()
            return process, int(match.group(1))
    process.kill()
    raise TimeoutError("chromium did not print its DevTools address within 60 s")


def inspect_page(binary: str, page: Path, profile: Path, screenshot: Path | None = None) -> dict[str, Any]:
    """Load ``page`` in Chromium; return images (src, naturalWidth), console errors and the title."""
    process, port = start_chromium(binary, profile)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.load(response)
        target = next(t for t in targets if t.get("type") == "page")
        devtools = DevToolsSocket(target["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log"):
            devtools.call(f"{domain}.enable")
        devtools.events.clear()
        devtools.call("Page.navigate", url=page.resolve().as_uri())
        devtools.wait_for("Page.loadEventFired", timeout=60)
        check = devtools.call("Runtime.evaluate", returnByValue=True, expression=(
            "JSON.stringify({title: document.title, images: Array.from(document.images).map("
            "i => ({src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth})),"
            " sections: document.querySelectorAll('section').length,"
            " first_table: (document.querySelector('table') || {dataset: {}}).dataset.table || null,"
            " first_section: (document.querySelector('section h2') || {}).textContent || null,"
            " bold_cells: document.querySelectorAll('table[data-table=scoreboard] td strong').length})"))
        result = json.loads(check["result"]["value"])
        if screenshot is not None:
            metrics = devtools.call("Page.getLayoutMetrics")
            height = int(metrics["cssContentSize"]["height"])
            shot = devtools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                 clip={"x": 0, "y": 0, "width": 1280, "height": min(height, 16000), "scale": 1})
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        errors = []
        for event in devtools.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                errors.append(f"exception: {params.get('exceptionDetails', {}).get('text')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append(f"log: {entry.get('text')} {entry.get('url', '')}")
        result["console_errors"] = errors
        devtools.close()
        return result
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def chromium() -> str:
    return find_or_install_chromium()


def _check_page(page: dict[str, Any], figures: Path) -> None:
    """The scoreboard opens the page, every image decoded, nothing on the console."""
    assert page["first_section"] == "Scoreboard" and page["first_table"] == "scoreboard"
    names = sorted(p.name for p in figures.glob("*.png"))
    assert len(page["images"]) == len(names)
    broken = [i["src"] for i in page["images"] if not i["complete"] or i["width"] <= 0]
    assert not broken, f"images that did not decode: {broken}"
    assert page["console_errors"] == []


def test_report_with_costs_opens_in_chromium(tmp_path: Path, chromium: str) -> None:
    """A folder written by this version (cost fields, load, estimator defaults)."""
    from lrbench.reports import build_report

    index = build_report(write_records(tmp_path / "results", cost_records()), tmp_path / "report")
    page = inspect_page(chromium, index, tmp_path / "profile")
    _check_page(page, tmp_path / "report" / "figures")
    assert len(page["images"]) >= 7 and page["bold_cells"] >= 2 * 6  # per task: a best value in every column


def test_report_opens_in_chromium(tmp_path: Path, chromium: str) -> None:
    """A folder written before the cost fields existed still reads and renders."""
    from lrbench.reports import build_report

    index = build_report(write_synthetic_results(tmp_path / "results"), tmp_path / "report")
    screenshot = Path(os.environ["LRBENCH_SCREENSHOT"]) if os.environ.get("LRBENCH_SCREENSHOT") else None
    page = inspect_page(chromium, index, tmp_path / "profile", screenshot)
    assert page["title"] == "lrbench report"
    assert page["sections"] >= 8
    _check_page(page, tmp_path / "report" / "figures")
    assert len(page["images"]) >= 8


def test_broken_image_is_detected(tmp_path: Path, chromium: str) -> None:
    """The check itself must fail on a page with a missing image (guards against a vacuous pass)."""
    page_path = tmp_path / "broken.html"
    page_path.write_text('<!DOCTYPE html><html><head><title>t</title></head><body>'
                         '<img src="figures/missing.png"></body></html>')
    page = inspect_page(chromium, page_path, tmp_path / "profile")
    assert page["images"][0]["width"] == 0
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in page["console_errors"])
