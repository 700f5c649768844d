"""Baselines with fake engines: call and load counts, prompts, votes, self-consistency."""

import json

import pytest
from lm_eval.api.instance import Instance

from fakes import FakeEngine, draw, use_fake_engines
from symoe_eval.harness.lm import lm_class
from symoe_eval.methods.discussion import stated_confidence
from symoe_eval.answers import extract_answer, vote
from symoe_eval.symbolic.profiles import ExpertProfile, TaskProfile, save_profile

MC = "Which? The options are: (A) x (B) y (C) z (D) w"
POOL = """
name: trio
experts:
{experts}
"""


@pytest.fixture
def pool(tmp_path, monkeypatch):
    FakeEngine.log.clear()
    names = ["a", "b", "c", "d"]
    (tmp_path / "trio.yaml").write_text(POOL.format(
        experts="\n".join(f"  - {{name: {n}, model: org/{n}, source: {{hf_id: org/{n}}}}}" for n in names)))
    return tmp_path


def use_fakes(monkeypatch, respond):
    use_fake_engines(monkeypatch, respond, batch_size=100)


def instances(n, task="symoe_gpqa"):
    kwargs = {"until": [], "do_sample": True, "temperature": 0.7, "max_gen_toks": 256}
    return [Instance("generate_until", {"question": MC}, (f"Question: {MC}\nThink.", kwargs), i, metadata=(task, i, 1))
            for i in range(n)]


def generated_prompts():
    return FakeEngine.prompts


@pytest.fixture(autouse=True)
def record_prompts(monkeypatch):
    FakeEngine.prompts = []
    original = FakeEngine.iter_generate

    def recording(self, requests):
        FakeEngine.prompts += [(self.expert.name, r.messages[-1][1]) for r in requests]
        yield from original(self, requests)

    monkeypatch.setattr(FakeEngine, "iter_generate", recording)


def summary_of(folder):
    return json.loads(next(folder.glob("routing_summary_*.json")).read_text())


@pytest.mark.parametrize("layers,proposers", [(1, "a|b|c"), (2, "a|b|c"), (3, "a|b")])
def test_moa_makes_n_times_l_plus_one_calls_and_loads_once_per_layer(pool, monkeypatch, layers, proposers):
    use_fakes(monkeypatch, lambda name, req: f"{name}: The answer is (B)")
    n = len(proposers.split("|"))
    lm = lm_class("moa")(pool=str(pool / "trio.yaml"), layers=layers, proposers=proposers, aggregator="d",
                         max_loaded=1, cache_dir="none", log_dir=str(pool / "logs"))
    out = lm.generate_until(instances(4))
    assert out == ["d: The answer is (B)"] * 4
    assert len(generated_prompts()) == 4 * (n * layers + 1)
    summary = summary_of(pool / "logs")
    assert [s["name"] for s in summary["stages"]] == [f"layer {i + 1}" for i in range(layers)] + ["aggregation"]
    for name in proposers.split("|"):
        assert 1 <= summary["models"][name]["loads"] <= layers  # at most once per layer
        assert summary["models"][name]["calls"] == 4 * layers
    assert summary["models"]["d"]["loads"] == 1 and summary["models"]["d"]["calls"] == 4
    later_layers = [p for name, p in generated_prompts() if name != "d"][4 * n:]
    assert all(p.startswith("You have been provided with a set of responses") for p in later_layers)
    assert all(p.endswith(f"Question: {MC}\nThink.") for p in later_layers)


def test_moa_defaults_come_from_the_task_profile(pool, monkeypatch):
    use_fakes(monkeypatch, lambda name, req: f"{name}: The answer is (C)")
    profile = TaskProfile("symoe_gpqa", "trio", {n: ExpertProfile(n, {"k": s}) for n, s in
                                                 {"a": 1, "b": 5, "c": 3, "d": 4}.items()}, "c")
    save_profile(profile, pool / "profiles", "r")
    lm = lm_class("moa")(pool=str(pool / "trio.yaml"), layers=1, profiles=str(pool / "profiles"), cache_dir="none",
                         log_dir=str(pool / "logs"))
    lm.generate_until(instances(2))
    summary = summary_of(pool / "logs")
    assert summary["proposers"] == {"symoe_gpqa": ["b", "d", "c"]} and summary["aggregators"] == {"symoe_gpqa": "c"}


def discussion_responder(finals):
    def respond(name, req):
        prompt = req.messages[-1][1]
        if prompt.startswith("These are the recent answers"):
            return finals[name]
        return f"{name} first thinks. The answer is (A)"
    return respond


def test_discussion_makes_agents_times_rounds_plus_one_calls_and_votes(pool, monkeypatch):
    use_fakes(monkeypatch, discussion_responder({"a": "The answer is (A)", "b": "Hmm. The answer is (B)",
                                                 "c": "Agreed. The answer is (B)"}))
    lm = lm_class("discussion")(pool=str(pool / "trio.yaml"), agents="a|b|c", rounds=2, cache_dir="none", log_dir=str(pool / "logs"))
    out = lm.generate_until(instances(3))
    assert len(generated_prompts()) == 3 * 3 * (2 + 1)
    assert all(o.endswith("The answer is (B).") for o in out)
    debate = [p for name, p in generated_prompts() if name == "a" and p.startswith("These are")][0]
    assert "### Agent 1's response:\nb first thinks" in debate and "### Agent 2's response:\nc first thinks" in debate
    assert "Your previous answer was:\na first thinks" in debate
    assert debate.endswith(f"Question: {MC}\nThink.")
    rows = [json.loads(line) for line in next((pool / "logs").glob("routing_discussion_*.jsonl")).open()]
    assert rows[0]["votes"] == ["A", "B", "B"] and len(rows[0]["rounds"]) == 3


def test_discussion_ties_go_to_the_stronger_agent(pool, monkeypatch):
    use_fakes(monkeypatch, discussion_responder({"a": "The answer is (A)", "b": "The answer is (B)"}))
    profile = TaskProfile("symoe_gpqa", "trio", {"a": ExpertProfile("a", {"k": 1}), "b": ExpertProfile("b", {"k": 9})}, "a")
    save_profile(profile, pool / "profiles", "r")
    lm = lm_class("discussion")(pool=str(pool / "trio.yaml"), agents="a|b", rounds=1, profiles=str(pool / "profiles"),
                    cache_dir="none", log_dir=str(pool / "logs"))
    assert lm.generate_until(instances(1))[0].endswith("The answer is (B).")


def test_confidence_weighted_vote(pool, monkeypatch):
    use_fakes(monkeypatch, discussion_responder({
        "a": "The answer is (A)\nConfidence: 0.9", "b": "The answer is (B) Confidence: 20%", "c": "The answer is (B)\nConfidence: 0.3"}))
    lm = lm_class("discussion")(pool=str(pool / "trio.yaml"), agents="a|b|c", rounds=1, vote="confidence", cache_dir="none",
                    log_dir=str(pool / "logs"))
    assert lm.generate_until(instances(1))[0].endswith("The answer is (A).")
    assert all("Confidence: <a number" in p for _, p in generated_prompts() if p.startswith("These are"))
    assert stated_confidence("no number") == 1.0 and stated_confidence("confidence 85%") == 0.85


def test_self_consistency_scores_the_vote_of_five_repeats(monkeypatch, data_dir, tmp_path):
    """The real lm-eval pipeline over symoe_gpqa_sc: 5 repeats per doc, scored by their vote."""
    import lm_eval

    from symoe_eval.harness import plugin
    from symoe_eval.harness.task_functions import load_splits
    from symoe_eval.harness.lm import lm_class
    ExpertLM = lm_class("symoe_expert")

    plugin.activate()
    golds = {r["question"]: r["gold_answer"] for r in load_splits("gpqa", str(data_dir))["test"][:4]}
    def shifted(g, by):
        return "ABCD"[("ABCD".index(g) + by) % 4]

    def respond(name, req):
        prompt = req.messages[-1][1]
        gold = next(g for q, g in golds.items() if q in prompt)
        rng = draw(req)  # what a sampling engine's draw depends on: prompt and seed
        pattern = rng.choice([gold, gold, shifted(gold, 1), shifted(gold, 2), None])
        return f"Thought {rng.randrange(10**6)}. " + ("I give up." if pattern is None else f"The answer is ({pattern})")

    use_fakes(monkeypatch, respond)
    lm = ExpertLM(pool="tiny-cpu", expert="smollm2-135m", cache_dir="none")
    results = lm_eval.simple_evaluate(model=lm, tasks=["symoe_gpqa_sc"], limit=4, metadata={"data_dir": str(data_dir)},
                                      log_samples=True)
    samples = results["samples"]["symoe_gpqa_sc"]
    assert all(len(s["resps"][0]) == 5 for s in samples)
    assert all(len(set(s["resps"][0])) == 5 for s in samples)  # five samples, not one answer five times
    for s in samples:
        assert s["filtered_resps"][0] == vote([extract_answer(t, s["doc"]["question"]) for t in s["resps"][0]])
