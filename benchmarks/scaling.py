"""How Symbolic-MoE's stages scale over Ray workers (issue: scale out), measured in one run.

Fake engines with a cost model stand in for GPUs: a load sleeps LOAD_S, a chunk sleeps its
generated tokens / RATE (sleeping needs no cores, so 8 workers run on a 2-core machine). The
plan is paper-shaped: 16 experts of skewed (Zipf) popularity, ~200 questions, a keyword stage
(5 samples per question on one keyword model), an expert stage (k=3 recruits per question) and
an aggregation stage (one aggregator). For each N it prints the makespan (the three stages, not
the actors' start), the speedup over 1 worker, and the ratio to the lower bound
sum over stages of max(stage work / N, largest unsplittable piece), loads included.

    python benchmarks/scaling.py [--questions 200] [--workers 1,2,4,8]
"""

from __future__ import annotations

import argparse
import random
import time

from symoe_eval.engines import Completion, Engine, EngineFactory, GenerationRequest, SamplingParams
from symoe_eval.pools.schema import ExpertSpec, WeightSource
from symoe_eval.runtime.scheduling import Call

LOAD_S = 0.2  # one model load
RATE = 8000.0  # generated tokens per second of one worker
CHUNK = 4  # requests per chunk (a micro-batch)
EXPERTS = [f"expert-{i:02d}" for i in range(16)]
STAGES = (("keywords", 64), ("experts", 300), ("aggregation", 400))  # stage, new tokens per call


class SleepEngine(Engine):
    """A GPU stand-in with known costs; also what the dispatcher is told a load costs."""

    name = "sleep"
    load_cost_tokens = LOAD_S * RATE

    def _load(self):
        time.sleep(LOAD_S)

    def _generate(self, requests):
        time.sleep(sum(r.params.max_tokens for r in requests) / RATE)
        for i, r in enumerate(requests):
            yield i, Completion(f"{self.expert.name}: {r.messages[-1][1][:16]}", r.params.max_tokens)


def plan(questions: int, seed: int = 0) -> list[list[Call]]:
    """The three stages' calls: keyword samples, Zipf-popular recruits, one aggregator."""
    rng = random.Random(seed)
    popularity = [1 / (rank + 1) for rank in range(len(EXPERTS))]
    stages = []
    for name, tokens in STAGES:
        params = SamplingParams(temperature=0.7, max_tokens=tokens, seed=seed)
        if name == "keywords":
            picks = [(q, s, EXPERTS[0]) for q in range(questions) for s in range(5)]
        elif name == "experts":
            picks = [(q, s, e) for q in range(questions) for s, e in enumerate(rng.choices(EXPERTS, popularity, k=3))]
        else:
            picks = [(q, 0, EXPERTS[1]) for q in range(questions)]
        stages.append([Call((name, q, s), e, GenerationRequest.user(f"{name} question {q} sample {s}", params, s))
                       for q, s, e in picks])
    return stages


def lower_bound(stage: list[Call], workers: int) -> float:
    """max(total work / N, largest unsplittable piece: one micro-batch and its model's load), in
    seconds, one load per model counted."""
    tokens = [c.request.params.max_tokens for c in stage]
    total = sum(tokens) / RATE + LOAD_S * len({c.expert for c in stage})
    return max(total / workers, CHUNK * max(tokens) / RATE + LOAD_S)


def measure(workers: int, stages: list[list[Call]]) -> tuple[float, int, list[float]]:
    from symoe_eval.runtime.workers import RayScheduler

    experts = {e: ExpertSpec(e, f"org/{e}", WeightSource(hf_id=f"org/{e}")) for e in EXPERTS}
    with RayScheduler(experts, EngineFactory(SleepEngine, None, {"batch_size": CHUNK}), workers=workers, max_loaded=1,
                      progress=False, cpus_per_worker=1) as scheduler:
        import ray

        ray.get([w.actor.pid.remote() for w in scheduler.workers])  # the actors' start is not measured
        start = time.perf_counter()
        for i, stage in enumerate(stages):
            scheduler.run(STAGES[i][0], stage)
        makespan = time.perf_counter() - start
        summary = scheduler.summary()
    return makespan, summary["total_loads"], [s["seconds"] for s in summary["stages"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--workers", default="1,2,4,8")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    import ray

    ray.init(num_cpus=max(counts), include_dashboard=False, log_to_driver=False)
    stages = plan(args.questions)
    print(f"{args.questions} questions, {sum(len(s) for s in stages)} calls over {len(EXPERTS)} experts; "
          f"load {LOAD_S}s, {RATE:.0f} tokens/s per worker, chunks of {CHUNK}")
    print(f"{'workers':>7} {'makespan s':>11} {'speedup':>8} {'lower bound s':>14} {'/ bound':>8} {'loads':>6}")
    base, per_stage = None, {}
    for n in counts:
        makespan, loads, seconds = measure(n, stages)
        bound = sum(lower_bound(stage, n) for stage in stages)
        base = base or makespan
        per_stage[n] = [f"{s:.2f}/{lower_bound(stage, n):.2f}" for s, stage in zip(seconds, stages)]
        print(f"{n:>7} {makespan:>11.2f} {base / makespan:>7.2f}x {bound:>14.2f} {makespan / bound:>8.3f} {loads:>6}")
    print("\nseconds / lower bound per stage: " + ", ".join(name for name, _ in STAGES))
    for n, cells in per_stage.items():
        print(f"{n:>7}  " + "  ".join(cells))
    ray.shutdown()


if __name__ == "__main__":
    main()
