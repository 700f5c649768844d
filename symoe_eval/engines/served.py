"""Experts behind OpenAI-compatible chat endpoints (vLLM's or SGLang's server, a llama.cpp
server, a hosted API): the ``openai`` engine, named by a pool entry's ``served:``.

Nothing loads: "loading" opens an HTTP session and checks that the server serves the model.
Requests go out from a thread pool, at most the entry's ``concurrency`` in flight, and each
reply is yielded (so cached) as it arrives: a kill or a dead server loses only the calls in
flight. 429, 5xx, dropped connections and timeouts are retried after 1, 2, 4 ... s (or the
server's ``Retry-After``); anything else is one line naming the expert and the endpoint.
"""

from __future__ import annotations

import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Iterator, Sequence

from symoe_eval.engines.base import Completion, Engine, GenerationRequest, load_error
from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import ExpertSpec

log = logging.getLogger(__name__)

RETRIED_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
FIRST_WAIT_S = 1.0


class Retryable(Exception):
    """A failure worth another try; ``wait`` is the server's Retry-After, if it sent one."""

    def __init__(self, what: str, wait: float | None = None):
        super().__init__(what)
        self.wait = wait


def endpoint_root(base_url: str) -> str:
    """The server's root, where vLLM and SGLang keep /tokenize and /detokenize."""
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


def read_reply(reply) -> Completion:
    """A chat-completions reply as a completion, tokens from the server's ``usage``."""
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
        raise ValueError("a reply without choices")
    usage = reply.get("usage") or {}
    return Completion(text=choices[0]["message"].get("content") or "", num_tokens=int(usage.get("completion_tokens") or 0),
                      finish_reason=choices[0].get("finish_reason") or "stop",
                      prompt_tokens=int(usage.get("prompt_tokens") or 0))


def server_message(response) -> str:
    """The first line of what a refusing server said (OpenAI's and vLLM's ``error.message``)."""
    try:
        body = response.json()
        error = body.get("error", body) if isinstance(body, dict) else body
        text = error.get("message", error) if isinstance(error, dict) else error
    except ValueError:
        text = response.text
    return (str(text).strip().splitlines() or [response.reason or ""])[0][:200]


def connection_problem(err: Exception) -> str:
    """``requests``' nested connection error as its cause (``[Errno 111] Connection refused``)."""
    found = re.search(r"\[Errno -?\d+\][^'\")]*", str(err))
    return found.group(0).strip() if found else type(err).__name__


class ServerTokenizer:
    """Token counts by the server's own /tokenize and /detokenize (vLLM, SGLang): the ids its
    model reads. What prompt fitting uses when the pool names no tokenizer and has no weights."""

    def __init__(self, engine: "ServedEngine"):
        self.engine = engine

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.engine.call("/tokenize", {"prompt": text, "add_special_tokens": add_special_tokens}, root=True)["tokens"]

    def decode(self, ids: Sequence[int]) -> str:
        return self.engine.call("/detokenize", {"tokens": list(ids)}, root=True)["prompt"]

    def apply_chat_template(self, messages, tokenize: bool = False, add_generation_prompt: bool = True):
        body = {"messages": messages, "add_generation_prompt": add_generation_prompt, "add_special_tokens": False}
        ids = self.engine.call("/tokenize", body, root=True)["tokens"]
        return ids if tokenize else self.decode(ids)


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
        self._session = None
        self._listing: dict | None = None  # the server's /v1/models entry for this model
        self._tokenizer = None
        self.fitting = ""  # how prompts are fitted: which tokenizer

    # ---------------------------------------------------------------- HTTP

    def _error(self, what: str) -> SymoeError:
        return SymoeError(f"expert '{self.expert.name}' at {self.endpoint.base_url} ({self.endpoint.model}): {what}")

    def _headers(self) -> dict:
        env = self.endpoint.api_key_env
        if not env:
            return {}
        if not os.environ.get(env):
            raise self._error(f"api_key_env names ${env}, which is not set")
        return {"Authorization": f"Bearer {os.environ[env]}"}

    @property
    def session(self):
        if self._session is None:
            import requests

            session = requests.Session()
            session.mount("http", requests.adapters.HTTPAdapter(pool_maxsize=int(self.endpoint.concurrency)))
            session.headers.update(self._headers())
            self._session = session
        return self._session

    def _send_once(self, method: str, url: str, body: dict | None):
        import requests

        try:
            response = self.session.request(method, url, json=body, timeout=self.endpoint.timeout)
        except requests.Timeout:
            raise Retryable(f"no reply within {self.endpoint.timeout:g} s") from None
        except requests.ConnectionError as err:
            raise Retryable(f"cannot reach the server ({connection_problem(err)})") from None
        if response.status_code in RETRIED_STATUS:
            wait = response.headers.get("Retry-After", "")
            raise Retryable(f"HTTP {response.status_code}: {server_message(response)}",
                            float(wait) if wait.replace(".", "", 1).isdigit() else None)
        if response.status_code in (401, 403):
            key = f"the key in ${self.endpoint.api_key_env}" if self.endpoint.api_key_env else "no key (set api_key_env)"
            raise self._error(f"HTTP {response.status_code} with {key}: {server_message(response)}")
        if not response.ok:
            raise self._error(f"HTTP {response.status_code} for {url.rsplit('/', 1)[-1]}: {server_message(response)}")
        try:
            return response.json()
        except ValueError:
            raise self._error(f"a reply that is not JSON from {url}") from None

    def call(self, path: str, body: dict | None = None, root: bool = False):
        """POST ``body`` (GET without one) to ``path`` under the base URL (or the server's root),
        retrying what is worth retrying; the reply's JSON."""
        url = (endpoint_root(self.endpoint.base_url) if root else self.endpoint.base_url.rstrip("/")) + path
        if body is not None and "model" not in body:
            body = {"model": self.endpoint.model, **body}
        tries = int(self.endpoint.max_retries) + 1
        for attempt in range(tries):
            try:
                return self._send_once("POST" if body is not None else "GET", url, body)
            except Retryable as err:
                if attempt + 1 == tries:
                    raise self._error(f"{err} (after {tries} tries)") from None
                wait = err.wait if err.wait is not None else FIRST_WAIT_S * 2**attempt
                log.warning("%s: %s; retrying in %.0f s", self.expert.name, err, wait)
                time.sleep(wait)

    # ---------------------------------------------------------------- the served model

    def listing(self) -> dict:
        """This model's entry in the server's /v1/models; a server that does not serve it is an error."""
        if self._listing is None:
            served = self.call("/models").get("data") or []
            names = [m.get("id") for m in served if isinstance(m, dict)]
            if self.endpoint.model not in names:
                raise self._error(f"the server serves {', '.join(map(str, names)) or 'no model'}, not '{self.endpoint.model}'")
            self._listing = served[names.index(self.endpoint.model)]
        return self._listing

    def _load(self) -> None:
        self.listing()

    def _unload(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def declared_context_limit(self) -> int | None:
        """What the server says (vLLM's ``max_model_len``), else the pool's (``served.max_model_len``,
        then ``max_model_len`` in engine_kwargs)."""
        if self._context == 0:
            said = self.listing().get("max_model_len")
            configured = self.endpoint.max_model_len or self.expert.engine_kwargs.get("max_model_len")
            self._context = int(said or configured or 0) or None
        return self._context

    def describe_setup(self) -> dict:
        listing = self.listing()
        return {**super().describe_setup(), "endpoint": self.endpoint.base_url, "served_model": self.endpoint.model,
                "server_model": listing.get("root") or listing.get("id"), "max_model_len": self.declared_context_limit(),
                "owned_by": listing.get("owned_by", "")}

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
        return ServerTokenizer(self), f"the server's {endpoint_root(self.endpoint.base_url)}/tokenize"

    # ---------------------------------------------------------------- generation

    def _complete(self, request: GenerationRequest) -> Completion:
        try:
            return read_reply(self.call("/chat/completions", chat_body(self.endpoint.model, request)))
        except ValueError as err:
            raise self._error(str(err)) from None

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
