"""The task YAMLs through the real lm-eval pipeline with a fake engine: prompts, filter, group."""

import pytest

from fakes import use_fake_engines


@pytest.fixture
def evaluate(monkeypatch, data_dir):
    import lm_eval

    from symoe_eval.harness import plugin
    from symoe_eval.harness.lm import lm_class
    ExpertLM = lm_class("symoe_expert")

    plugin.activate()
    prompts = []

    def respond(name, req):
        prompts.append(req.messages[-1][1])
        return "Step by step... The answer is (A)" if "(A)" in prompts[-1] else "So \\boxed{204}."

    use_fake_engines(monkeypatch, respond)
    lm = ExpertLM(pool="tiny-cpu", expert="smollm2-135m", cache_dir="none")

    def run(tasks, limit=2):
        return lm_eval.simple_evaluate(model=lm, tasks=tasks, limit=limit, metadata={"data_dir": str(data_dir)}), prompts

    return run


def test_group_runs_all_four_and_aggregates(evaluate):
    results, prompts = evaluate(["symoe"])
    per_task = results["results"]
    assert {"symoe", "symoe_mmlu_pro", "symoe_gpqa", "symoe_aime24", "symoe_medmcqa"} <= set(per_task)
    subtasks = [per_task[t]["exact_match,answer"] for t in ("symoe_mmlu_pro", "symoe_gpqa", "symoe_aime24", "symoe_medmcqa")]
    assert per_task["symoe"]["exact_match,answer"] == pytest.approx(sum(subtasks) / 4)  # macro average


def test_prompts_are_the_papers(evaluate):
    _, prompts = evaluate(["symoe_gpqa", "symoe_aime24"], limit=1)
    mc = next(p for p in prompts if "The options are" in p)
    assert mc.startswith("Question: ") and mc.endswith(
        'Provide your step-by-step reasoning first, and then print "The answer is (X)", where X is the answer '
        "choice (one capital letter), at the end of your response.")
    aime = next(p for p in prompts if "The options are" not in p)
    assert aime.endswith('print "The answer is \\boxed{X}", where X is the final answer, at the end of your response.')


def test_validation_twin_reads_the_train_split(evaluate):
    results, _ = evaluate(["symoe_gpqa_val"], limit=3)
    assert results["n-samples"]["symoe_gpqa_val"]["original"] == 249


@pytest.mark.parametrize("reply, right", [("The answer is 294.", 1.0), ("The answer is 194 + 100.", 0.0),
                                          ("The answer is 100 + 194.", 0.0)])
def test_skills_answers_are_graded_as_written(monkeypatch, reply, right):
    """symoe_skills doc 0 asks "What is 194 + 100?": restating the sum is no answer, though
    math-aware matching (the free-form default) would evaluate it to 294."""
    import lm_eval

    from symoe_eval.harness import plugin
    from symoe_eval.harness.lm import lm_class

    plugin.activate()
    use_fake_engines(monkeypatch, lambda name, req: reply)
    lm = lm_class("symoe_expert")(pool="specialists", expert="smollm2-135m", cache_dir="none")
    results = lm_eval.simple_evaluate(model=lm, tasks=["symoe_skills"], samples={"symoe_skills": [0]})
    assert results["results"]["symoe_skills"]["exact_match,answer"] == right
