"""A tiny headless-Chromium driver over the DevTools protocol (websockets, shipped with Prefect): open a
page, click, wait for text, screenshot. Debian's `chromium`; see scripts/ci-system-deps.sh."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1100"]


def chromium_or_skip() -> None:
    """Skip only where the user asked to (PRIMER_SKIP_BROWSER=1) and no browser is installed; CI has one."""
    import os

    import pytest

    if not chromium_path() and os.environ.get("PRIMER_SKIP_BROWSER") == "1":
        pytest.skip("PRIMER_SKIP_BROWSER=1 and no chromium")


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    def __init__(self, user_data_dir: Path, timeout: float = 60.0):
        exe = chromium_path()
        if not exe:
            raise RuntimeError("chromium not found: run scripts/ci-system-deps.sh (apt-get install -y chromium)")
        self.udd = Path(user_data_dir)
        self.udd.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={self.udd}", "--remote-debugging-port=0",
                                      "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.udd / "DevToolsActivePort"
        deadline = time.time() + timeout
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.time() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(t for t in targets if t.get("type") == "page")
        from websockets.sync.client import connect

        self.ws = connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=timeout)
        self._ids = itertools.count(1)

    def call(self, method: str, **params):
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.call("Page.enable")
        self.call("Page.navigate", url=url)

    def wait_text(self, needles: list[str], timeout: float = 60.0) -> str:
        deadline = time.time() + timeout
        text = ""
        while time.time() < deadline:
            text = self.eval("document.body ? document.body.innerText : ''") or ""
            if all(n in text for n in needles):
                return text
            time.sleep(0.5)
        raise AssertionError(f"page never showed {needles}; it shows:\n{text[:3000]}")

    def open_run_artifacts(self, ui: str, flow_run_id: str, needles: list[str]) -> str:
        """Open a flow run's page in the Prefect UI, switch to its Artifacts tab and wait for `needles`."""
        self.goto(f"{ui}/runs/flow-run/{flow_run_id}")
        self.wait_text(["Artifacts", "Completed"], timeout=90)
        deadline = time.time() + 30
        while not self.click("#artifacts") and time.time() < deadline:
            time.sleep(0.5)
        return self.wait_text(needles, timeout=60)

    def click(self, selector: str) -> bool:
        return bool(self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                              f"if (!e) return false; e.click(); return true; }})()"))

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def html(self) -> str:
        return self.eval("document.documentElement.outerHTML") or ""

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
