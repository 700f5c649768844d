"""Many workers through Ray: each stage's model groups spread over N engine actors.

``workers=N`` (or ``ray_address=...``) makes :class:`RunContext` hand out a :class:`RayScheduler`
instead of the in-process :class:`Scheduler`; both are ``StageScheduler`` s with one summary. The
driver plans each stage; the :class:`~symoe_eval.runtime.placement.Dispatcher` decides which
actor runs which chunk; each actor builds its engines with the run's one ``EngineFactory``, the
generation cache in front of them as in process, so cached calls load nothing and each finished
micro-batch is written once by the actor that made it (a killed driver or actor loses only what
was in flight). The driver holds the cache's generation locks of a stage's models with misses,
so its actors never wait for each other and another run on the cache waits for all of them. A
chunk whose actor dies is run again elsewhere (logged) on a fresh actor that takes its place.
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

from symoe_eval.engines import Completion, Engine, EngineFactory, GenerationRequest
from symoe_eval.engines.base import EngineStats
from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import ExpertSpec
from symoe_eval.runtime.placement import Chunk, Dispatcher, make_chunks
from symoe_eval.runtime.scheduling import Call, StageReport, StageScheduler
from symoe_eval.settings import DEFAULTS

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3  # a chunk whose workers die this often is an error, not bad luck
DEPTH = 2  # chunks queued per actor, so it never waits for the driver between two


class EngineWorker:
    """A Ray actor: keeps up to ``max_loaded`` engines, least recently used unloaded first."""

    def __init__(self, factory: EngineFactory, max_loaded: int):
        self.factory, self.max_loaded = factory, max_loaded
        self.engines: OrderedDict[str, Engine] = OrderedDict()

    def pid(self) -> int:
        return os.getpid()

    def generate(self, expert: ExpertSpec, requests: list[GenerationRequest]) -> tuple[list[Completion], EngineStats, dict]:
        engine = self.engines.pop(expert.name, None) or self.factory.build(expert)
        self.engines[expert.name] = engine
        must_load = not engine.loaded and engine.pending(requests) > 0
        while must_load and sum(e.loaded for e in self.engines.values()) >= self.max_loaded:
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


class RayScheduler(StageScheduler):
    """Stages over N Ray actors (see the module docstring)."""

    def __init__(self, experts: dict[str, ExpertSpec], factory: EngineFactory, workers: int, max_loaded: int,
                 progress: bool = True, ray_address: str | None = None, cpus_per_worker: float | None = None,
                 gpus_per_worker: float = 0):
        super().__init__(max_loaded, progress)
        self.experts, self.factory = experts, factory
        self.batch_size = int(factory.engine_args.get("batch_size", DEFAULTS.batch_size))  # the engines' micro-batch: chunks hold whole ones
        self.load_cost = factory.engine_cls.load_cost_tokens
        self._readers: dict[str, Engine] = {}  # never loaded: what the cache holds, and its locks
        self._stats: dict[str, EngineStats] = {}
        self._setups: dict[str, dict] = {}
        self._spawn = start_actors(replace(factory, driver_locks=True), max_loaded, ray_address, workers,
                                   cpus_per_worker, gpus_per_worker)
        self.workers = [WorkerState(f"worker-{i}", self._spawn()) for i in range(workers)]

    # ---------------------------------------------------------------- one stage

    def run(self, stage: str, calls: Sequence[Call], later=()) -> dict[Hashable, Completion]:
        started = time.perf_counter()
        groups: dict[str, list[int]] = {}
        for i, call in enumerate(calls):
            groups.setdefault(call.expert, []).append(i)
        results: dict[Hashable, Completion] = {}
        with contextlib.ExitStack() as held:  # another run generating one of these models: wait, then read its work
            for model in sorted(groups):  # in name order, so two drivers never deadlock
                if model not in self._readers:
                    self._readers[model] = self.factory.build(self.experts[model])
                reader = self._readers[model]
                if reader.pending([calls[i].request for i in groups[model]]):
                    held.enter_context(reader.generating())
            requests = [c.request for c in calls]
            chunks = [c for model, idx in groups.items() for c in make_chunks(model, idx, requests, self.batch_size,
                                                                              len(self.workers))]
            with tqdm(total=len(calls), desc=stage, disable=not self.progress, leave=False) as bar:
                self._drive(Dispatcher(chunks, self.load_cost), calls, results, bar)
        self.stages.append(StageReport(stage, time.perf_counter() - started, len(calls), sorted(groups)))
        self.stages[-1].count(results)
        for worker in self.workers:
            self.stages[-1].order.append(f"{worker.name}: {', '.join(worker.holds) or '-'}")
        return results

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
            if setup:  # a chunk of cache hits loads nothing and says nothing
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
        self._stats.setdefault(chunk.model, EngineStats()).add(stats)
        for i, completion in zip(chunk.indices, completions):
            results[calls[i].key] = completion

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

    def placement(self) -> dict:
        wall = sum(s.seconds for s in self.stages)
        return {
            "workers": [{"name": w.name, "loads": dict(sorted(w.loads.items())), "calls": w.calls, "generated_tokens": w.generated_tokens,
                         "busy_seconds": round(w.busy_seconds, 2), "idle_seconds": round(max(0.0, wall - w.busy_seconds), 2),
                         "restarts": w.restarts} for w in self.workers],
        }


def start_actors(factory: EngineFactory, max_loaded: int, ray_address: str | None, workers: int,
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
    threads = factory.engine_args.get("threads") or max(1, int(cpus))
    env = {"OMP_NUM_THREADS": str(threads)} if cpus >= 1 and not gpus_per_worker else {}
    remote = ray.remote(EngineWorker).options(num_cpus=cpus, num_gpus=gpus_per_worker, max_restarts=0,
                                              runtime_env={"env_vars": env})
    return lambda: remote.remote(factory, max_loaded)
