"""Debian's Firefox ESR driven over WebDriver BiDi, the W3C protocol it speaks itself when started
with ``--remote-debugging-port`` (Playwright drives only its own patched Firefox). The client is
aiohttp's websocket (lm-eval[api] installs aiohttp): session, one tab, navigation, script
evaluation, and the page's console and JavaScript errors as events."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

PREFS = {"browser.shell.checkDefaultBrowser": False, "app.update.enabled": False, "datareporting.policy.dataSubmissionEnabled": False,
         "toolkit.telemetry.enabled": False, "browser.startup.page": 0, "network.proxy.type": 0}


def firefox_binary() -> str | None:
    return shutil.which("firefox-esr") or shutil.which("firefox")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tab:
    """One browsing context of a BiDi session; ``errors`` collects the page's error log entries."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws, self.sent, self.errors, self.context = ws, 0, [], None

    async def send(self, method: str, **params) -> dict:
        self.sent += 1
        await self.ws.send_json({"id": self.sent, "method": method, "params": params})
        while True:
            message = json.loads((await asyncio.wait_for(self.ws.receive(), 60)).data)
            if message.get("type") == "event" and message.get("method") == "log.entryAdded":
                if message["params"].get("level") == "error":
                    self.errors.append(message["params"].get("text"))
            elif message.get("id") == self.sent:
                if message.get("type") == "error":
                    raise AssertionError(f"{method}: {message.get('error')}: {message.get('message')}")
                return message["result"]

    async def goto(self, url: str) -> None:
        await self.send("browsingContext.navigate", context=self.context, url=url, wait="complete")

    async def evaluate(self, expression: str):
        """The value of ``expression`` in the page (promises awaited); a thrown error fails."""
        done = await self.send("script.evaluate", expression=expression, target={"context": self.context},
                               awaitPromise=True)
        if done["type"] == "exception":
            raise AssertionError(done["exceptionDetails"].get("text"))
        return done["result"].get("value")


@asynccontextmanager
async def firefox_tab():
    """A headless Firefox with a fresh profile and a BiDi session on one tab; closed after."""
    port, profile = free_port(), tempfile.mkdtemp(prefix="symoe-firefox-")
    Path(profile, "user.js").write_text("".join(f'user_pref("{k}", {json.dumps(v)});\n' for k, v in PREFS.items()))
    said = Path(profile, "stderr.txt")
    with open(said, "w") as stderr:
        process = subprocess.Popen([firefox_binary(), "--headless", "--no-remote", "--profile", profile,
                                    "--remote-debugging-port", str(port), "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        await asyncio.to_thread(wait_for_bidi, process, said, port)
        async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://127.0.0.1:{port}/session") as ws:
            tab = Tab(ws)
            await tab.send("session.new", capabilities={})
            await tab.send("session.subscribe", events=["log.entryAdded"])
            tab.context = (await tab.send("browsingContext.getTree"))["contexts"][0]["context"]
            yield tab
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for_bidi(process: subprocess.Popen, stderr: Path, port: int, seconds: float = 90) -> None:
    """Until Firefox says its BiDi server listens on ``port`` (a line on its stderr, a file here)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if re.search(rf"WebDriver BiDi listening on ws://127\.0\.0\.1:{port}", stderr.read_text(errors="replace")):
            return
        if process.poll() is not None:
            raise AssertionError(f"firefox exited with {process.returncode} before its BiDi server started")
        time.sleep(0.2)
    raise AssertionError(f"firefox's BiDi server did not start within {seconds:.0f} s")
