"""A hostile HTTP server on 127.0.0.1 for the served engine's tests: each test scripts what the
server sends per request (status, headers, a body given whole, dripped, endless, or broken off),
so the engine meets what a broken, slow, lying or malicious server does. Every loop is bounded."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Callable

from openai_stub import LoopbackServer

MOST_SECONDS = 30.0  # no scripted reply runs longer than this


@dataclass
class Reply:
    status: int = 200
    body: object = None  # JSON-able, or bytes as they are
    headers: dict = field(default_factory=dict)
    drip_s: float = 0.0  # seconds between the body's bytes (sent one at a time)
    endless: bool = False  # a chunked body that never ends (until MOST_SECONDS)
    broken: bool = False  # a chunked body cut off mid-chunk

    def data(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()


def chat(content="The answer is (A).", usage=None, finish="stop") -> dict:
    """A chat-completions reply; ``usage`` as given (default: plausible counts)."""
    return {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 4} if usage is None else usage}


def models(name: str = "stub", **extra) -> dict:
    return {"object": "list", "data": [{"id": name, "object": "model", **extra}]}


class Handler(BaseHTTPRequestHandler):
    script: Callable[["Handler", str, dict | None], Reply]
    seen: list

    def log_message(self, *args):
        pass

    def _body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def _answer(self, method: str) -> None:
        body = self._body()
        self.seen.append((method, self.path, body, dict(self.headers)))
        reply = self.script(self, self.path, body)
        self.send_response(reply.status)
        for key, value in {"Content-Type": "application/json", **reply.headers}.items():
            self.send_header(key, value)
        chunked = reply.endless or reply.broken
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif "Content-Length" not in reply.headers:
            self.send_header("Content-Length", str(len(reply.data())))
        self.end_headers()
        try:
            self._write(reply)
        except OSError:
            pass  # the client hung up: what a hostile server is for

    def _write(self, reply: Reply) -> None:
        data, started = reply.data(), time.monotonic()
        if reply.endless:
            while time.monotonic() - started < MOST_SECONDS:
                self.wfile.write(b"400\r\n" + b" " * 1024 + b"\r\n")
                self.wfile.flush()
                time.sleep(0.01)
        elif reply.broken:
            self.wfile.write(b"ffff\r\n" + data[:10])
            self.wfile.flush()
            self.close_connection = True
        elif reply.drip_s:
            for i in range(len(data)):
                if time.monotonic() - started > MOST_SECONDS:
                    return
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                time.sleep(reply.drip_s)
        else:
            self.wfile.write(data)

    def do_GET(self):
        self._answer("GET")

    def do_POST(self):
        self._answer("POST")


class HostileServer(LoopbackServer):
    """``with HostileServer(script) as server:``; ``script(handler, path, body)`` returns the Reply."""

    def __init__(self, script: Callable[[Handler, str, dict | None], Reply]):
        self.seen: list = []
        super().__init__(type("Scripted", (Handler,), {"script": staticmethod(script), "seen": self.seen}))

    def posts(self, path: str) -> int:
        return sum(1 for method, p, _, _ in self.seen if method == "POST" and p == path)
