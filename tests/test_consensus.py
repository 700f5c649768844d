"""``aggregate=disagree``: questions whose recruits all state one answer skip the aggregator."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from fakes import fake_symoe
from symoe_eval.harness.lm import lm_class
from symoe_eval.symbolic.aggregation import consensus
from symoe_eval.methods.base import Question
from symoe_eval.methods.discussion import Discussion
from symoe_eval.errors import SymoeError

MC = "Which is it? The options are: (A) one (B) two (C) three (D) four"
AIME = "Find the remainder when 2^10 is divided by 1000."


@pytest.mark.parametrize("responses, question, expected", [
    (["So... The answer is (B)", "Hmm. The answer is (B).", "The answer is (b)"], MC, 0),
    (["The answer is (B)", "The answer is (C)", "The answer is (B)"], MC, None),
    (["The answer is (B)", "I cannot tell.", "The answer is (B)"], MC, None),  # an unreadable one breaks it
    (["I cannot tell.", "No idea."], MC, None),  # agreeing on nothing is no answer
    (["2^10 = 1024, so \\boxed{24}", "The answer is \\boxed{24}", "\\boxed{24}"], AIME, 0),
    (["\\boxed{24}", "\\boxed{124}"], AIME, None),
])
def test_consensus_needs_one_valid_answer_from_every_response(responses, question, expected):
    read = Question("t", 0, 0, question, question, {}).answer  # no task filter: our extractor
    assert consensus(responses, read) == (None if expected is None else responses[expected])


def gsm8k_question() -> Question:
    """A question read by lm-eval's own gsm8k task filter (strict-match: the number after ####),
    built from the gsm8k.yaml that lm-eval ships."""
    import lm_eval
    from lm_eval.filters import build_filter_ensemble

    from symoe_eval.harness.lm_eval_internals import task_answer

    config = yaml.safe_load((Path(lm_eval.__file__).parent / "tasks/gsm8k/gsm8k.yaml").read_text())
    strict = config["filter_list"][0]
    components = [(step["function"], {k: v for k, v in step.items() if k != "function"}) for step in strict["filter"]]
    task = SimpleNamespace(_filters=[build_filter_ensemble(strict["name"], components)])
    doc = {"question": "Natalia sold 48 clips in April and half as many in May. How many in all?", "answer": "#### 72"}
    reader = task_answer(task)
    return Question("gsm8k", 0, 0, doc["question"], doc["question"], {}, read_answer=lambda t: reader(doc, t))


# Our extractor reads \boxed{72} in each; gsm8k's filter reads what follows ####.
SPLIT = ["48 + 24. The answer is \\boxed{72}.\n#### 72", "I get \\boxed{72}.\n#### 70", "So \\boxed{72}.\n#### 70"]


def test_consensus_reads_answers_with_the_tasks_own_filter():
    q = gsm8k_question()
    assert [q.answer(t) for t in SPLIT] == ["72", "70", "70"]
    assert consensus(SPLIT, q.answer) is None  # lm-eval would score these differently: no consensus
    assert consensus(SPLIT[1:], q.answer) == SPLIT[1]


def test_the_discussion_vote_reads_answers_with_the_tasks_own_filter():
    q = gsm8k_question()
    row = Discussion._decide(q, ["a", "b", "c"], [SPLIT], {"a": 3, "b": 2, "c": 1}, ask_confidence=False)
    assert row.votes == ["72", "70", "70"] and row.final_answer == "70"
    assert q.answer(row.final_text) == "70"


def respond(name, request):
    """The keyword model names two subjects; each expert always gives its own answer; the
    aggregator always picks a third one, so a skipped aggregation shows in the output."""
    prompt = request.messages[-1][1]
    free = "The options are" not in prompt
    if "core knowledge, subjects or skills" in prompt:
        return "Keywords: physics, algebra"
    if prompt.startswith("You have been provided"):
        return "Weighing them. The answer is " + ("\\boxed{7}" if free else "(C)")
    if name == "qwen2.5-coder-0.5b":
        return "Step by step. The answer is " + ("\\boxed{204}" if free else "(A)")
    return "Let me see. The answer is " + ("\\boxed{13}" if free else "(B)")


@pytest.fixture
def evaluate(monkeypatch, data_dir, tmp_path):
    import lm_eval

    fake_symoe(monkeypatch, respond, batch_size=64)

    def run(aggregate):
        logs = tmp_path / aggregate
        lm = lm_class("symoe")(pool="tiny-cpu", cache_dir="none", log_dir=str(logs), aggregate=aggregate)
        results = lm_eval.simple_evaluate(model=lm, tasks=["symoe_gpqa", "symoe_aime24"], limit=12,
                                          metadata={"data_dir": str(data_dir)}, log_samples=True)
        summary = json.loads(next(logs.glob("routing_summary_*.json")).read_text())
        rows = {(r["task"], r["doc_id"]): r for r in map(json.loads, open(summary["routing_log"]))}
        return results, summary, rows

    return run


def test_disagree_skips_the_aggregator_only_where_the_experts_agree(evaluate):
    always, always_summary, _ = evaluate("always")
    disagree, summary, rows = evaluate("disagree")
    agreed = [key for key, row in rows.items() if row["consensus"]]
    mixed = [key for key, row in rows.items() if not row["consensus"]]
    assert agreed and mixed  # k=3 of two experts: some questions recruit one model only
    for key in agreed:
        assert len(set(rows[key]["experts"])) == 1 and rows[key]["final_text"] == rows[key]["responses"][0]["text"]
    for key in mixed:
        assert len(set(rows[key]["experts"])) == 2 and rows[key]["final_text"].startswith("Weighing them")

    def aggregator_calls(s):
        return [st for st in s["stages"] if st["name"] == "aggregation"][0]["calls"]

    assert aggregator_calls(always_summary) == 24
    assert aggregator_calls(summary) == len(mixed) == 24 - summary["consensus_answers"]
    assert summary["aggregate"] == "disagree" and always_summary["aggregate"] == "always"

    # The task's own filter and metric read the agreed answer from the final text.
    for task in ("symoe_gpqa", "symoe_aime24"):
        for sample in disagree["samples"][task]:
            row = rows[(task, sample["doc_id"])]
            expected = row["responses"][0]["answer"] if row["consensus"] else ("7" if task == "symoe_aime24" else "C")
            assert sample["filtered_resps"] == [expected]
            gold = sample["doc"]["gold_answer"]
            assert sample["exact_match"] == float(expected == gold or (task == "symoe_aime24" and int(expected) == int(gold)))
            # with aggregate=always the same question got the aggregator's own answer
            before = next(x for x in always["samples"][task] if x["doc_id"] == sample["doc_id"])
            assert before["filtered_resps"] == ["7" if task == "symoe_aime24" else "C"]


def test_an_unknown_aggregate_mode_is_one_line():
    with pytest.raises(SymoeError, match="model_args aggregate=sometimes: expected one of always, disagree"):
        lm_class("symoe")(pool="tiny-cpu", cache_dir="none", aggregate="sometimes")
