"""Experts behind OpenAI-compatible chat endpoints (vLLM's or SGLang's server, llama.cpp's
``llama-server``, ``llama-cpp-python``'s server, a hosted API): the ``openai`` engine, named by a
pool entry's ``served:``.

Nothing loads: "loading" opens an HTTP session and checks that the server serves the model.
Requests go out from a thread pool, at most the entry's ``concurrency`` in flight, and each
reply is yielded (so cached) as it arrives: a kill or a dead server loses only the calls in
flight. Each request has one deadline and a size cap (``engines/http.py``). 429, 5xx, dropped
connections and timeouts are retried after 1, 2, 4 ... s (or the server's ``Retry-After``, at
most the deadline); anything else, a malformed reply included, is one line naming the expert and
the endpoint, with the server's own message where it sent one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Iterator, Sequence

from symoe_eval.engines.base import Completion, Engine, GenerationRequest, load_error
from symoe_eval.engines.http import Refused, Retryable, Transport, server_message
from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import ExpertSpec

log = logging.getLogger(__name__)

FIRST_WAIT_S = 1.0
MOST_TOKENS = 2**31  # a usage count at or above this is nonsense, read as unknown


def endpoint_root(base_url: str) -> str:
    """The server's root, where vLLM, SGLang and llama.cpp keep /tokenize and /detokenize."""
    return re.sub(r"/v1/?$", "", base_url.rstrip("/"))


def chat_body(model: str, request: GenerationRequest) -> dict:
    """The request as an OpenAI chat-completions body: sampling passed through, seed per request."""
    params = request.params
    body = {"model": model, "messages": request.chat(), "max_tokens": params.max_tokens,
            "temperature": params.temperature, "top_p": 1.0 if params.greedy else params.top_p}
    if params.stop:
        body["stop"] = list(params.stop)
    if request.seed is not None:
        body["seed"] = request.seed
    return body


def json_type(value) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean"}.get(type(value), "number" if isinstance(value, (int, float)) else "null")


def reply_problem(reply) -> str | None:
    """What makes a chat-completions reply unreadable, as one phrase; None when it reads."""
    if not isinstance(reply, dict):
        return f"a reply that is a JSON {json_type(reply)}, not an object"
    choices = reply.get("choices")
    if reply.get("error") and not choices:
        return f"the server's error: {server_message(200, json.dumps(reply).encode())}"
    if not isinstance(choices, list) or not choices:
        return "a reply without choices"
    first = choices[0]
    if not isinstance(first, dict) or not isinstance(first.get("message"), dict):
        return "a reply whose first choice has no message"
    content = first["message"].get("content")
    if content is not None and not isinstance(content, str):
        return f"a reply whose content is a JSON {json_type(content)}, not text"
    return None


def token_count(value) -> int | None:
    """A ``usage`` count: a non-negative integer of sane size, else None (unknown)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MOST_TOKENS else None


def read_reply(reply) -> tuple[Completion, bool]:
    """A chat-completions reply as a completion, tokens from the server's ``usage``; and whether
    that usage was readable (unreadable counts are 0)."""
    problem = reply_problem(reply)
    if problem:
        raise ValueError(problem)
    choice = reply["choices"][0]
    usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
    generated, prompt = token_count(usage.get("completion_tokens")), token_count(usage.get("prompt_tokens"))
    finish = choice.get("finish_reason")
    completion = Completion(text=choice["message"].get("content") or "", num_tokens=generated or 0,
                            finish_reason=finish if isinstance(finish, str) and finish else "stop", prompt_tokens=prompt or 0)
    return completion, generated is not None and prompt is not None


def token_ids(reply, field: str = "tokens") -> list[int]:
    ids = reply.get(field) if isinstance(reply, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"a tokenize reply without a list of token ids in '{field}'")
    return ids


class EstimatedTokenizer:
    """Token counts without the server's tokenizer: one token per two characters (real chat
    tokenizers average three to four on English, so prompts are fitted conservatively). Ids pack
    two characters each, so cut texts decode back exactly."""

    NONE = 0x1FFFFF  # above every code point: the second half of an odd text's last id

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [(ord(text[i]) << 21) | (ord(text[i + 1]) if i + 1 < len(text) else self.NONE) for i in range(0, len(text), 2)]

    def decode(self, ids: Sequence[int]) -> str:
        pairs = ((i >> 21, i & self.NONE) for i in ids)
        return "".join(chr(a) + (chr(b) if b != self.NONE else "") for a, b in pairs)

    def apply_chat_template(self, messages, tokenize: bool = False, add_generation_prompt: bool = True):
        text = "".join(f"<|start|>{m['role']}\n{m['content']}<|end|>\n" for m in messages)
        text += "<|start|>assistant\n" if add_generation_prompt else ""
        return self.encode(text) if tokenize else text


class ServerTokenizer:
    """Token counts by the server's own tokenizer, in the dialect it speaks: vLLM's and SGLang's
    ``/tokenize`` (``prompt`` or ``messages``), llama.cpp's ``/tokenize`` (``content``, with
    ``/apply-template`` for chat) or llama-cpp-python's ``/extras/tokenize`` (``input``). A server
    with none of them is counted by ``EstimatedTokenizer``, said once."""

    def __init__(self, engine: "ServedEngine"):
        self.engine = engine
        self.dialect: str | None = None  # "tokenize", "extras" or "estimate", found on first use
        self.template_route: str | None = None  # "apply-template", "tokenize" or "none"
        self.estimate = EstimatedTokenizer()

    def _post(self, path: str, body: dict):
        return self.engine.call_raw(path, body, root=True)

    @staticmethod
    def _tokenize_request(dialect: str, text: str) -> tuple[str, dict]:
        """The path and body that count ``text`` in a dialect (vLLM reads ``prompt``, llama.cpp
        ``content``: one body serves both)."""
        if dialect == "extras":
            return "/extras/tokenize", {"input": text, "add_special": False}
        return "/tokenize", {"prompt": text, "content": text, "add_special_tokens": False, "add_special": False}

    def _find_dialect(self, text: str) -> list[int]:
        for dialect in ("tokenize", "extras"):
            try:
                ids = token_ids(self._post(*self._tokenize_request(dialect, text)))
            except (Refused, ValueError):
                continue
            self.dialect = dialect
            return ids
        self.dialect = "estimate"
        log.warning("%s: the server at %s counts no tokens for us (no /tokenize or /extras/tokenize); prompts are "
                    "fitted by an estimate of 2 characters a token", self.engine.expert.name, endpoint_root(self.engine.endpoint.base_url))
        return self.estimate.encode(text)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if self.dialect is None:
            return self._find_dialect(text)
        if self.dialect == "estimate":
            return self.estimate.encode(text)
        return token_ids(self._post(*self._tokenize_request(self.dialect, text)))

    def decode(self, ids: Sequence[int]) -> str:
        if self.dialect is None:
            self.encode("")
        if self.dialect == "estimate":
            return self.estimate.decode(ids)
        reply = self._post("/extras/detokenize" if self.dialect == "extras" else "/detokenize", {"tokens": list(ids)})
        text = next((reply[k] for k in ("prompt", "content", "text") if isinstance(reply, dict) and isinstance(reply.get(k), str)), None)
        if text is None:
            raise self.engine._error("a detokenize reply without its text")
        return text

    def apply_chat_template(self, messages, tokenize: bool = False, add_generation_prompt: bool = True):
        """The server's chat template where it applies one for us (vLLM's /tokenize with
        ``messages``, llama.cpp's /apply-template), else the estimate's plain rendering."""
        text = self._server_template(messages, add_generation_prompt)
        if text is None:
            text = self.estimate.apply_chat_template(messages, False, add_generation_prompt)
        return self.encode(text) if tokenize else text

    def _server_template(self, messages, add_generation_prompt: bool) -> str | None:
        if self.dialect is None:
            self.encode("")
        for route in ([self.template_route] if self.template_route else ["apply-template", "tokenize"]):
            try:
                text = self._template_by(route, messages, add_generation_prompt)
            except (Refused, ValueError):
                continue
            self.template_route = route
            return text
        self.template_route = "none"
        return None

    def _template_by(self, route: str, messages, add_generation_prompt: bool) -> str:
        if self.dialect != "tokenize" or route == "none":
            raise ValueError("no template route")
        if route == "apply-template":  # llama.cpp
            reply = self._post("/apply-template", {"messages": messages})
            if not isinstance(reply, dict) or not isinstance(reply.get("prompt"), str):
                raise ValueError("an apply-template reply without a prompt")
            return reply["prompt"]
        body = {"messages": messages, "add_generation_prompt": add_generation_prompt, "add_special_tokens": False}
        return self.decode(token_ids(self._post("/tokenize", body)))  # vLLM, SGLang


class ServedEngine(Engine):
    """One served model. It holds no memory here, so schedulers never unload it to make room and
    run its groups beside the others; ``batch_size`` is 1: each reply is cached as it comes."""

    name = "openai"
    holds_memory = False
    load_cost_tokens = 0

    def __init__(self, expert: ExpertSpec, **kwargs):
        super().__init__(expert, **kwargs)
        if expert.served is None:
            raise SymoeError(f"expert '{expert.name}' has no served: entry (base_url, model) for engine=openai")
        self.endpoint = expert.served
        self.batch_size = 1
        self._transport: Transport | None = None
        self._listing: dict | None = None  # the server's /v1/models entry for this model
        self._tokenizer = None
        self._warned: set[str] = set()
        self.fitting = ""  # how prompts are fitted: which tokenizer

    # ---------------------------------------------------------------- HTTP

    def _error(self, what: str) -> SymoeError:
        text = f"expert '{self.expert.name}' at {self.endpoint.base_url} ({self.endpoint.model}): {what}"
        return SymoeError(self.transport.redact(text) if self._transport else text)

    def _key(self) -> str | None:
        env = self.endpoint.api_key_env
        if env and not os.environ.get(env):
            raise self._error(f"api_key_env names ${env}, which is not set")
        return os.environ[env] if env else None

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            import requests

            key = self._key()
            session = requests.Session()
            session.mount("http", requests.adapters.HTTPAdapter(pool_maxsize=int(self.endpoint.concurrency)))
            session.headers.update({"Authorization": f"Bearer {key}"} if key else {})
            self._transport = Transport(session, float(self.endpoint.timeout), int(self.endpoint.max_reply_bytes), key)
        return self._transport

    def call_raw(self, path: str, body: dict | None = None, root: bool = False):
        """POST ``body`` (GET without one) to ``path`` under the base URL (or the server's root),
        retrying what is worth retrying; the reply's JSON. A refusal stays ``Refused``."""
        url = (endpoint_root(self.endpoint.base_url) if root else self.endpoint.base_url.rstrip("/")) + path
        if body is not None and "model" not in body:
            body = {"model": self.endpoint.model, **body}
        tries = int(self.endpoint.max_retries) + 1
        for attempt in range(tries):
            try:
                return self.transport.request("POST" if body is not None else "GET", url, body)
            except Retryable as err:
                if attempt + 1 == tries:
                    raise self._error(f"{err} (after {tries} tries)") from None
                wait = err.wait if err.wait is not None else FIRST_WAIT_S * 2**attempt
                log.warning("%s: %s; retrying in %.0f s", self.expert.name, self.transport.redact(str(err)), wait)
                time.sleep(wait)

    def call(self, path: str, body: dict | None = None, root: bool = False):
        """``call_raw`` with a refusal as one line naming the expert and the endpoint."""
        try:
            return self.call_raw(path, body, root)
        except Refused as err:
            if err.status in (401, 403):
                key = f"the key in ${self.endpoint.api_key_env}" if self.endpoint.api_key_env else "no key (set api_key_env)"
                raise self._error(f"HTTP {err.status} with {key}: {err.said}") from None
            raise self._error(str(err)) from None

    # ---------------------------------------------------------------- the served model

    def listing(self) -> dict:
        """This model's entry in the server's /v1/models; a server that does not serve it is an error."""
        if self._listing is None:
            reply = self.call("/models")
            served = reply.get("data") if isinstance(reply, dict) else None
            if not isinstance(served, list):
                raise self._error(f"a /v1/models reply without a 'data' list (a JSON {json_type(reply)})")
            names = [m.get("id") for m in served if isinstance(m, dict)]
            if self.endpoint.model not in names:
                shown = ", ".join(str(n)[:80] for n in names[:20])
                raise self._error(f"the server serves {shown or 'no model'}, not '{self.endpoint.model}'")
            self._listing = served[names.index(self.endpoint.model)]
        return self._listing

    def _load(self) -> None:
        self.listing()

    def _unload(self) -> None:
        if self._transport is not None:
            self._transport.session.close()
            self._transport = None

    def _said_once(self, what: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning("%s at %s: %s", self.expert.name, self.endpoint.base_url, what)

    def server_context(self) -> int | None:
        """The context the server reports: vLLM's ``max_model_len`` in /v1/models, else
        llama.cpp's ``n_ctx`` in /props; a value that is not a positive integer is said once and ignored."""
        said = self.listing().get("max_model_len")
        if said is None:
            try:
                props = self.call_raw("/props", root=True)
            except (Refused, SymoeError):
                props = None
            settings = props.get("default_generation_settings") if isinstance(props, dict) else None
            said = next((d["n_ctx"] for d in (props, settings) if isinstance(d, dict) and "n_ctx" in d), None)
        if said is not None and not (token_count(said) or 0) > 0:
            self._said_once(f"the server reports a context of {str(said)[:40]!r}, not a positive integer; ignored")
            return None
        return said

    def declared_context_limit(self) -> int | None:
        """What the server says (``server_context``), else the pool's (``served.max_model_len``,
        then ``max_model_len`` in engine_kwargs)."""
        if self._context == 0:
            configured = self.endpoint.max_model_len or self.expert.engine_kwargs.get("max_model_len")
            self._context = int(self.server_context() or configured or 0) or None
        return self._context

    def describe_setup(self) -> dict:
        listing = self.listing()
        return {**super().describe_setup(), "endpoint": self.endpoint.base_url, "served_model": self.endpoint.model,
                "server_model": str(listing.get("root") or listing.get("id"))[:200], "max_model_len": self.declared_context_limit(),
                "owned_by": str(listing.get("owned_by", ""))[:80]}

    def load_tokenizer(self):
        """For fitting prompts: the pool's ``served.tokenizer``, else the tokenizer of the expert's
        weights where it has some here, else the server's /tokenize; which is logged once."""
        if self._tokenizer is None:
            self._tokenizer, self.fitting = self._pick_tokenizer()
            log.info("%s: prompts are fitted with %s", self.expert.name, self.fitting)
        return self._tokenizer

    def _pick_tokenizer(self):
        if self.endpoint.tokenizer:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(self.endpoint.tokenizer)
            except Exception as err:
                raise load_error(self.expert.name, self.endpoint.tokenizer, err) from err
            tokenizer.chat_template = self.expert.chat_template or tokenizer.chat_template
            return tokenizer, f"tokenizer {self.endpoint.tokenizer}"
        if self.expert.source is not None:
            from symoe_eval.engines.hf import HFEngine

            return HFEngine(self.expert).load_tokenizer(), "the tokenizer of its weights"
        return ServerTokenizer(self), f"the server's own tokenizer at {endpoint_root(self.endpoint.base_url)}"

    # ---------------------------------------------------------------- generation

    def _complete(self, request: GenerationRequest) -> Completion:
        try:
            completion, usage_read = read_reply(self.call("/chat/completions", chat_body(self.endpoint.model, request)))
        except ValueError as err:
            raise self._error(str(err)) from None
        if not usage_read:
            self._said_once("replies without a readable usage (non-negative integer token counts); their tokens count as 0")
        completion.text = self.transport.redact(completion.text)
        return completion

    def _generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Completion]]:
        """Up to ``concurrency`` requests in flight; replies in the order they arrive. After a
        failure nothing new is sent, the replies in flight are still yielded, then it is raised."""
        failure = None
        with ThreadPoolExecutor(int(self.endpoint.concurrency), thread_name_prefix=self.expert.name) as pool:
            futures = {pool.submit(self._complete, r): i for i, r in enumerate(requests)}
            try:
                for future in as_completed(futures):
                    if future.cancelled():
                        continue
                    if future.exception() is not None:
                        failure = failure or future.exception()
                        for pending in futures:
                            pending.cancel()
                        continue
                    self._budget_used(requests[futures[future]].params.max_tokens)
                    yield futures[future], future.result()
            finally:  # a consumer that stops early sends nothing more
                for pending in futures:
                    pending.cancel()
        if failure is not None:
            raise failure
