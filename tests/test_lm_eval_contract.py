"""What we rely on inside lm-eval that is not its public API (all of it in
``symoe_eval.harness.lm_eval_internals``), each checked against the installed lm-eval, so an
upgrade that changes one fails here by name instead of silently (issue 19):
- ``simple_evaluate``'s arguments (``limit``, ``num_fewshot``, ``system_instruction``,
  ``random_seed``, ``evaluation_tracker`` and its ``output_path``) and ``evaluate``'s
  ``eval_tasks`` read off the stack, and a task's first filter pipeline (``task._filters[0]``);
- ``TaskManager.__init__``'s ``include_path`` / ``include_defaults`` and
  ``GeneralConfigTracker.log_experiment_args``, which it wraps."""

import inspect
from pathlib import Path

from lm_eval.api.model import LM

from conftest import run_cli


def test_simple_evaluate_still_has_the_arguments_we_read_off_the_stack():
    import lm_eval.evaluator

    parameters = inspect.signature(lm_eval.evaluator.simple_evaluate).parameters
    assert {"limit", "num_fewshot", "system_instruction", "random_seed", "evaluation_tracker"} <= set(parameters)
    assert "samples" in inspect.signature(lm_eval.evaluator.evaluate).parameters  # sampled_doc_ids reads it


def test_evaluate_still_holds_eval_tasks_with_their_filters_while_a_model_generates(tmp_path):
    """Without ``eval_tasks`` the routing log would read answers with our extractor, not the task's
    filter, and say nothing."""
    import lm_eval

    from symoe_eval.harness import plugin
    from lm_eval.loggers import EvaluationTracker

    from symoe_eval.harness.lm_eval_internals import evaluation_argument, lm_eval_output_path, running_task_answers

    plugin.activate()
    seen = {}

    class Probe(LM):
        def generate_until(self, requests, disable_tqdm=False):
            seen["answers"] = running_task_answers()
            seen["limit"] = evaluation_argument("limit")
            seen["output"] = lm_eval_output_path()
            doc = requests[0].doc
            seen["read"] = seen["answers"]["symoe_demo"](doc, "Thinking. The answer is (C)")
            return ["The answer is (C)"] * len(requests)

        def loglikelihood(self, requests, disable_tqdm=False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            raise NotImplementedError

    lm_eval.simple_evaluate(model=Probe(), tasks=["symoe_demo"], limit=2,
                            evaluation_tracker=EvaluationTracker(output_path=str(tmp_path / "out" / "r.json")))
    assert set(seen["answers"]) == {"symoe_demo"} and seen["limit"] == 2
    assert seen["output"] == Path(tmp_path / "out")  # a .json output path means its folder
    assert seen["read"] == "C"  # symoe_demo's first filter is our extractor, applied through lm-eval


def test_the_classes_plugin_wraps_still_take_what_it_passes():
    import lm_eval.loggers.evaluation_tracker as tracker
    import lm_eval.tasks.manager as manager

    assert {"include_path", "include_defaults"} <= set(inspect.signature(manager.TaskManager.__init__).parameters)
    args = list(inspect.signature(tracker.GeneralConfigTracker.log_experiment_args).parameters)
    assert args[1:3] == ["model_source", "model_args"] and callable(tracker.sanitize_model_name)
    config = tracker.GeneralConfigTracker()
    assert hasattr(config, "model_name") and hasattr(config, "model_name_sanitized")


def test_lm_eval_still_takes_output_path(tmp_path):
    done = run_cli(["lm_eval", "run", "--help"], cwd=tmp_path)
    text = done.stdout + done.stderr
    if "--output_path" not in text:  # an lm-eval whose CLI has no subcommands
        done = run_cli(["lm_eval", "--help"], cwd=tmp_path)
        text = done.stdout + done.stderr
    assert "--output_path" in text and "-o" in text
