"""Adding a backend, a routing method or a whole method is one class plus a name: the first two
run symoe end to end, the third runs through the stock ``lm_eval`` command by its name alone."""

import json
import re
import sys
from dataclasses import dataclass

import pytest
from lm_eval.api.instance import Instance

from fakes import WordTokenizer
from symoe_eval.engines import ENGINES, Completion, Engine, register_engine
from symoe_eval.harness.lm import lm_class
from symoe_eval.methods import METHODS
from symoe_eval.methods.base import Method, MethodResult, Question, parse_names
from symoe_eval.runoutput import Row
from symoe_eval.symbolic.profiles import ExpertProfile, TaskProfile, save_profile
from symoe_eval.symbolic.routing import ROUTERS, Route, Router, register_router

POOL = """
name: toys
experts:
  - {name: alpha, model: org/alpha, source: {hf_id: org/alpha}, tags: [keyword_model]}
  - {name: beta, model: org/beta, source: {hf_id: org/beta}}
embedding_model: {name: e, model: org/e, source: {hf_id: org/e}}
"""


class EchoEngine(Engine):
    """A toy backend: the whole contract is _generate (plus _load / _unload for real weights)."""

    name = "echo"
    loads: list = []

    def _load(self):
        EchoEngine.loads.append(self.expert.name)

    def load_tokenizer(self):
        return WordTokenizer()

    def _generate(self, requests):
        for i, request in enumerate(requests):
            prompt = request.messages[-1][1]
            if "core knowledge" in prompt:
                text = "Keywords: algebra, algebra"
            else:
                letters = re.findall(r"\(([A-D])\)", prompt)
                text = f"{self.expert.name} thinks. The answer is ({letters[-1] if letters else 'A'})"
            yield i, Completion(text, len(text.split()))


class AlwaysBeta(Router):
    """A toy routing method: every question goes to beta, k times."""

    name = "always-beta"

    def route(self, profile, question, keywords, rng):
        return Route(question.task, question.doc_id, keywords, [], ["beta"] * self.k)


@pytest.fixture
def toys(tmp_path, registered):
    registered(ENGINES, "echo", EchoEngine)
    registered(ROUTERS, "always-beta", AlwaysBeta)
    EchoEngine.loads.clear()
    pool = tmp_path / "toys.yaml"
    pool.write_text(POOL)
    experts = {"alpha": ExpertProfile("alpha", {"algebra": 2}), "beta": ExpertProfile("beta", {"algebra": -1})}
    save_profile(TaskProfile("symoe_gpqa", "toys", experts, "alpha", keywords=["algebra"]), tmp_path / "profiles", "r")
    return pool, tmp_path


def requests(n):
    kwargs = {"until": [], "temperature": 0.7, "max_gen_toks": 64}
    return [Instance("generate_until", {"question": f"Q{i}? The options are: (A) x (B) y"},
                     (f"Question: Q{i}? The options are: (A) x (B) y", kwargs), i, metadata=("symoe_gpqa", i, 1))
            for i in range(n)]


def run(toys, **args):
    pool, folder = toys
    model = lm_class("symoe")(pool=str(pool), profiles=str(folder / "profiles"), log_dir=str(folder / "logs"),
                        cache_dir="none", **args)
    out = model.generate_until(requests(4))
    summary = json.loads(sorted((folder / "logs").glob("routing_summary_*.json"))[-1].read_text())
    rows = [json.loads(line) for line in open(summary["routing_log"])]
    return out, summary, rows


def test_a_toy_engine_runs_symoe_by_its_mapping_name(toys):
    register_engine("echo", EchoEngine)
    out, summary, rows = run(toys, engine="echo")
    assert summary["backend"] == "echo" and len(out) == 4
    assert EchoEngine.loads == ["alpha"]  # keyword model, only recruit (beta's algebra is -1) and aggregator
    assert all(r["experts"] for r in rows) and summary["models"]["alpha"]["calls"] >= 4 * 5


def test_a_toy_router_runs_symoe_by_name(toys):
    register_router(AlwaysBeta)
    out, summary, rows = run(toys, engine="echo", routing="always-beta")
    assert all(r["experts"] == ["beta"] * 3 for r in rows)
    assert [s["name"] for s in summary["stages"]] == ["experts", "aggregation"]  # no keyword stage: not needed
    assert all(o.startswith("alpha thinks") for o in out)  # the profile's aggregator


# ---------------------------------------------------------------- a toy method


@dataclass(frozen=True)
class LongestRow(Row):
    lengths: list[int]


class LongestAnswer(Method):
    """A toy method: every named expert answers; the longest response is the method's."""

    name = "toy-longest"

    def __init__(self, runtime, experts: str = "alpha|beta"):
        super().__init__(runtime)
        self.experts = [self.pool.expert(n).name for n in parse_names(experts)]

    def run(self, questions, scheduler):
        from symoe_eval.runtime.scheduling import Call

        out = scheduler.run("answers", [Call((q.key, e), e, self.runtime.request(e, q.prompt, q.gen_kwargs, q.repeat))
                                        for q in questions for e in self.experts])
        rows = []
        for q in questions:
            texts = [out[(q.key, e)].text for e in self.experts]
            best = max(texts, key=len)
            rows.append(LongestRow(q.task, q.doc_id, q.repeat, self.experts, q.answer(best), best, [len(t) for t in texts]))
        return MethodResult({r_key(r): r.final_text for r in rows}, rows, {"experts": self.experts})


def r_key(row: Row) -> tuple:
    return (row.task, row.doc_id, row.repeat)


def test_a_toy_method_runs_without_lm_eval(toys):
    from symoe_eval.runtime.context import RunContext

    pool, _ = toys
    runtime = RunContext.create(pool=str(pool), engine="echo", cache_dir="none")
    questions = [Question("t", i, 0, f"Q{i}? The options are: (A) x (B) y", f"Q{i}?", {}) for i in range(3)]
    with runtime.scheduler(progress=False) as scheduler:
        result = LongestAnswer(runtime).run(questions, scheduler)
    assert list(result.texts.values()) == ["alpha thinks. The answer is (B)"] * 3  # alpha's is one letter longer
    assert [r.lengths for r in result.rows] == [[31, 30]] * 3 and result.summary == {"experts": ["alpha", "beta"]}


def test_a_toy_method_runs_through_stock_lm_eval_by_name(toys, monkeypatch, registered):
    from lm_eval.__main__ import cli_evaluate

    from symoe_eval.harness.plugin import register_method

    pool, folder = toys
    registered(METHODS, "toy-longest", LongestAnswer)
    register_method("toy-longest", LongestAnswer)  # the public route: the same entry again is a no-op
    out = folder / "out"
    monkeypatch.setattr(sys, "argv", [
        "lm_eval", "--model", "toy-longest", "--model_args", f"pool={pool},engine=echo,cache_dir=none,experts=beta+alpha",
        "--tasks", "symoe_demo", "--limit", "3", "--output_path", str(out)])
    cli_evaluate()
    (results,) = out.rglob("results_*.json")
    assert 0 <= json.loads(results.read_text())["results"]["symoe_demo"]["exact_match,answer"] <= 1
    (summary,) = out.glob("routing_summary_toy-longest_toys_*.json")  # the run log lands beside lm-eval's outputs
    summary = json.loads(summary.read_text())
    assert (summary["method"], summary["questions"], summary["experts"]) == ("toy-longest", 3, ["beta", "alpha"])
    rows = [json.loads(line) for line in open(summary["routing_log"])]
    assert [r["experts"] for r in rows] == [["beta", "alpha"]] * 3
    assert all(r["final_text"].startswith("alpha thinks") and len(r["lengths"]) == 2 for r in rows)


OLD_NAMES = """
import warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as seen:
    from symoe_eval.methods.routing import register_router, ROUTERS
    from symoe_eval.methods import profiles
    from symoe_eval.harness.tasks import load_dataset
from lm_eval.tasks._yaml_loader import _import_func_in_yml
import symoe_eval.symbolic.routing as routing, symoe_eval.symbolic.profiles as new_profiles
from symoe_eval.harness import task_functions
from pathlib import Path
assert ROUTERS is routing.ROUTERS and profiles is new_profiles and load_dataset is task_functions.load_dataset
assert _import_func_in_yml("symoe_eval.harness.tasks.load_dataset", Path(".")) is task_functions.load_dataset
print([str(w.message) for w in seen if w.category is DeprecationWarning])
"""


def test_old_module_names_import_the_moved_modules_with_a_warning():
    """A user's router importing ``symoe_eval.methods.routing`` and a task YAML naming
    ``symoe_eval.harness.tasks.load_dataset`` keep working (same module, same registry) and are told
    the new name; with warnings as errors the old name fails."""
    import subprocess

    run = subprocess.run([sys.executable, "-c", OLD_NAMES], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.replace("'", '"')) == [
        "symoe_eval.methods.routing is now symoe_eval.symbolic.routing; the old name goes with release 0.2",
        "symoe_eval.methods.profiles is now symoe_eval.symbolic.profiles; the old name goes with release 0.2",
        "symoe_eval.harness.tasks is now symoe_eval.harness.task_functions; the old name goes with release 0.2"]
    strict = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", "import symoe_eval.methods.skills"],
                            capture_output=True, text=True)
    assert strict.returncode == 1 and strict.stderr.strip().endswith(
        "DeprecationWarning: symoe_eval.methods.skills is now symoe_eval.symbolic.skills; the old name goes with release 0.2")
