"""Leave-one-task-out on the routing simulator: Symbolic-MoE on a task with no profile of its own.

The world of ``benchmarks/routing_sim.py`` (its docstring states every assumption), with tasks
whose subjects overlap partly: task i asks about subjects 2i .. 2i+3 (mod 10), so neighbouring
tasks share two subjects and tasks two apart share none. Each task has its own validation set
(every expert answers it once) and profile. For each task in turn, its test questions are routed:

- ``own``: with its own profile (what ``profile=own`` does);
- ``pooled``: with the other tasks' profiles merged by ``symbolic.profiles.pooled_profile`` (what
  ``symoe`` does for a task with no profile: ``profile=pooled``);
- ``task (pooled)``: the pooled profile's k strongest experts for every question;
- ``random``: k experts drawn uniformly;

each by the paper's router (``instance``) and by ``records`` (its records pooled too). Aggregation
is the plurality of the k answers, as in the simulator. Every arm sees the same worlds, questions,
keywords and answer draws; the table gives accuracy with 95% t-intervals over replications (each
replication: one world, every task held out once) and the paired difference to ``own``.

    python benchmarks/unseen_task_sim.py [--replications 12] [--output results/benchmarks/unseen_task_sim.md]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

spec = importlib.util.spec_from_file_location("routing_sim", Path(__file__).with_name("routing_sim.py"))
sim = sys.modules["routing_sim"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
spec.loader.exec_module(sim)

from symoe_eval.symbolic.profiles import pooled_profile  # noqa: E402
from symoe_eval.symbolic.routing import ROUTERS, QuestionRef, question_rng  # noqa: E402

TASKS, SUBJECTS_PER_TASK = 4, 4
SHAPE = sim.Shape("overlapping tasks", 5, 6, 5)
ROUTINGS = ("instance", "records")


def task_subjects(task: int) -> list[int]:
    return [(2 * task + j) % sim.SUBJECTS for j in range(SUBJECTS_PER_TASK)]


def routed_accuracy(world, profile, tests, draws, routing: str, seed: int) -> float:
    router = ROUTERS[routing](sim.K, embed=sim.embedder(world))
    teams = [router.route(profile, QuestionRef("sim", i), q.keywords, question_rng(seed, "sim", i)).experts
             for i, q in enumerate(tests)]
    return sim.team_accuracy(world, tests, draws, teams, seed)


def replicate(seed: int) -> dict[str, list[float]]:
    """Every (arm, routing) score of one world, one value per held-out task."""
    rng = np.random.default_rng(seed)
    world = sim.make_world(SHAPE, rng)
    profiles = []
    for task in range(TASKS):
        questions, right = sim.answer_validation(world, SHAPE, rng, task_subjects(task))
        profiles.append(sim.build_profile(world, SHAPE, questions, right))
    scores: dict[str, list[float]] = {}
    for task in range(TASKS):
        tests = [sim.make_question(rng, len(world.names), task_subjects(task)) for _ in range(sim.TEST_QUESTIONS)]
        draws = rng.random((len(tests), len(world.names), sim.K))
        pooled = pooled_profile("held-out", [p for t, p in enumerate(profiles) if t != task])
        for routing in ROUTINGS:
            for arm, profile in (("own", profiles[task]), ("pooled", pooled)):
                scores.setdefault(f"{arm}, {routing}", []).append(routed_accuracy(world, profile, tests, draws, routing, seed))
        for arm, routing in (("task (pooled)", "task"), ("random", "random")):
            scores.setdefault(arm, []).append(routed_accuracy(world, pooled, tests, draws, routing, seed))
    return scores


ROWS = (  # routing, profile, score key, the key it is paired with for the same router
    ("instance", "own", "own, instance", None), ("instance", "pooled", "pooled, instance", "own, instance"),
    ("records", "own", "own, records", None), ("records", "pooled", "pooled, records", "own, records"),
    ("task", "pooled", "task (pooled)", None), ("random", "none", "random", None),
)


def table(results: list[dict[str, list[float]]]) -> list[str]:
    column = {key: np.array([np.mean(r[key]) for r in results]) for _, _, key, _ in ROWS}

    def paired(key: str, base: str | None) -> str:
        return "" if base is None or key == base else "{:+.3f} ± {:.3f}".format(*sim.interval(column[key] - column[base]))

    lines = ["| routing | profile | accuracy | vs own profile, same router (paired) | vs own profile, instance (paired) |",
             "| --- | --- | --- | --- | --- |"]
    for routing, profile, key, base in ROWS:
        mean, half = sim.interval(column[key])
        lines.append(f"| {routing} | {profile} | {mean:.3f} ± {half:.3f} | {paired(key, base)} | {paired(key, 'own, instance')} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=12)
    parser.add_argument("--output", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    start = time.perf_counter()
    results = [replicate(1000 * n + 29) for n in range(args.replications)]
    overlap = ", ".join(f"task {t}: subjects {task_subjects(t)}" for t in range(TASKS))
    lines = [f"Leave-one-task-out on the routing simulator: {TASKS} tasks ({overlap}); pool of {SHAPE.specialists} "
             f"specialists, {SHAPE.generalists} generalists, {SHAPE.weak} weak; {SHAPE.validation} validation questions "
             f"per task; k={sim.K}, {sim.TEST_QUESTIONS} test questions per held-out task, plurality of the k answers; "
             f"{args.replications} replications (each: one world, every task held out once, accuracy averaged over "
             "the tasks); mean ± 95% t-interval.", "", *table(results), "", f"({time.perf_counter() - start:.1f} s)"]
    sim.print_and_save("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
