"""A small OpenAI-compatible server on 127.0.0.1 for the served engine's fast tests: the shape of
vLLM's replies (``/v1/models`` with ``max_model_len``, chat completions with ``usage``,
``/tokenize`` and ``/detokenize``), plus the failures a real server shows only by accident (429s,
a reply without choices, a slow reply). The real server is tested in the real-vLLM tier.

Its model is deterministic like a greedy or seeded one: the reply is a function of the messages,
the seed and the temperature, and ``stop`` cuts it as a server does. Tokens are words."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class StubBehaviour:
    models: dict[str, int | None] = field(default_factory=lambda: {"stub": 2048})  # name -> max_model_len
    delay: float = 0.0  # seconds each chat completion takes
    fail_first: int = 0  # chat completions answered 429 before the server answers
    retry_after: str | None = None
    choices_until: int | None = None  # chat completions answered before replies come without choices (0: none)
    api_key: str | None = None  # required as a Bearer token when set
    seen: list[dict] = field(default_factory=list)  # every chat-completions body
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def reply_text(body: dict) -> str:
    digest = hashlib.sha256(json.dumps([body["messages"], body.get("seed"), body.get("temperature")]).encode()).hexdigest()
    letter = "ABCD"[int(digest, 16) % 4]
    return f"Thinking about {len(body['messages'])} message(s) step by step. The answer is ({letter}) [{digest[:8]}]"


def chat_reply(body: dict) -> dict:
    words = reply_text(body).split()
    finish = "length" if len(words) > body.get("max_tokens", 10**9) else "stop"
    text = " ".join(words[: body.get("max_tokens")])
    for stop in body.get("stop") or []:
        if stop in text:
            text, finish = text[: text.index(stop)], "stop"
    prompt = sum(len(m["content"].split()) for m in body["messages"])
    return {"id": "x", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": len(text.split()), "total_tokens": 0}}


class Handler(BaseHTTPRequestHandler):
    behaviour: StubBehaviour

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        wanted = self.behaviour.api_key
        if wanted and self.headers.get("Authorization") != f"Bearer {wanted}":
            self._send(401, {"error": {"message": "Unauthorized", "type": "invalid_request_error"}})
            return False
        return True

    def do_GET(self):
        if not self._authorised():
            return
        if self.path == "/v1/models":
            data = [{"id": name, "object": "model", "owned_by": "stub", "root": f"/models/{name}",
                     **({"max_model_len": n} if n else {})} for name, n in self.behaviour.models.items()]
            return self._send(200, {"object": "list", "data": data})
        self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):
        if not self._authorised():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/tokenize":
            text = body.get("prompt") or "".join(f"<{m['role']}> {m['content']} " for m in body["messages"]) + "<assistant>"
            return self._send(200, {"tokens": [hash(w) % 50000 for w in text.split()], "count": len(text.split())})
        if self.path == "/detokenize":
            return self._send(200, {"prompt": " ".join("w" for _ in body["tokens"])})
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        if body["model"] not in self.behaviour.models:
            return self._send(404, {"error": {"message": f"The model `{body['model']}` does not exist."}})
        self._complete(body)

    def _complete(self, body: dict) -> None:
        b = self.behaviour
        with b.lock:
            b.seen.append(body)
            empty = b.choices_until is not None and len(b.seen) > b.choices_until
            failing = b.fail_first > 0
            b.fail_first -= failing
            b.in_flight += 1
            b.most_in_flight = max(b.most_in_flight, b.in_flight)
        try:
            time.sleep(b.delay)
            if failing:
                return self._send(429, {"error": {"message": "rate limited"}},
                                  {"Retry-After": b.retry_after} if b.retry_after else None)
            self._send(200, {"id": "x", "choices": []} if empty else chat_reply(body))
        finally:
            with b.lock:
                b.in_flight -= 1


class LoopbackServer:
    """An HTTP server of ``handler`` on a free port of 127.0.0.1, serving in a thread while a
    ``with`` block runs: ``base_url`` ends in /v1."""

    def __init__(self, handler):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.base_url = self.origin + "/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> bool:
        self.httpd.shutdown()
        self.httpd.server_close()
        return False


class StubServer(LoopbackServer):
    """``with StubServer() as server:`` serves on ``server.base_url`` until the block ends."""

    def __init__(self, behaviour: StubBehaviour | None = None):
        self.behaviour = behaviour or StubBehaviour()
        super().__init__(type("BoundHandler", (Handler,), {"behaviour": self.behaviour}))
