"""Stock lm-eval flags through simple_evaluate (fake engines) and the stock CLI."""

import json

import lm_eval
import pytest

from conftest import run_cli
from fakes import use_fake_engines
from symoe_eval.harness import plugin
from symoe_eval.harness.lm import lm_class
ExpertLM = lm_class("symoe_expert")


@pytest.fixture
def seen(monkeypatch):
    """Every request the fake experts receive."""
    plugin.activate()
    requests = []

    def respond(name, request):
        requests.append(request)
        return "The answer is (A)"

    use_fake_engines(monkeypatch, respond)
    return requests


def evaluate(**flags):
    lm = ExpertLM(pool="tiny-cpu", expert="smollm2-135m", cache_dir="none") if "model" not in flags else flags.pop("model")
    return lm_eval.simple_evaluate(model=lm, tasks=["symoe_demo"], limit=2, **flags)


def test_apply_chat_template_keeps_messages_and_the_system_instruction(seen):
    evaluate(apply_chat_template=True, system_instruction="Answer like a careful doctor.")
    messages = seen[0].messages
    assert messages[0] == ("system", "Answer like a careful doctor.")
    assert messages[-1][0] == "user" and messages[-1][1].startswith("Question: ")


def test_system_instruction_without_chat_template_is_a_system_message_too(seen):
    evaluate(system_instruction="Be brief.")
    assert seen[0].messages[0] == ("system", "Be brief.") and seen[0].messages[-1][1].startswith("Question: ")


def test_lm_eval_seed_is_followed_unless_model_args_set_one(seen, monkeypatch):
    def seeds(random_seed, **model_args):
        seen.clear()
        lm = lm_eval.simple_evaluate(model="symoe_expert", model_args={"pool": "tiny-cpu", "expert": "smollm2-135m",
                                                                        "cache_dir": "none", **model_args},
                                     tasks=["symoe_demo"], limit=2, random_seed=random_seed)
        return [r.params.seed for r in seen], lm["config"]

    one, _ = seeds(1)
    two, _ = seeds(2)
    pinned, _ = seeds(2, seed=1)
    assert set(one) == {1} and set(two) == {2} and set(pinned) == {1}


def test_num_fewshot_is_refused_in_one_warning(seen, caplog):
    with caplog.at_level("WARNING"):
        try:
            lm_eval.simple_evaluate(model="symoe_expert", model_args={"pool": "tiny-cpu", "expert": "smollm2-135m",
                                                                      "cache_dir": "none"},
                                    tasks=["symoe_demo"], limit=1, num_fewshot=2)
        except Exception:
            pass  # lm-eval may refuse the shots itself; our warning comes first, when it builds the model
    said = [r.getMessage() for r in caplog.records if "num_fewshot" in r.getMessage() and "zero-shot" in r.getMessage()]
    assert said == ["symoe_expert runs zero-shot (the paper's setting): --num_fewshot 2 is ignored by symoe_* tasks, "
                    "which pin num_fewshot: 0"]


def test_stock_lm_eval_shows_our_errors_in_one_line(tmp_path):
    done = run_cli(["lm_eval", "--model", "symoe", "--model_args", "pool=tiny-cpu,k=abc", "--tasks", "symoe_demo",
                    "--limit", "1"], cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == "error: model_args k=abc: expected an integer >= 1"
    assert "Traceback" not in done.stderr
    debug = run_cli(["lm_eval", "--model", "symoe", "--model_args", "pool=tiny-cpu,k=abc", "--tasks", "symoe_demo",
                     "--limit", "1"], cwd=tmp_path, env_extra={"SYMOE_EVAL_DEBUG": "1"})
    assert "Traceback" in debug.stderr


def test_runs_are_named_by_method_pool_and_expert():
    from lm_eval.loggers.evaluation_tracker import GeneralConfigTracker

    plugin.activate()
    tracker = GeneralConfigTracker()
    tracker.log_experiment_args("symoe_expert", "pool=tiny-cpu,expert=smollm2-135m,cache_dir=/x", None, None, False)
    assert tracker.model_name == "symoe_expert-tiny-cpu-smollm2-135m"
    tracker.log_experiment_args("moa", {"pool": "tiny-cpu", "layers": 3}, None, None, False)
    assert tracker.model_name == "moa-tiny-cpu-layers3"
    tracker.log_experiment_args("hf", "pretrained=org/model", None, None, False)
    assert tracker.model_name == "org/model"  # lm-eval's own models keep lm-eval's naming


def test_results_record_our_filters_by_a_stable_name(seen):
    config = json.dumps(evaluate()["configs"]["symoe_demo"]["filter_list"])
    assert "symoe_extract" in config and " at 0x" not in config


def test_cache_dir_none_in_a_model_args_string_turns_the_cache_off(tmp_path, monkeypatch):
    """lm-eval's model_args parser makes ``cache_dir=none`` None, which meant the default cache:
    a run through ``simple_evaluate(model_args=...)`` that asked for no cache wrote one."""
    from lm_eval.utils import simple_parse_args_string

    from symoe_eval.harness.lm import lm_class
    ExpertLM = lm_class("symoe_expert")

    monkeypatch.setenv("SYMOE_CACHE_DIR", str(tmp_path / "root"))
    args = simple_parse_args_string("pool=tiny-cpu,expert=smollm2-135m,cache_dir=none")
    assert args["cache_dir"] is None
    assert ExpertLM(**args).runtime.cache_dir is None
    assert ExpertLM(pool="tiny-cpu", expert="smollm2-135m").runtime.cache_dir is not None  # the default stays


def test_samples_flag_logs_the_documents_lm_eval_names_so_the_run_summary_is_found(seen, tmp_path):
    """With ``--samples``, lm-eval hands models positions in its list as doc ids but writes the
    real ids into its samples file; the routing log and the run summary must use the real ones,
    or ``symoe report`` / ``leaderboard`` cannot tie the summary to the run (failed before: the
    log said docs 0, 1)."""
    from lm_eval.loggers import EvaluationTracker

    from symoe_eval.analysis.runs import load_run

    tracker = EvaluationTracker(output_path=str(tmp_path / "out"))
    results = lm_eval.simple_evaluate(model="symoe_expert", model_args={"pool": "tiny-cpu", "expert": "smollm2-135m", "cache_dir": "none"},
                                      tasks=["symoe_demo"], samples={"symoe_demo": [5, 12]}, log_samples=True,
                                      evaluation_tracker=tracker)
    tracker.save_results_aggregated(results=results, samples=results["samples"])
    tracker.save_results_samples(task_name="symoe_demo", samples=results["samples"]["symoe_demo"])
    run = load_run(tmp_path / "out")
    assert sorted(run.tasks["symoe_demo"].scores) == [5, 12]
    assert run.summary is not None and run.summary["method"] == "symoe_expert"
