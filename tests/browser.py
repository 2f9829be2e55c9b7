"""Headless Chromium for tests: install it when missing, drive it through chromedriver with plain HTTP.

chromedriver speaks the W3C WebDriver protocol (JSON over HTTP), so urllib is all the client we
need: open a page, run JavaScript in it after React rendered, click, take a screenshot. No selenium.

    with Browser() as b:
        b.open(Path("report.html"))
        b.js("return document.title")
        b.screenshot(Path("shot.png"))
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PACKAGES = ("chromium", "chromium-driver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> tuple[str, str] | None:
    """-> (chromium, chromedriver) executables on the PATH, or None if either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def ensure_chromium(timeout: int = 900) -> tuple[str, str]:
    """Install the Debian packages chromium and chromium-driver with apt-get when missing.

    -> (chromium, chromedriver). Raises RuntimeError with apt-get's output when it cannot install.
    """
    found = find_chromium()
    if found:
        return found
    if not shutil.which("apt-get"):
        raise RuntimeError("chromium/chromedriver are missing and apt-get is not available to install them")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            )
    found = find_chromium()
    if not found:
        raise RuntimeError(f"installed {PACKAGES} but chromium/chromedriver are still not on the PATH")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One headless Chromium session (fresh profile) behind a chromedriver process."""

    def __init__(self, width: int = 1400, height: int = 1000, timeout: float = 60):
        self.size = (width, height)
        self.timeout = timeout
        self.chromium, self.chromedriver = ensure_chromium()

    def __enter__(self) -> Browser:
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.driver = subprocess.Popen(
            [self.chromedriver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            self._wait_ready()
            args = [*FLAGS, f"--user-data-dir={self.profile}", f"--window-size={self.size[0]},{self.size[1]}"]
            caps = {
                "capabilities": {
                    "alwaysMatch": {
                        "browserName": "chrome",
                        "goog:chromeOptions": {"binary": self.chromium, "args": args},
                    }
                }
            }
            self.session = self._call("POST", "/session", caps)["sessionId"]
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._call("DELETE", f"/session/{self.session}")
        finally:
            self._stop()

    def _stop(self) -> None:
        self.driver.terminate()
        try:
            self.driver.wait(10)
        except subprocess.TimeoutExpired:
            self.driver.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self._call("GET", "/status").get("ready"):
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"chromedriver at {self.base} did not become ready")

    def _call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        req = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"WebDriver {method} {path}: {e.code} {e.read()[:2000]!r}") from None

    def open(self, path: Path) -> None:
        """Load ``path`` afresh (a new query string each time: the same URL would only change the fragment)."""
        self.loads = getattr(self, "loads", 0) + 1
        self._call(
            "POST", f"/session/{self.session}/url", {"url": f"{Path(path).resolve().as_uri()}?load={self.loads}"}
        )

    def js(self, script: str, *args):
        """Run ``script`` (a function body; ``arguments`` holds args) in the page and return its value."""
        return self._call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)})

    def wait_for(self, script: str, timeout: float = 30, *args):
        """Poll ``script`` until it returns something truthy; -> that value (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied: {script}")
            time.sleep(0.25)

    def find(self, xpath: str, timeout: float = 30) -> dict:
        """The first element matching ``xpath`` (waits for it to appear) -> WebDriver element reference."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._call("POST", f"/session/{self.session}/elements", {"using": "xpath", "value": xpath})
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no element matches {xpath}")
            time.sleep(0.25)

    def click(self, xpath: str) -> None:
        """A real (WebDriver) mouse click on the first element matching ``xpath``."""
        element = next(iter(self.find(xpath).values()))
        self._call("POST", f"/session/{self.session}/element/{element}/click")

    def enter_frame(self, xpath: str) -> None:
        """Run the following js()/find() calls inside the iframe matching ``xpath``."""
        self._call("POST", f"/session/{self.session}/frame", {"id": self.find(xpath)})

    def leave_frames(self) -> None:
        self._call("POST", f"/session/{self.session}/frame", {"id": None})

    def screenshot(self, out: Path) -> Path:
        png = base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot"))
        Path(out).write_bytes(png)
        return Path(out)
