"""Bounded HTTP for served experts: one deadline per request (connecting and reading the whole
reply), a cap on the reply's size, redirects followed only within the server's own origin, and
the key kept out of every text that is printed or stored. A server can neither stall a run past
its ``timeout`` nor fill its memory, nor send the prompt (and the key) to another host."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

RETRIED_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
CHUNK_BYTES = 1 << 16


class Retryable(Exception):
    """A failure worth another try; ``wait`` is the server's Retry-After, if it sent one."""

    def __init__(self, what: str, wait: float | None = None):
        super().__init__(what)
        self.wait = wait


class Refused(Exception):
    """A reply not worth another try, as one phrase (the engine adds expert and endpoint);
    ``status`` is the HTTP status where the server sent one."""

    def __init__(self, what: str, status: int | None = None, said: str = ""):
        super().__init__(what)
        self.status = status
        self.said = said  # the server's own message, redacted


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def retry_after(value: str, most: float) -> float | None:
    """The server's ``Retry-After`` in seconds (a number; an HTTP date reads as none), at most ``most``."""
    text = value.strip()
    if not text or len(text) > 12 or not text.replace(".", "", 1).isdigit():
        return None
    return min(float(text), most)


def server_message(status: int, body: bytes) -> str:
    """The first line of what a refusing server said (OpenAI's and vLLM's ``error.message``)."""
    try:
        reply = json.loads(body)
        error = reply.get("error", reply) if isinstance(reply, dict) else reply
        text = error.get("message", error) if isinstance(error, dict) else error
    except (ValueError, RecursionError):
        text = body.decode("utf-8", "replace")
    return (str(text).strip().splitlines() or [f"HTTP {status}"])[0][:200]


def connection_problem(err: Exception) -> str:
    """``requests``' nested connection error as its cause (``[Errno 111] Connection refused``)."""
    found = re.search(r"\[Errno -?\d+\][^'\")]*", str(err))
    return found.group(0).strip() if found else type(err).__name__


def _socket_of(response):
    """The socket a streamed ``requests`` reply is read from: the connection's, or, where
    http.client detached it (a reply that closes the connection), the one under the reply's file."""
    connection = getattr(response.raw, "_connection", None)
    if getattr(connection, "sock", None) is not None:
        return connection.sock
    reader = getattr(getattr(response.raw, "_fp", None), "fp", None)
    return getattr(getattr(reader, "raw", None), "_sock", None)


class Watchdog:
    """Shuts the reply's socket down at the deadline, which ends a read blocked in another thread."""

    def __init__(self, response, seconds: float):
        self.sock = _socket_of(response)
        self.timer = threading.Timer(max(0.0, seconds), self._fire)
        self.fired = False

    def _fire(self) -> None:
        self.fired = True
        try:
            if self.sock is not None:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        return False


@dataclass
class Transport:
    """One served model's HTTP: ``session`` (a ``requests.Session``), the request deadline in
    seconds, the reply cap in bytes and the key to redact (None: no key)."""

    session: object
    timeout: float
    max_reply_bytes: int
    secret: str | None = None

    def redact(self, text: str) -> str:
        return text.replace(self.secret, "***") if self.secret else text

    def request(self, method: str, url: str, body: dict | None):
        """The reply's JSON; ``Retryable`` for what another try may cure, ``Refused`` for the rest."""
        deadline = time.monotonic() + self.timeout
        for _ in range(MAX_REDIRECTS + 1):
            status, headers, data, target = self._exchange(method, url, body, deadline)
            if target is None:
                return self._judge(status, headers, data, url)
            if origin(target) != origin(url):
                raise Refused(f"HTTP {status} redirect to {self.redact(target)}, another origin; refused "
                              "(point base_url at the server itself)")
            url, method, body = target, (method if status in (307, 308) else "GET"), (body if status in (307, 308) else None)
        raise Refused(f"more than {MAX_REDIRECTS} redirects (a loop?), last to {self.redact(url)}")

    def _exchange(self, method: str, url: str, body: dict | None, deadline: float):
        """(status, headers, body bytes, redirect target or None), within the deadline."""
        import requests

        try:
            response = self.session.request(method, url, json=body, stream=True, allow_redirects=False,
                                            timeout=max(1e-3, deadline - time.monotonic()))
        except requests.Timeout:
            raise Retryable(f"no reply within {self.timeout:g} s") from None
        except requests.ConnectionError as err:
            raise Retryable(f"cannot reach the server ({connection_problem(err)})") from None
        except requests.RequestException as err:
            raise Refused(f"the request failed ({type(err).__name__})") from None
        with response:
            location = response.headers.get("Location") if response.is_redirect else None
            data = b"" if location else self._read(response, deadline)
            return response.status_code, response.headers, data, urljoin(url, location) if location else None

    def _read(self, response, deadline: float) -> bytes:
        import requests

        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_reply_bytes:
            raise Refused(f"a reply of {declared} bytes, over max_reply_bytes ({self.max_reply_bytes})")
        chunks, size = [], 0
        with Watchdog(response, deadline - time.monotonic()) as watchdog:
            try:
                for chunk in response.iter_content(CHUNK_BYTES):
                    size += len(chunk)
                    if size > self.max_reply_bytes:
                        raise Refused(f"a reply over max_reply_bytes ({self.max_reply_bytes} bytes)")
                    if time.monotonic() > deadline:
                        break
                    chunks.append(chunk)
            except (requests.RequestException, OSError) as err:
                if not watchdog.fired:
                    raise Retryable(f"the reply broke off ({type(err).__name__})") from None
        if watchdog.fired or time.monotonic() > deadline:
            raise Retryable(f"no whole reply within {self.timeout:g} s")
        return b"".join(chunks)

    def _judge(self, status: int, headers, data: bytes, url: str):
        if status in RETRIED_STATUS:
            raise Retryable(f"HTTP {status}: {self.redact(server_message(status, data))}",
                            retry_after(headers.get("Retry-After", ""), self.timeout))
        if not 200 <= status < 300:
            what, said = url.rstrip("/").rsplit("/", 1)[-1], self.redact(server_message(status, data))
            raise Refused(f"HTTP {status} for {what}: {said}", status, said)
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            raise Refused(f"a reply that is not JSON from {self.redact(url)}") from None
