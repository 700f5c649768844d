"""Many workers through Ray: each stage's model groups spread over N engine actors.

``workers=N`` (or ``ray_address=...``) makes :class:`RunContext` hand out a :class:`RayScheduler`
instead of the in-process :class:`Scheduler`. The driver still plans each stage; the
:class:`~symoe_eval.runtime.placement.Dispatcher` decides which actor runs which chunk; each actor holds
engines built from the same engine classes, with no cache of its own. The driver alone reads and
writes the generation cache (actors never interleave lines), one chunk at a time, so a killed
driver loses only the chunks in flight. A chunk whose actor dies is run again elsewhere (logged)
on a fresh actor that takes the dead one's place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Hashable, Sequence

from tqdm import tqdm

from symoe_eval.engines import Completion, Engine, GenerationCache, GenerationRequest
from symoe_eval.engines.base import EngineStats
from symoe_eval.engines.cache import request_key
from symoe_eval.errors import SymoeError
from symoe_eval.runtime.placement import Chunk, Dispatcher, make_chunks
from symoe_eval.pools.schema import ExpertSpec
from symoe_eval.runtime.scheduling import Call, Scheduler, StageReport

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a chunk whose workers die this often is an error, not bad luck
DEPTH = 2  # chunks queued per actor, so it never waits for the driver between two


class EngineWorker:
    """A Ray actor: keeps up to ``max_loaded`` engines, least recently used unloaded first."""

    def __init__(self, engine_cls: type[Engine], engine_kwargs: dict, max_loaded: int):
        self.engine_cls, self.engine_kwargs, self.max_loaded = engine_cls, engine_kwargs, max_loaded
        self.engines: OrderedDict[str, Engine] = OrderedDict()

    def pid(self) -> int:
        return os.getpid()

    def generate(self, expert: ExpertSpec, requests: list[GenerationRequest]) -> tuple[list[Completion], EngineStats, dict]:
        engine = self.engines.pop(expert.name, None) or self.engine_cls(expert, **self.engine_kwargs)
        self.engines[expert.name] = engine
        while sum(e.loaded for e in self.engines.values()) >= self.max_loaded and not engine.loaded:
            victim = next(e for e in self.engines.values() if e.loaded)
            victim.unload()
        before = replace(engine.stats)
        completions = engine.generate(requests)
        return completions, engine.stats.since(before), engine.loaded_setup()

    def close(self) -> None:
        for engine in self.engines.values():
            if engine.loaded:
                engine.unload()


@dataclass
class WorkerState:
    name: str
    actor: object
    holds: list[str] = field(default_factory=list)
    loads: dict[str, int] = field(default_factory=dict)  # model -> loads on this worker
    calls: int = 0
    generated_tokens: int = 0
    busy_seconds: float = 0.0
    restarts: int = 0
    last_done: float = 0.0  # when its last chunk came back: queued chunks wait, not work


class RayScheduler(Scheduler):
    """The :class:`Scheduler` interface (``run``, ``summary``, ``with``) over N Ray actors."""

    def __init__(self, experts: dict[str, ExpertSpec], engine_cls: type[Engine], engine_kwargs: dict,
                 cache_dir=None, workers: int = 2, max_loaded: int = 1, progress: bool = True,
                 ray_address: str | None = None, cpus_per_worker: float | None = None, gpus_per_worker: float = 0):
        super().__init__(None, max_loaded, progress)  # engines live in the actors, not here
        self.experts, self.cache = experts, GenerationCache(cache_dir) if cache_dir else None
        self.batch_size = int(engine_kwargs.get("batch_size", 8))  # the engines' micro-batch: chunks hold whole ones
        self.load_cost = engine_cls.load_cost_tokens
        self._stats: dict[str, EngineStats] = {}
        self._setups: dict[str, dict] = {}
        self._spawn = start_actors(engine_cls, engine_kwargs, max_loaded, ray_address, workers, cpus_per_worker, gpus_per_worker)
        self.workers = [WorkerState(f"worker-{i}", self._spawn()) for i in range(workers)]

    # ---------------------------------------------------------------- one stage

    def run(self, stage: str, calls: Sequence[Call], later=()) -> dict[Hashable, Completion]:
        started = time.perf_counter()
        with contextlib.ExitStack() as held:  # another run on the cache generating a model: wait, then read its work
            for model in self._models_to_generate(calls):  # in name order, so two drivers never deadlock
                held.enter_context(self.cache.generating(model))
            results, chunks = self._serve_from_cache(calls)
            dispatcher = Dispatcher(chunks, self.load_cost)
            with tqdm(total=len(calls), initial=len(results), desc=stage, disable=not self.progress, leave=False) as bar:
                self._drive(dispatcher, calls, results, bar)
        self.stages.append(StageReport(stage, time.perf_counter() - started, len(calls), sorted({c.expert for c in calls})))
        self.stages[-1].count(results)
        for worker in self.workers:
            self.stages[-1].order.append(f"{worker.name}: {', '.join(worker.holds) or '-'}")
        return results

    def _models_to_generate(self, calls: Sequence[Call]) -> list[str]:
        if not self.cache:
            return []
        return sorted({c.expert for c in calls
                       if request_key(self.experts[c.expert], c.request) not in self.cache.entries(c.expert)})

    def _serve_from_cache(self, calls: Sequence[Call]) -> tuple[dict, list[Chunk]]:
        results, pending = {}, {}
        for i, call in enumerate(calls):
            stats = self._stats.setdefault(call.expert, EngineStats())
            hit = self.cache.get(call.expert, request_key(self.experts[call.expert], call.request)) if self.cache else None
            if hit is None:
                pending.setdefault(call.expert, []).append(i)
            else:
                stats.count_hit(hit)
                results[call.key] = hit
        requests = [c.request for c in calls]
        chunks = [c for model, idx in pending.items()
                  for c in make_chunks(model, idx, requests, self.batch_size, len(self.workers))]
        return results, chunks

    def _drive(self, dispatcher: Dispatcher, calls: Sequence[Call], results: dict, bar) -> None:
        import ray

        in_flight: dict = {}  # future -> (worker, chunk, started)
        while not dispatcher.done:
            for worker in self.workers:
                queued = [c for w, c, _ in in_flight.values() if w is worker]
                if len(queued) >= DEPTH:
                    continue
                holds = worker.holds + [c.model for c in queued]
                others = [m for w in self.workers if w is not worker for m in w.holds]
                chunk = dispatcher.next_for(worker.name, holds[-self.max_loaded:] if queued else holds, others)
                if chunk is not None:
                    requests = [calls[i].request for i in chunk.indices]
                    future = worker.actor.generate.remote(self.experts[chunk.model], requests)
                    in_flight[future] = (worker, chunk, time.perf_counter())
            if not in_flight:
                raise SymoeError("no worker can take the remaining work")  # a policy bug, never silent
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            worker, chunk, began = in_flight.pop(ready[0])
            try:
                completions, stats, setup = ray.get(ready[0])
            except ray.exceptions.RayActorError as err:
                queued = [f for f, (w, _, _) in in_flight.items() if w is worker]
                self._replace(worker, [chunk] + [in_flight.pop(f)[1] for f in queued], dispatcher, err)
                continue
            now = time.perf_counter()
            self._setups[chunk.model] = setup
            self._record(worker, chunk, calls, completions, stats, now - max(began, worker.last_done), results)
            worker.last_done = now
            dispatcher.finished(worker.name, chunk)
            bar.update(len(chunk.indices))

    def _record(self, worker: WorkerState, chunk: Chunk, calls, completions, stats: EngineStats, seconds: float,
                results) -> None:
        worker.busy_seconds += seconds
        if stats.loads:
            worker.loads[chunk.model] = worker.loads.get(chunk.model, 0) + stats.loads
        worker.calls += stats.calls
        worker.generated_tokens += stats.generated_tokens
        if chunk.model not in worker.holds:
            worker.holds = ([m for m in worker.holds if m != chunk.model] + [chunk.model])[-self.max_loaded:]
        self._stats[chunk.model].add(stats)
        for i, completion in zip(chunk.indices, completions):
            results[calls[i].key] = completion
        if self.cache:  # a chunk is whole micro-batches: one write
            self.cache.put(chunk.model, [(request_key(self.experts[chunk.model], calls[i].request), completion)
                                         for i, completion in zip(chunk.indices, completions)])

    def _replace(self, worker: WorkerState, lost: list[Chunk], dispatcher: Dispatcher, err: Exception) -> None:
        """A dead actor's chunks (running and queued) go back to the queue; a fresh actor takes its place."""
        for chunk in lost:
            dispatcher.failed(worker.name, chunk)
            if chunk.attempts >= MAX_ATTEMPTS:
                raise SymoeError(f"{chunk.model}: {chunk.attempts} workers died running the same calls; last: "
                                 f"{str(err).splitlines()[0][:200]}")
        log.warning("%s died with %d call(s) of %s unfinished; running them again and starting a replacement",
                    worker.name, sum(len(c.indices) for c in lost), ", ".join(sorted({c.model for c in lost})))
        worker.actor, worker.holds, worker.restarts = self._spawn(), [], worker.restarts + 1

    # ---------------------------------------------------------------- the run

    def close(self) -> None:
        import ray

        for worker in self.workers:
            try:
                ray.get(worker.actor.close.remote())
                ray.kill(worker.actor)
            except ray.exceptions.RayActorError:
                pass
            worker.holds = []

    def model_stats(self) -> dict[str, EngineStats]:
        return self._stats

    def model_setups(self) -> dict[str, dict]:
        return self._setups

    def summary(self) -> dict:
        wall = sum(s.seconds for s in self.stages)
        return {
            **super().summary(),
            "workers": [{"name": w.name, "loads": dict(sorted(w.loads.items())), "calls": w.calls, "generated_tokens": w.generated_tokens,
                         "busy_seconds": round(w.busy_seconds, 2), "idle_seconds": round(max(0.0, wall - w.busy_seconds), 2),
                         "restarts": w.restarts} for w in self.workers],
        }


def start_actors(engine_cls, engine_kwargs: dict, max_loaded: int, ray_address: str | None, workers: int,
                 cpus_per_worker: float | None, gpus_per_worker: float):
    """Join (or start) Ray and return a function that starts one engine actor. On CPU each actor
    gets a share of the cores, and torch uses that many threads (OMP_NUM_THREADS), or ``threads``."""
    try:
        import ray
    except ImportError:
        raise SymoeError("workers > 1 needs Ray: pip install 'symoe-eval[ray]'") from None
    if not ray.is_initialized():
        if ray_address:
            ray.init(address=ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(workers, os.cpu_count() or 1), num_gpus=None, include_dashboard=False,
                     log_to_driver=False)
    cpus = cpus_per_worker if cpus_per_worker is not None else max(1.0, ray.cluster_resources().get("CPU", 1) // workers)
    threads = engine_kwargs.get("threads") or max(1, int(cpus))
    env = {"OMP_NUM_THREADS": str(threads)} if cpus >= 1 and not gpus_per_worker else {}
    remote = ray.remote(EngineWorker).options(num_cpus=cpus, num_gpus=gpus_per_worker, max_restarts=0,
                                              runtime_env={"env_vars": env})
    return lambda: remote.remote(engine_cls, engine_kwargs, max_loaded)
