"""Expert-grouped execution: plan every call of a stage, group by model, load each model once.

Stages run in order (keywords, experts, aggregation, or a baseline's rounds). Within a stage the
groups are ordered so that a model already loaded goes first and a model the next stage needs
goes last; with ``max_loaded`` > 1 a model needed again later stays resident, and when room is
needed the loaded model whose next use is farthest away is unloaded (Belady's rule). Served
models hold no memory here: their groups run at the same time as the rest, each server kept
busy up to its own concurrency, and they never count against ``max_loaded``.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

from tqdm import tqdm

from symoe_eval.engines import Completion, Engine, GenerationRequest
from symoe_eval.engines.base import EngineStats
from symoe_eval.runoutput import MODEL_STATS, SUMMARY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Call:
    key: Hashable  # the caller's handle for the result
    expert: str
    request: GenerationRequest


@dataclass
class StageReport:
    name: str
    seconds: float = 0.0
    calls: int = 0
    order: list[str] = field(default_factory=list)
    prompt_tokens: int = 0  # read by the engines (cache hits read nothing)
    generated_tokens: int = 0  # generated in this run (cache hits excluded)

    def count(self, results: dict[Hashable, Completion]) -> None:
        self.prompt_tokens = sum(c.prompt_tokens for c in results.values())
        self.generated_tokens = sum(c.num_tokens for c in results.values() if not c.cached)


def following_stages(later: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
    """``later`` as a list of stages, each the models it needs: a flat list of names is the next
    stage alone."""
    if not later:
        return []
    return [list(later)] if isinstance(later[0], str) else [list(stage) for stage in later]


def loads_after(end: str | None, stages: Sequence[Sequence[str]]) -> int:
    """The fewest loads ``stages`` need with one model resident, ``end`` loaded before them: each
    stage runs the loaded model first when it has it, and may end on any of its models."""
    best = {end: 0}
    for models in stages:
        best = {last: min(loads + len(models) - (prev in models and (prev != last or len(models) == 1))
                          for prev, loads in best.items())
                for last in models}
    return min(best.values(), default=0)


def order_groups(models: Sequence[str], loaded: Sequence[str], later=(), resident: int = 2) -> list[str]:
    """Loaded models first (most recently loaded first), then the rest by name, then the models
    the next stage needs, the one it needs first placed last. With one resident model and stages
    known beyond the next, the last group is the one that leaves the fewest loads in all (a MoA
    round ending on the aggregator would make the last round reload it)."""
    stages = following_stages(later)
    upcoming = stages[0] if stages else []
    first = [m for m in reversed(loaded) if m in models]
    last = [m for m in reversed(list(dict.fromkeys(upcoming))) if m in models and m not in first]
    middle = sorted(m for m in models if m not in first and m not in last)
    order = first + middle + last
    if resident > 1 or len(stages) < 2:
        return order

    def total(end: str) -> int:
        here = len(order) - bool(first and (end != first[0] or len(order) == 1))
        return here + loads_after(end, stages)

    end = min(reversed(order), key=total)  # ties keep the rule above
    return [m for m in order if m != end] + [end]


def pick_victim(loaded: Sequence[str], upcoming: Sequence[str]) -> str:
    """The loaded model used farthest in the future (or never)."""
    def next_use(model: str) -> int:
        return upcoming.index(model) if model in upcoming else len(upcoming)

    return max(loaded, key=lambda m: (next_use(m), m))


class GroupProgress:
    """One model group's progress bar, counted in tokens of the group's ``max_tokens`` budget so it
    moves inside a long micro-batch: rate in tokens/s, and an upper bound on the time left (a
    batch that stops early hands back its unused budget at once). Shows requests done too."""

    def __init__(self, desc: str, requests: Sequence[GenerationRequest], engine: Engine, enabled: bool = True):
        self.engine, self.requests, self.finished = engine, len(requests), 0
        self.bar = tqdm(total=sum(r.params.max_tokens for r in requests), desc=desc, unit="tok",
                        unit_scale=True, disable=not enabled, leave=False, dynamic_ncols=True)
        self.bar.set_postfix_str(f"0/{self.requests} done")

    def __enter__(self):
        self.engine.report_budget_to(self.bar.update)
        return self

    def done(self) -> None:
        self.finished += 1
        self.bar.set_postfix_str(f"{self.finished}/{self.requests} done")

    def __exit__(self, *exc):
        self.engine.report_budget_to(None)
        self.bar.update(max(0, self.bar.total - self.bar.n))  # engines that report no steps
        self.bar.close()
        return False


class StageScheduler:
    """What every scheduler is: ``run`` one stage of calls at a time and ``summary`` the stages and
    models so far; use it with ``with`` (every model still loaded is unloaded at the end, error
    or not). :class:`Scheduler` runs in this process, ``runtime.workers.RayScheduler`` on Ray
    actors; both build engines with the run's one engine factory."""

    def __init__(self, max_loaded: int, progress: bool = True):
        self.max_loaded = max(1, int(max_loaded))
        self.progress = progress
        self.stages: list[StageReport] = []

    def run(self, stage: str, calls: Sequence[Call], later=()) -> dict[Hashable, Completion]:
        """Run every call of one stage; ``later`` names the models the following stages need: a
        list of names (the next stage) or a list of stages."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def model_stats(self) -> dict[str, EngineStats]:
        """Each model's work so far (cache hits included)."""
        raise NotImplementedError

    def model_setups(self) -> dict[str, dict]:
        """What each model loaded in this run ran with (``Engine.describe_setup``)."""
        raise NotImplementedError

    def placement(self) -> dict:
        """Where the work ran, for the summary, beyond models and stages (Ray: each worker's share)."""
        return {}

    def __enter__(self) -> "StageScheduler":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def summary(self) -> dict:
        models = {name: stats.as_dict() for name, stats in sorted(self.model_stats().items())}
        return {
            SUMMARY.models: models,
            SUMMARY.total_loads: sum(m[MODEL_STATS.loads] for m in models.values()),
            "distinct_models_loaded": sum(1 for m in models.values() if m[MODEL_STATS.loads]),
            SUMMARY.stages: [
                {"name": s.name, "seconds": round(s.seconds, 2), "calls": s.calls, "prompt_tokens": s.prompt_tokens,
                 "generated_tokens": s.generated_tokens, "order": s.order}
                for s in self.stages
            ],
            **self.placement(),
        }


class Scheduler(StageScheduler):
    """In process: one engine per model from ``engine_factory``, at most ``max_loaded`` loaded."""

    def __init__(self, engine_factory: Callable[[str], Engine], max_loaded: int, progress: bool = True):
        super().__init__(max_loaded, progress)
        self.engine_factory = engine_factory
        self.engines: dict[str, Engine] = {}
        self._loaded_order: list[str] = []  # models currently loaded, oldest first

    def engine(self, model: str) -> Engine:
        if model not in self.engines:
            self.engines[model] = self.engine_factory(model)
        return self.engines[model]

    def _sync_loaded(self) -> None:
        """What takes room here, oldest first: the residencies of loaded models (experts on one
        base share one; served ones take none)."""
        resident = {e.residency for e in self.engines.values() if e.loaded and e.holds_memory}
        self._loaded_order = [r for r in self._loaded_order if r in resident]
        self._loaded_order += [e.residency for e in self.engines.values() if e.residency in resident
                               and e.residency not in self._loaded_order]

    def _loaded_models(self) -> list[str]:
        """Loaded models by their residency's age, oldest first."""
        loaded = [m for m, e in self.engines.items() if e.loaded and e.holds_memory]
        return sorted(loaded, key=lambda m: self._loaded_order.index(self.engines[m].residency))

    def _needs_load(self, model: str, requests: list[GenerationRequest]) -> bool:
        engine = self.engine(model)
        return engine.holds_memory and not engine.loaded and engine.pending(requests) > 0

    def _make_room(self, model: str, upcoming: list[str]) -> None:
        """Unload what sits farthest from use until ``model`` fits; a model whose base is resident
        needs no room."""
        self._sync_loaded()
        mine = self.engine(model).residency
        needed_next = [self.engine(m).residency for m in upcoming]
        while mine not in self._loaded_order and len(self._loaded_order) >= self.max_loaded:
            victim = pick_victim(self._loaded_order, needed_next)
            for engine in self.engines.values():
                if engine.loaded and engine.residency == victim:
                    engine.unload()
            self._loaded_order.remove(victim)

    def run(self, stage: str, calls: Sequence[Call], later=()) -> dict[Hashable, Completion]:
        started = time.perf_counter()
        groups: dict[str, list[Call]] = {}
        for call in calls:
            groups.setdefault(call.expert, []).append(call)
        self._sync_loaded()
        order = order_groups(list(groups), self._loaded_models(), later, self.max_loaded)
        upcoming_models = [m for following in following_stages(later) for m in following]
        report = StageReport(stage, calls=len(calls), order=order)
        results: dict[Hashable, Completion] = {}
        served = [m for m in order if not self.engine(m).holds_memory]
        local = [m for m in order if m not in served]
        with ThreadPoolExecutor(max(1, len(served)), thread_name_prefix="served") as pool:
            running = [pool.submit(self._run_group, stage, groups[m], results) for m in served]
            for position, model in enumerate(local):
                if self._needs_load(model, [c.request for c in groups[model]]):
                    self._make_room(model, local[position + 1 :] + upcoming_models)
                self._run_group(stage, groups[model], results)
                self._sync_loaded()
            for group in running:
                group.result()
        report.seconds = time.perf_counter() - started
        report.count(results)
        self.stages.append(report)
        log.info("stage %s: %d calls over %s in %.1fs", stage, len(calls), order, report.seconds)
        return results

    def _run_group(self, stage: str, group: list[Call], results: dict[Hashable, Completion]) -> None:
        """One model's calls of a stage, each result under its call's key as it finishes."""
        engine, requests = self.engine(group[0].expert), [c.request for c in group]
        with GroupProgress(f"{stage}: {group[0].expert}", requests, engine, enabled=self.progress) as progress:
            for i, completion in engine.iter_generate(requests):
                results[group[i].key] = completion
                progress.done()

    def close(self) -> None:
        for engine in self.engines.values():
            if engine.loaded:
                engine.unload()
        self._loaded_order = []

    def model_stats(self) -> dict[str, EngineStats]:
        return {name: e.stats for name, e in self.engines.items()}

    def model_setups(self) -> dict[str, dict]:
        return {name: e.loaded_setup() for name, e in self.engines.items() if e.loaded_setup()}
