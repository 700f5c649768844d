"""A jsonlines generation cache in front of any engine, so a killed run resumes for free.

Keys cover everything that determines a generation: the expert and its weights, the chat
messages, the sampling parameters and the sample index. Each finished micro-batch is appended
at once; the model is not even loaded when every request is already cached.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Sequence

import jsonlines

from symoe_eval.engines.base import Completion, Engine, GenerationRequest


def request_key(engine: Engine, request: GenerationRequest) -> str:
    expert = engine.expert
    payload = {
        "expert": expert.name,
        "model": expert.model,
        "weights": asdict(expert.source),
        "messages": request.messages,
        "params": asdict(request.params),
        "sample": request.sample_index,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class GenerationCache:
    """One jsonlines file per expert under ``directory``; tolerant of a torn last line."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._entries: dict[str, dict[str, dict]] = {}
        self._lock = threading.Lock()

    def _file(self, expert: str) -> Path:
        return self.directory / f"{expert}.jsonl"

    def entries(self, expert: str) -> dict[str, dict]:
        if expert not in self._entries:
            found: dict[str, dict] = {}
            path = self._file(expert)
            if path.exists():
                with open(path) as fh:
                    for line in fh:
                        try:
                            row = json.loads(line)
                            found[row["key"]] = row
                        except (ValueError, KeyError):
                            continue  # a run killed mid-write leaves a partial line
            self._entries[expert] = found
        return self._entries[expert]

    def get(self, expert: str, key: str) -> Completion | None:
        row = self.entries(expert).get(key)
        if row is None:
            return None
        return Completion(row["text"], row["num_tokens"], row.get("finish_reason", "stop"), cached=True)

    def put(self, expert: str, key: str, completion: Completion) -> None:
        row = {
            "key": key,
            "text": completion.text,
            "num_tokens": completion.num_tokens,
            "finish_reason": completion.finish_reason,
        }
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with jsonlines.open(self._file(expert), mode="a", flush=True) as writer:
                writer.write(row)
            self.entries(expert)[key] = row


class CachedEngine(Engine):
    """Serves cached requests itself and hands only the misses to the wrapped engine."""

    def __init__(self, inner: Engine, cache: GenerationCache):
        super().__init__(inner.expert)
        self.inner = inner
        self.cache = cache
        self.stats = inner.stats
        self.backend = inner.backend

    @property
    def loaded(self) -> bool:
        return self.inner.loaded

    def load(self) -> None:  # lazily, by the first miss
        pass

    def unload(self) -> None:
        if self.inner.loaded:
            self.inner.unload()

    def report_budget_to(self, callback) -> None:
        super().report_budget_to(callback)
        self.inner.report_budget_to(callback)

    def pending(self, requests: Sequence[GenerationRequest]) -> int:
        """How many of ``requests`` would reach the model."""
        entries = self.cache.entries(self.expert.name)
        return sum(request_key(self.inner, r) not in entries for r in requests)

    def iter_generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Completion]]:
        keys = [request_key(self.inner, r) for r in requests]
        misses = []
        for i, key in enumerate(keys):
            hit = self.cache.get(self.expert.name, key)
            if hit is None:
                misses.append(i)
            else:
                self.stats.cached_calls += 1
                self._budget_used(requests[i].params.max_tokens)
                yield i, hit
        if not misses:
            return
        for j, completion in self.inner.iter_generate([requests[i] for i in misses]):
            i = misses[j]
            self.cache.put(self.expert.name, keys[i], completion)
            yield i, completion
