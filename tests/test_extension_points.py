"""Adding a backend or a routing method is one class plus a name: both run symoe end to end."""

import json
import re

import pytest
from lm_eval.api.instance import Instance

from fakes import WordTokenizer
from symoe_eval.engines import ENGINES, Completion, Engine, register_engine
from symoe_eval.models.symoe import SymbolicMoE
from symoe_eval.profiles import ExpertProfile, TaskProfile, save_profile
from symoe_eval.routing import ROUTERS, Route, Router, register_router

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
def toys(tmp_path, monkeypatch):
    monkeypatch.setitem(ENGINES, "echo", EchoEngine)
    monkeypatch.setitem(ROUTERS, "always-beta", AlwaysBeta)
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
    model = SymbolicMoE(pool=str(pool), profiles=str(folder / "profiles"), log_dir=str(folder / "logs"),
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
