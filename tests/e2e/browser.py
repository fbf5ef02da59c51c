"""A real headless Chromium (Debian's ``chromium``) driven over the Chrome DevTools Protocol: enough to log in
to Airflow's UI like a user (typing into the login form), open a page and take a screenshot.

No browser-automation framework: CDP over one websocket (``websockets``) is all these checks need.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium with one page; ``with Browser(tmp) as b: b.goto(url)``."""

    def __init__(self, profile: Path, *, width: int = 1440, height: int = 900, tz: str = "UTC") -> None:
        binary = chromium_path()
        if binary is None:
            raise RuntimeError("chromium is not installed: `apt-get install chromium` (.ci/run installs it)")
        profile.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--no-default-browser-check", "--remote-debugging-port=0", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "TZ": tz},
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start (no DevToolsActivePort)")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t.get("type") == "page")
        self._connection = connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=30)
        self._ws = self._connection.__enter__()
        self._ids = itertools.count(1)
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Network.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One CDP command; its result (events that arrive meanwhile are dropped)."""
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=60))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60, what: str | None = None) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or expression}")
            time.sleep(0.25)

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", what=f"{url} to load")

    def type_into(self, selector: str, text: str) -> None:
        """Focus the field and type ``text`` as keystrokes (React sees real input events)."""
        self.wait_for(f"!!document.querySelector({json.dumps(selector)})", what=selector)
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.send("Input.insertText", text=text)

    def press_enter(self) -> None:
        self.send("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter", windowsVirtualKeyCode=13, text="\r")
        self.send("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter", windowsVirtualKeyCode=13)

    def cookies(self) -> dict[str, str]:
        return {c["name"]: c["value"] for c in self.send("Network.getCookies")["cookies"]}

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        connection = getattr(self, "_connection", None)
        if connection is not None:
            connection.__exit__(None, None, None)
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def login(browser: Browser, url: str, username: str, password: str) -> None:
    """Log in to Airflow's UI through its login form, as a user does."""
    browser.goto(f"{url}/")
    browser.wait_for("location.pathname.includes('login') && !!document.querySelector('input[type=password]')",
                     what="the login form")
    browser.type_into("input[name=username], input[type=text]", username)
    browser.type_into("input[type=password]", password)
    browser.press_enter()
    browser.wait_for("!location.pathname.includes('login')", what="the login to finish")
    assert "_token" in browser.cookies(), "the UI did not set its session cookie"
