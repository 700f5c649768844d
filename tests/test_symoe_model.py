"""The symoe lm-eval model end to end with fake engines whose experts are right by subject."""

import json
import random
import re

import numpy as np
import pytest
from lm_eval.api.instance import Instance

from fakes import FakeEngine, draw, use_fake_engines
from symoe_eval.harness.lm import lm_class
from symoe_eval.errors import SymoeError
from symoe_eval.methods.symoe import SymbolicMoE
from symoe_eval.symbolic.profiles import TaskProfile, build_expert_profiles, save_profile

SUBJECTS = ["biology", "algebra", "law"]
EXPERTS = {"bio-expert": "biology", "math-expert": "algebra", "law-expert": "law", "generalist": None}
POOL = """
name: subjects
experts:
{experts}
embedding_model: {{name: e, model: org/e, source: {{hf_id: org/e}}}}
"""


def question(subject, n, gold):
    opts = " ".join(f"({c}) option {c}" for c in "ABCD")
    return f"[{subject}] Problem {n}: pick the right one. The options are: {opts}", gold


def respond(name, request):
    """Keyword model names the subject; an expert is right on its own subject (and the generalist
    a third of the time); the aggregator takes the majority of the answers it is shown."""
    prompt = request.messages[-1][1]
    if "core knowledge, subjects or skills" in prompt:
        subject = re.search(r"\[(\w+)\]", prompt).group(1)
        return f"Keywords: {subject}, hunch{draw(request).randrange(10**6)}"  # said once: dropped
    if prompt.startswith("You have been provided"):
        letters = re.findall(r"The answer is \(([A-D])\)", prompt.split("Question:")[0])
        return f"Combining them. The answer is ({max(sorted(set(letters)), key=letters.count)})"
    subject = re.search(r"\[(\w+)\] Problem", prompt).group(1)
    gold = GOLD[prompt.split("Question: ")[1].split("\n")[0]]
    rng = draw(request)
    right = EXPERTS[name] == subject or (EXPERTS[name] is None and rng.random() < 0.34)
    wrong = "ABCD"[("ABCD".index(gold) + 1 + rng.randrange(3)) % 4]
    return f"Let me think ({rng.randrange(10**6)}). The answer is ({gold if right else wrong})"


GOLD = {}


def make_questions(count, offset, seed):
    rng = random.Random(seed)
    out = []
    for n in range(count):
        subject = SUBJECTS[n % 3]
        text, gold = question(subject, offset + n, rng.choice("ABCD"))
        GOLD[text] = gold
        out.append((text, gold, subject))
    return out


@pytest.fixture
def setup(tmp_path, monkeypatch):
    FakeEngine.log.clear()
    experts = "\n".join(f"  - {{name: {e}, model: org/{e}, source: {{hf_id: org/{e}}}{', tags: [keyword_model]' if e == 'generalist' else ''}}}" for e in EXPERTS)
    pool_path = tmp_path / "subjects.yaml"
    pool_path.write_text(POOL.format(experts=experts))
    use_fake_engines(monkeypatch, respond, batch_size=64)
    monkeypatch.setattr(SymbolicMoE, "embed", lambda self, texts: np.eye(len(texts), 8))
    # Validation: each expert answered once; the generalist is right on a third of every subject.
    val = make_questions(60, 0, seed=1)
    keywords = [[s] for _, _, s in val]
    correct = {e: [[EXPERTS[e] == s or (EXPERTS[e] is None and (i // 3) % 3 == 0)] for i, (_, _, s) in enumerate(val)] for e in EXPERTS}
    profiles_root = tmp_path / "profiles"
    for task, aggregator in (("symoe_gpqa", "generalist"), ("symoe_medmcqa", "law-expert")):
        profile = TaskProfile(task, "subjects", build_expert_profiles(keywords, correct), aggregator,
                              keywords=sorted({k for ks in keywords for k in ks}))
        save_profile(profile, profiles_root, "report")
    return pool_path, profiles_root, tmp_path / "logs"


def instances(task, qs):
    kwargs = {"until": [], "do_sample": True, "temperature": 0.7, "max_gen_toks": 512}
    return [Instance("generate_until", {"question": t, "gold_answer": g}, (f"Question: {t}\nAnswer step by step.", kwargs), i,
                     metadata=(task, i, 1)) for i, (t, g, _) in enumerate(qs)]


def accuracy(outputs, qs):
    return np.mean([f"The answer is ({g})" in o for o, (_, g, _) in zip(outputs, qs)])


def model(setup, **kw):
    pool, profiles, logs = setup
    return lm_class("symoe")(pool=str(pool), profiles=str(profiles), log_dir=str(logs), cache_dir="none", **kw)


def test_router_recruits_subject_experts_and_beats_random(setup):
    test = make_questions(90, 1000, seed=2)
    routed = model(setup).generate_until(instances("symoe_gpqa", test))
    rows = [json.loads(line) for line in next(setup[2].glob("routing_symoe_*.jsonl")).open()]
    for row, (_, _, subject) in zip(rows, test):
        owner = next(e for e, s in EXPERTS.items() if s == subject)
        assert row["experts"].count(owner) >= 2, row  # the subject's strong expert dominates
    random_acc = accuracy(model(setup, routing="random").generate_until(instances("symoe_gpqa", test)), test)
    assert accuracy(routed, test) >= 0.95 > 0.6 > random_acc


def test_calibrated_routing_through_the_model_recruits_distinct_experts(setup):
    test = make_questions(12, 4000, seed=5)
    model(setup, routing="calibrated").generate_until(instances("symoe_gpqa", test))
    rows = [json.loads(line) for line in next(setup[2].glob("routing_symoe_*.jsonl")).open()]
    for row, (_, _, subject) in zip(rows, test):
        owner = next(e for e, s in EXPERTS.items() if s == subject)
        assert row["experts"][:2] == [owner, "generalist"] and len(set(row["experts"])) == 3, row
        assert row["mapped_keywords"] == [subject] and row["fallback"] is None


def test_run_summary_log_and_one_load_per_model(setup):
    gpqa, med = make_questions(9, 2000, seed=3), make_questions(6, 3000, seed=4)
    out = model(setup, k=3).generate_until(instances("symoe_gpqa", gpqa) + instances("symoe_medmcqa", med))
    assert len(out) == 15
    summary = json.loads(next(setup[2].glob("routing_summary_symoe_*.json")).read_text())
    assert summary["aggregators"] == {"symoe_gpqa": "generalist", "symoe_medmcqa": "law-expert"}
    assert all(m["loads"] == 1 for m in summary["models"].values())
    assert summary["total_loads"] == summary["distinct_models_loaded"]
    assert [s["name"] for s in summary["stages"]] == ["keywords", "experts", "aggregation"]
    rows = [json.loads(line) for line in open(summary["routing_log"])]
    # each of a question's 5 keyword samples draws its own hunch, so only the subject is kept
    assert all(r["keywords"] and not any(k.startswith("hunch") for k in r["keywords"]) for r in rows)
    assert {(r["task"], r["doc_id"]) for r in rows} == {("symoe_gpqa", i) for i in range(9)} | {("symoe_medmcqa", i) for i in range(6)}
    first = rows[0]
    assert first["mapped_keywords"] and len(first["experts"]) == 3 and len(first["responses"]) == 3
    assert first["final_answer"] in "ABCD" and first["aggregator"] == "generalist"
    keyword_calls = summary["models"]["generalist"]["calls"]
    assert keyword_calls >= 15 * 5  # five keyword samples per question, plus its expert/aggregator calls


def test_same_seed_same_routes_and_duplicates_are_separate_samples(setup):
    qs = make_questions(12, 4000, seed=5)
    model(setup, seed=4).generate_until(instances("symoe_gpqa", qs))
    model(setup, seed=4).generate_until(instances("symoe_gpqa", qs))
    logs = sorted(setup[2].glob("routing_symoe_*.jsonl"))
    runs = [[json.loads(line)["experts"] for line in open(p)] for p in logs]
    assert len(runs) == 2 and runs[0] == runs[1]
    rows = [json.loads(line) for line in open(logs[0])]
    twins = [[x["text"] for x in r["responses"] if x["expert"] == e] for r in rows for e in set(r["experts"])
             if r["experts"].count(e) > 1]
    assert twins and all(len(set(texts)) == len(texts) for texts in twins)  # a duplicate recruit samples anew
    finals = [[json.loads(line)["final_text"] for line in open(p)] for p in logs]
    assert finals[0] == finals[1]  # the same request samples the same text again
    requests = [(name, n) for event, name, n in FakeEngine.log if event == "generate"]
    assert requests  # the fake saw grouped batches


def test_missing_profile_and_bad_arguments(setup):
    # a task without its own profile is routed with the pool's others (tests/test_unseen_tasks.py); profile=own refuses
    with pytest.raises(SymoeError, match="symoe profile --pool subjects --task symoe_aime24"):
        model(setup, profile="own").generate_until(instances("symoe_aime24", make_questions(1, 5000, seed=6)))
    with pytest.raises(SymoeError, match="unknown routing"):
        model(setup, routing="oracle")
    with pytest.raises(SymoeError, match="unknown expert 'gpt-5'"):
        model(setup, aggregator="gpt-5")


@pytest.mark.parametrize("args,message", [
    ({"k": "abc"}, "model_args k=abc: expected an integer >= 1"),
    ({"k": "0"}, "model_args k=0: expected an integer >= 1"),
    ({"seed": "x"}, "model_args seed=x: expected an integer"),
    ({"temperature": "-1"}, "model_args temperature=-1: expected a finite number >= 0"),
    ({"temperature": "nan"}, "model_args temperature=nan: expected a finite number >= 0"),  # was accepted
    ({"temperature": float("inf")}, "model_args temperature=inf: expected a finite number >= 0"),
    ({"k": 1.5}, "model_args k=1.5: expected an integer >= 1"),  # lm-eval hands 1.5 as a float: was k=1
    ({"k": "1.5"}, "model_args k=1.5: expected an integer >= 1"),
    ({"k": -1.0}, "model_args k=-1: expected an integer >= 1"),  # lm_eval's CLI hands k=-1 as -1.0: was echoed so
    ({"max_gen_toks": "0"}, "model_args max_gen_toks=0: expected an integer >= 1"),
    ({"max_loaded": "two"}, "model_args max_loaded=two: expected an integer >= 1"),
])
def test_bad_model_args_name_the_argument_and_its_range(setup, args, message):
    with pytest.raises(SymoeError) as err:
        model(setup, **args)
    assert str(err.value) == message


def test_integer_model_args_take_whole_floats_and_big_seeds_exactly():
    from symoe_eval.settings import model_arg

    assert model_arg("k", 2.0) == 2 and model_arg("k", "3") == 3
    assert model_arg("seed", str(2**62 + 1)) == 2**62 + 1
    assert model_arg("temperature", "0.7", float) == 0.7


def test_a_profile_missing_a_field_names_the_file_and_field(setup):
    pool, profiles, _ = setup
    path = profiles / "subjects" / "symoe_gpqa" / "profile.json"
    data = json.loads(path.read_text())
    del data["aggregator"]
    path.write_text(json.dumps(data))
    with pytest.raises(SymoeError, match=f"{path} is not a valid profile: field 'aggregator' is missing"):
        model(setup).generate_until(instances("symoe_gpqa", make_questions(1, 6000, seed=7)))


def test_long_questions_keep_the_aggregation_instruction_and_every_response(setup, monkeypatch):
    """At a 1024-token context the question loses its middle, never the instruction or a response."""
    pool, profiles, logs = setup
    text = pool.read_text().replace("source: {hf_id: org/", "engine_kwargs: {max_model_len: 1024}, source: {hf_id: org/")
    pool.write_text(text.replace("engine_kwargs: {max_model_len: 1024}, source: {hf_id: org/e}", "source: {hf_id: org/e}"))
    seen = []

    def capture(name, request):
        seen.append(request.messages[-1][1])
        return respond(name, request)

    use_fake_engines(monkeypatch, capture, batch_size=64)
    qs = [(f"{text}\n" + " ".join(f"filler{i}" for i in range(1500)), gold, subject)
          for text, gold, subject in make_questions(3, 7000, seed=8)]
    for text, gold, _ in qs:
        GOLD[text.split("\n")[0]] = gold
    model(setup, max_gen_toks=200).generate_until(instances("symoe_gpqa", qs))
    aggregations = [p for p in seen if p.startswith("You have been provided")]
    assert len(aggregations) == 3
    assert all(len(re.findall(r"### Model \d's response:", p)) == 3 and "[...]" in p for p in aggregations)
    summary = json.loads(next(logs.glob("routing_summary_symoe_*.json")).read_text())
    assert summary["truncated_questions"] == 3
