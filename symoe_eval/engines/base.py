"""The engine interface: load one expert, generate a batch of chat requests, unload.

A scheduler holds one engine at a time, so each model is loaded once and runs its whole group
of requests as one batch (the point of Symbolic-MoE's expert-grouped inference).
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from symoe_eval.registry import ExpertSpec

log = logging.getLogger(__name__)

Message = tuple[str, str]  # (role, content)


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 4096
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class GenerationRequest:
    """One call to one expert; ``sample_index`` tells repeated samples of one prompt apart."""

    messages: tuple[Message, ...]
    params: SamplingParams = SamplingParams()
    sample_index: int = 0

    @classmethod
    def user(cls, prompt: str, params: SamplingParams = SamplingParams(), sample_index: int = 0):
        return cls((("user", prompt),), params, sample_index)

    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    @property
    def seed(self) -> int | None:
        """This request's own sampling seed, derived from (run seed, messages, sample index):
        repeated samples of one prompt differ, and the same request draws the same text again
        whatever shares its batch. The one place seeds are made; every engine uses it."""
        if self.params.seed is None:
            return None
        payload = json.dumps([self.params.seed, self.messages, self.sample_index])
        return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:4], "big") & 0x7FFFFFFF


@dataclass
class Completion:
    text: str
    num_tokens: int
    finish_reason: str = "stop"  # "stop" or "length"
    cached: bool = False


@dataclass
class EngineStats:
    loads: int = 0
    load_seconds: float = 0.0
    calls: int = 0
    cached_calls: int = 0
    generated_tokens: int = 0
    generate_seconds: float = 0.0
    truncated_prompts: int = 0


class Engine(ABC):
    """Generates for one expert. Use as a context manager: load on enter, free memory on exit."""

    backend = "abstract"

    def __init__(self, expert: ExpertSpec):
        self.expert = expert
        self.stats = EngineStats()
        self._on_budget: Callable[[int], None] | None = None

    def report_budget_to(self, callback: Callable[[int], None] | None) -> None:
        """Progress inside a long micro-batch: ``callback(n)`` hears of ``n`` more tokens of the
        requests' ``max_tokens`` budget used up (decoded, or left unused by a finished batch)."""
        self._on_budget = callback

    def _budget_used(self, n: int) -> None:
        if self._on_budget is not None and n > 0:
            self._on_budget(n)

    @abstractmethod
    def load(self) -> None: ...

    @abstractmethod
    def unload(self) -> None: ...

    @property
    @abstractmethod
    def loaded(self) -> bool: ...

    def load_tokenizer(self):
        """The expert's tokenizer (``encode``, ``decode``, ``apply_chat_template``), loadable
        without the model, so prompts can be fitted to the context before any model loads."""
        raise NotImplementedError(f"{type(self).__name__} cannot count tokens")

    @abstractmethod
    def iter_generate(
        self, requests: Sequence[GenerationRequest]
    ) -> Iterator[tuple[int, Completion]]:
        """Yield ``(index into requests, completion)`` as soon as each micro-batch finishes."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        out: list[Completion | None] = [None] * len(requests)
        for i, completion in self.iter_generate(requests):
            out[i] = completion
        return out  # type: ignore[return-value]

    def __enter__(self):
        if not self.loaded:
            self.load()
        return self

    def __exit__(self, *exc):
        if self.loaded:
            self.unload()
        return False


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the first stop string; lm-eval's convention for ``until``."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
