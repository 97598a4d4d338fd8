"""Open a page in Debian's headless Chromium and record what went wrong, over the DevTools protocol.

Stdlib only: ``--remote-debugging-pipe`` speaks NUL-terminated JSON on the child's
file descriptors 3 (commands in) and 4 (replies and events out). The network is cut
off (unresolvable hosts, a dead proxy), so a page that needs it shows failed loads.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]


@dataclass
class PageVisit:
    """What one page load produced."""

    screenshot: bytes
    failed_loads: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    layout: dict = field(default_factory=dict)
    probed: object = None  # what the caller's JavaScript expression returned


class Chromium:
    """One headless browser; use as a context manager and call :meth:`visit` per page."""

    def __init__(self, timeout: float = 30.0) -> None:
        if CHROMIUM is None:
            raise RuntimeError("chromium is not installed")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        cmd_read, self._cmd = os.pipe()
        self._evt, evt_write = os.pipe()

        def wire_fds() -> None:  # in the child: its fd 3 reads our commands, its fd 4 writes replies
            high_r = fcntl.fcntl(cmd_read, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(evt_write, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe",
                                      "about:blank"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=wire_fds, close_fds=False)
        os.close(cmd_read)
        os.close(evt_write)
        self._inbox: queue.Queue = queue.Queue()
        self._next_id = 0
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._evt, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self._inbox.put(json.loads(message))
        self._inbox.put(None)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._cmd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._take(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e.get("method") == event and e.get("sessionId") == session for e in self.events):
            self.events.append(self._take(deadline, event))

    def _take(self, deadline: float, waiting_for: str) -> dict:
        try:
            item = self._inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"chromium did not answer {waiting_for} within {self.timeout:.0f} s") from None
        if item is None:
            raise RuntimeError(f"chromium exited (code {self.proc.poll()}) while waiting for {waiting_for}")
        return item

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                item = self._inbox.get(timeout=left)
            except queue.Empty:
                return
            if item is None:
                return
            self.events.append(item)

    def visit(self, path: Path, width: int = 1280, height: int = 900, mobile: bool = False,
              probe: str | None = None) -> PageVisit:
        """Load ``path`` from disk, wait for the load event, and return a full-page screenshot and the problems;
        ``probe``: a JavaScript expression evaluated in the loaded page, its value in :attr:`PageVisit.probed`."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": mobile}, session=session)
        first = len(self.events)
        nav = self.send("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
        if nav.get("errorText"):
            raise RuntimeError(f"navigation to {path} failed: {nav['errorText']}")
        self.wait_for("Page.loadEventFired", session)
        self.drain(0.3)  # late console messages and failed loads
        layout = self.send("Runtime.evaluate", {"returnByValue": True, "expression": """({
            scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
            scrollHeight: document.documentElement.scrollHeight,
            images: document.images.length,
            brokenImages: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length})"""},
            session=session)["result"]["value"]
        probed = None
        if probe is not None:  # before the screenshot, which may lay the page out beyond the viewport
            probed = self.send("Runtime.evaluate", {"returnByValue": True, "expression": probe},
                               session=session)["result"].get("value")
        full_height = min(int(layout["scrollHeight"]), 8000)
        shot = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "clip": {"x": 0, "y": 0, "width": width, "height": full_height,
                                                             "scale": 1}}, session=session)
        visit = PageVisit(base64.b64decode(shot["data"]), layout=layout, probed=probed)
        urls = {}
        for event in self.events[first:]:
            if event.get("sessionId") != session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                urls[params["requestId"]] = params["request"]["url"]
            elif method == "Network.loadingFailed":
                visit.failed_loads.append(f"{urls.get(params['requestId'], '?')}: {params.get('errorText')}")
            elif method == "Runtime.exceptionThrown":
                visit.console_errors.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                visit.console_errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                visit.console_errors.append(f"{params['entry'].get('source')}: {params['entry'].get('text')}")
        self.send("Target.closeTarget", {"targetId": target})
        return visit

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - it may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd, self._evt):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
