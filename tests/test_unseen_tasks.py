"""Symbolic-MoE on a task without a profile of its own (skills transfer, arXiv 2503.05641 v4):
``profile=`` chooses the source; a missing own profile falls back to the pool's others, pooled,
with one notice line; the run summary records where each task's profile came from."""

import json
import logging

import pytest

from fakes import fake_symoe
from symoe_eval.errors import SymoeError
from symoe_eval.harness.lm import lm_class
from symoe_eval.symbolic.profiles import ExpertProfile, TaskProfile, load_profile, pooled_profile
from test_consensus import respond

PROFILED = ["symoe_aime24", "symoe_demo", "symoe_gpqa"]  # tiny-cpu's committed profiles; symoe_medmcqa has none


def profile(task, scores, aggregator, questions, accuracy):
    experts = {n: ExpertProfile(n, s, accuracy[n]) for n, s in scores.items()}
    return TaskProfile(task, "p", experts, aggregator, keywords=sorted({k for s in scores.values() for k in s}),
                       keyword_counts={k: 2 for s in scores.values() for k in s}, provenance={"questions": questions})


def test_the_pooling_rule():
    a = profile("a", {"x": {"algebra": 2, "law": -1}, "y": {"algebra": -2}}, "x", 10, {"x": 0.5, "y": 0.1})
    b = profile("b", {"x": {"algebra": -1}, "y": {"algebra": 3, "biology": 1}}, "y", 30, {"x": 0.1, "y": 0.9})
    c = profile("c", {"x": {"law": 1}, "y": {"law": 1}}, "y", 10, {"x": 0.0, "y": 0.0})
    pooled = pooled_profile("new", [a, b, c])
    assert pooled.task == "new" and pooled.provenance == {"pooled_from": ["a", "b", "c"]}
    assert pooled.experts["x"].scores == {"algebra": 1, "law": 0} and pooled.experts["y"].scores == {"algebra": 1, "biology": 1, "law": 1}
    assert pooled.experts["x"].accuracy == pytest.approx((5 + 3 + 0) / 50) and pooled.experts["y"].accuracy == pytest.approx(28 / 50)
    assert pooled.keywords == ["algebra", "law", "biology"] and pooled.keyword_counts["algebra"] == 4
    assert (pooled.aggregator, pooled.aggregator_choice) == ("y", "chosen by 2 of 3 pooled tasks")
    tie = pooled_profile("new", [a, profile("d", {"x": {}, "y": {"law": 5}}, "y", 1, {"x": 0, "y": 0})])
    assert tie.aggregator == "y"  # one vote each: the higher pooled strength (y: -2 + 5 = 3 against x: 1)


@pytest.fixture
def run(monkeypatch, data_dir, tmp_path):
    import lm_eval

    fake_symoe(monkeypatch, respond, batch_size=64)

    def evaluate(tasks, **args):
        logs = tmp_path / f"logs{len(list(tmp_path.iterdir()))}"
        lm = lm_class("symoe")(pool="tiny-cpu", cache_dir="none", log_dir=str(logs), **args)
        results = lm_eval.simple_evaluate(model=lm, tasks=tasks, limit=4, metadata={"data_dir": str(data_dir)})
        return results, json.loads(next(logs.glob("routing_summary_*.json")).read_text())

    return evaluate


def test_a_task_without_a_profile_is_routed_with_the_pools_others_pooled(run, caplog):
    with caplog.at_level(logging.WARNING, logger="symoe_eval.methods.base"):
        results, summary = run(["symoe_medmcqa", "symoe_gpqa"])
    notices = [r.getMessage() for r in caplog.records if "no profile of" in r.getMessage()]
    assert notices == ["no profile of symoe_medmcqa for pool tiny-cpu: routing with one pooled from symoe_aime24, "
                       "symoe_demo, symoe_gpqa (profile=own makes this an error; symoe profile --pool tiny-cpu "
                       "--task symoe_medmcqa builds its own)"]
    assert 0 <= results["results"]["symoe_medmcqa"]["exact_match,answer"] <= 1
    assert summary["profile_sources"] == {"symoe_medmcqa": "pooled from " + ", ".join(PROFILED)}  # gpqa: its own
    pooled = pooled_profile("symoe_medmcqa", [load_profile(*_root(), t) for t in PROFILED])
    assert summary["aggregators"]["symoe_medmcqa"] == pooled.aggregator == "qwen2.5-coder-0.5b"


def _root():
    from symoe_eval.paths import profiles_root

    return profiles_root(), "tiny-cpu"


def test_profile_own_makes_a_missing_profile_an_error(run):
    with pytest.raises(SymoeError, match="no profile for task 'symoe_medmcqa' and pool 'tiny-cpu'.*symoe profile --pool tiny-cpu"):
        run(["symoe_medmcqa"], profile="own")


def test_named_tasks_and_pooled_replace_a_tasks_own_profile(run):
    _, summary = run(["symoe_gpqa"], profile="symoe_demo|symoe_aime24")
    assert summary["profile_sources"] == {"symoe_gpqa": "pooled from symoe_demo, symoe_aime24"}
    _, summary = run(["symoe_gpqa"], profile="pooled")  # every other profiled task: what transfer would give
    assert summary["profile_sources"] == {"symoe_gpqa": "pooled from symoe_aime24, symoe_demo"}
    with pytest.raises(SymoeError, match="no profile for task 'symoe_mmlu_pro'"):
        run(["symoe_gpqa"], profile="symoe_mmlu_pro")
