"""Which worker runs which model's work, so a stage finishes soonest: pure, no Ray, no models.

A stage's pending requests are cut into chunks of whole micro-batches (what a killed worker or
driver can lose). Idle workers ask the :class:`Dispatcher` for their next chunk:

1. a chunk of a model the worker already holds (no load), the model with most work left first;
2. else a model nobody works on yet, the one with most work first (longest processing time
   first, counting its load);
3. else a share of the model whose finish it brings forward most, but only when joining beats
   leaving it to the workers already on it even after paying a load (a split): with k workers
   on it and ``left`` work pending, when k x load < left.

So loads across workers stay at most the distinct models plus the splits.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Sequence

from symoe_eval.engines import GenerationRequest
from symoe_eval.engines.batching import micro_batches

# Prefill is far cheaper per token than decoding; a prompt character costs this many decode tokens.
PROMPT_CHAR_WEIGHT = 0.025


def request_work(request: GenerationRequest) -> float:
    """Estimated cost of one request in decode-token units: its budget plus a share for its prompt."""
    return request.params.max_tokens + PROMPT_CHAR_WEIGHT * sum(len(text) for _, text in request.messages)


@dataclass
class Chunk:
    model: str
    indices: list[int]  # positions in the stage's list of calls
    work: float
    attempts: int = 0


def make_chunks(model: str, indices: Sequence[int], requests: Sequence[GenerationRequest], size: int,
                workers: int = 1) -> list[Chunk]:
    """One model's pending calls in chunks of whole micro-batches (``engines.batching``: each
    request meets the same batch-mates however many workers share the stage): one batch, or a
    quarter of a worker's share of a large group, so the driver is not the bottleneck; fewer
    towards the end (guided self-scheduling, ``remaining / (2 x workers)``) so the workers
    sharing a model finish together. The longest batches go first."""
    batches = [[indices[j] for j in batch] for batch in micro_batches([requests[i] for i in indices], size)]
    batches.sort(key=lambda batch: -sum(request_work(requests[i]) for i in batch))
    cap = max(1, -(-len(batches) // (4 * workers)))
    chunks, start = [], 0
    while start < len(batches):
        take = max(1, min(cap, -(-(len(batches) - start) // (2 * workers))))
        picked = [i for batch in batches[start : start + take] for i in batch]
        chunks.append(Chunk(model, picked, sum(request_work(requests[i]) for i in picked)))
        start += take
    return chunks


@dataclass
class Dispatcher:
    chunks: list[Chunk]
    load_cost: float  # a model load, in the same units as chunk work
    pending: dict[str, deque] = field(default_factory=dict)
    active: dict[str, Counter] = field(default_factory=dict)  # model -> worker -> its chunks in flight

    def __post_init__(self):
        for chunk in sorted(self.chunks, key=lambda c: -c.work):
            self.pending.setdefault(chunk.model, deque()).append(chunk)
            self.active.setdefault(chunk.model, Counter())

    def remaining(self, model: str) -> float:
        return sum(c.work for c in self.pending.get(model, ()))

    @property
    def done(self) -> bool:
        return not any(self.pending.values()) and not any(self.active.values())

    def next_for(self, worker: str, holds: Sequence[str], held_elsewhere: Sequence[str] = ()) -> Chunk | None:
        """The next chunk for an idle ``worker`` holding ``holds`` (None: nothing worth taking)."""
        waiting = [m for m, q in self.pending.items() if q]
        own = [m for m in waiting if m in holds]
        fresh = [m for m in waiting if not self.active[m]]
        if own:
            model = max(own, key=self.remaining)
        elif fresh:
            unheld = [m for m in fresh if m not in held_elsewhere] or fresh
            model = max(unheld, key=self.remaining)
        elif waiting:
            model = max(waiting, key=lambda m: self.remaining(m) / len(self.active[m]))
            # k workers finish the rest at left / k; one more, which starts after its load, at
            # (left + load) / (k + 1): earlier exactly when k x load < left
            if len(self.active[model]) * self.load_cost >= self.remaining(model):
                return None
        else:
            return None
        self.active[model][worker] += 1
        return self.pending[model].popleft()

    def _release(self, worker: str, chunk: Chunk) -> None:
        self.active[chunk.model][worker] -= 1
        if self.active[chunk.model][worker] <= 0:
            del self.active[chunk.model][worker]

    def finished(self, worker: str, chunk: Chunk) -> None:
        self._release(worker, chunk)

    def failed(self, worker: str, chunk: Chunk) -> None:
        """Put a lost chunk back at the front, to be run again by another worker."""
        self._release(worker, chunk)
        chunk.attempts += 1
        self.pending[chunk.model].appendleft(chunk)
