"""Stages on Ray actors with fake engines: same answers as in process, and a worker killed mid-stage."""

import json
import os
import signal
import threading
import time

import pytest

from fakes import FakeEngine, draw, expert, use_fake_engines
from symoe_eval.harness.lm import lm_class
from symoe_eval.engines import ENGINES, EngineFactory, GenerationRequest, SamplingParams
from symoe_eval.runtime.scheduling import Call, Scheduler

pytestmark = pytest.mark.usefixtures("ray_cluster")


class SlowFake(FakeEngine):
    """A fake that takes 20 ms per request, so a stage lasts long enough to kill a worker in it."""

    name = "slowfake"

    def __init__(self, spec, **kwargs):
        super().__init__(spec, respond=lambda name, req: f"{name}: {draw(req).randrange(10**6)} The answer is (A)", **kwargs)

    def _generate(self, requests):
        for item in super()._generate(requests):
            time.sleep(0.02)
            yield item


EXPERTS = {name: expert(name) for name in ("a", "b", "c")}


def stage_calls(n=60):
    params = SamplingParams(temperature=0.7, max_tokens=32, seed=0)
    return [Call(i, "abc"[i % 3] if i % 4 else "a", GenerationRequest.user(f"question {i}", params)) for i in range(n)]


def ray_scheduler(tmp_path, workers=2):
    from symoe_eval.runtime.workers import RayScheduler

    return RayScheduler(EXPERTS, EngineFactory(SlowFake, tmp_path / "cache", {"batch_size": 4}), workers=workers,
                        max_loaded=1, progress=False)


def in_process(calls):
    factory = EngineFactory(SlowFake, None, {"batch_size": 4})
    with Scheduler(lambda name: factory.build(EXPERTS[name]), max_loaded=1, progress=False) as scheduler:
        return {k: c.text for k, c in scheduler.run("s", calls).items()}


def test_workers_give_the_same_answers_and_split_the_loads(tmp_path):
    calls = stage_calls()
    with ray_scheduler(tmp_path) as scheduler:
        out = {k: c.text for k, c in scheduler.run("experts", calls).items()}
        summary = scheduler.summary()
    assert out == in_process(calls)
    workers = summary["workers"]
    assert len(workers) == 2 and all(w["calls"] > 0 for w in workers)  # both worked
    assert sum(w["calls"] for w in workers) == len(calls)
    assert summary["total_loads"] <= 3 + 2  # distinct models plus at most a split per extra worker
    assert {s["name"] for s in summary["stages"]} == {"experts"}


def test_a_worker_killed_mid_stage_loses_nothing(tmp_path, caplog):
    import ray

    calls = stage_calls()
    with ray_scheduler(tmp_path) as scheduler:
        victim = ray.get(scheduler.workers[0].actor.pid.remote())
        threading.Timer(0.4, os.kill, (victim, signal.SIGKILL)).start()
        with caplog.at_level("WARNING"):
            out = {k: c.text for k, c in scheduler.run("experts", calls).items()}
        summary = scheduler.summary()
    assert out == in_process(calls)
    assert any("died with" in r.getMessage() for r in caplog.records)
    assert summary["workers"][0]["restarts"] == 1
    lines = [json.loads(line) for f in (tmp_path / "cache").glob("*.jsonl") for line in open(f)]
    assert len(lines) == len({row["key"] for row in lines}) == len(calls)  # each generation written once


def test_cached_calls_load_nothing_and_generate_nothing_on_the_workers(tmp_path):
    """The workers' engines sit behind the same cache layer as in process (before, the driver
    kept its own copy of the cache bookkeeping)."""
    calls = stage_calls(12)
    with ray_scheduler(tmp_path) as scheduler:
        first = scheduler.run("s", calls)
    with ray_scheduler(tmp_path) as scheduler:
        again = scheduler.run("s", calls)
        summary = scheduler.summary()
    assert {k: c.text for k, c in again.items()} == {k: c.text for k, c in first.items()}
    assert summary["total_loads"] == 0 and sum(w["calls"] for w in summary["workers"]) == 0


def test_a_driver_waits_for_another_run_generating_on_its_cache_and_reads_its_work(tmp_path):
    """Another run (an in-process one here) holds model "a" of the shared cache and writes its
    calls: the driver waits, reads them, and sends workers only the rest (before it generated
    them all again)."""
    from symoe_eval.engines import GenerationCache
    from symoe_eval.engines.cache import request_key

    calls = stage_calls(12)
    theirs = [c for c in calls if c.expert == "a"]
    other = GenerationCache(tmp_path / "cache")
    holding, written = threading.Event(), threading.Event()

    def other_run():
        with other.generating("a"):
            holding.set()
            time.sleep(1.0)
            texts = SlowFake(EXPERTS["a"], batch_size=4).generate([c.request for c in theirs])
            other.put("a", [(request_key(EXPERTS["a"], c.request), t) for c, t in zip(theirs, texts)])
        written.set()

    threading.Thread(target=other_run).start()
    holding.wait()
    with ray_scheduler(tmp_path) as scheduler:
        out = scheduler.run("s", calls)
        summary = scheduler.summary()
    assert written.is_set() and {k: c.text for k, c in out.items()} == in_process(calls)
    assert sum(w["calls"] for w in summary["workers"]) == len(calls) - len(theirs)
    assert summary["models"]["a"]["cached_calls"] == len(theirs)


def instances(n):
    from lm_eval.api.instance import Instance

    kwargs = {"until": [], "temperature": 0.7, "max_gen_toks": 32}
    return [Instance("generate_until", {"question": f"Q{i}? The options are: (A) x (B) y"}, (f"Question: Q{i}?", kwargs), i,
                     metadata=("symoe_gpqa", i, 1)) for i in range(n)]


def test_moa_through_lm_eval_model_args_workers(tmp_path, registered):
    """workers=2 in model_args: the same final texts as in process, and per-worker cost in the summary."""
    registered(ENGINES, "slowfake", SlowFake)
    requests = instances(6)

    def run(workers):
        log_dir = tmp_path / f"w{workers}"
        lm = lm_class("moa")(pool="tiny-cpu", engine="slowfake", layers=2, proposers="smollm2-135m|qwen2.5-coder-0.5b",
                             aggregator="qwen2.5-coder-0.5b", cache_dir="none", log_dir=str(log_dir), workers=workers)
        out = lm.generate_until(requests, disable_tqdm=True)
        return out, json.loads(next(log_dir.glob("routing_summary_*.json")).read_text())

    (alone, _), (spread, summary) = run(1), run(2)
    assert spread == alone
    assert len(summary["workers"]) == 2 and sum(w["calls"] for w in summary["workers"]) == 6 * 2 * 2 + 6
    assert [s["name"] for s in summary["stages"]] == ["layer 1", "layer 2", "aggregation"]


def echo_answer(name, request):
    return f"{name} read {len(request.messages[-1][1])} characters. The answer is (B)"


def test_a_swapped_engine_factory_reaches_the_workers_behind_the_same_cache(tmp_path, monkeypatch):
    """One execution path: the factory tests swap (``RunContext.engine_factory``) builds the Ray
    workers' engines too, behind the in-process cache layer (before, workers built the backend's
    class themselves: tiny-cpu's real smollm2 answered here, and the driver kept the cache)."""
    use_fake_engines(monkeypatch, echo_answer, batch_size=4)
    cache = tmp_path / "cache"

    def run(name):
        lm = lm_class("symoe_expert")(pool="tiny-cpu", expert="smollm2-135m", cache_dir=str(cache),
                                      log_dir=str(tmp_path / name), workers=2)
        out = lm.generate_until(instances(10), disable_tqdm=True)
        return out, json.loads(next((tmp_path / name).glob("routing_summary_*.json")).read_text())

    (first, summary), (again, resumed) = run("first"), run("again")
    assert all(text.startswith("smollm2-135m read") for text in first) and again == first
    assert len((cache / "smollm2-135m.jsonl").read_text().splitlines()) == 10  # written once, by the workers' layer
    assert sum(w["calls"] for w in summary["workers"]) == 10 and summary["models"]["smollm2-135m"]["loads"] >= 1
    assert resumed["total_loads"] == 0 and resumed["models"]["smollm2-135m"]["cached_calls"] == 10
