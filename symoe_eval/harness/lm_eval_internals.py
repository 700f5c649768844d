"""Every place symoe-eval relies on lm-eval beyond its public model and registry API, in one
module; ``tests/test_lm_eval_contract.py`` checks each against the pinned lm-eval, so an upgrade
that changes one fails there by name.

- what lm-eval asked for that it never hands a model: the run's seed, system instruction and
  few-shot count (locals of the ``simple_evaluate`` call on the stack), the tasks' own answer
  filters (``evaluate``'s ``eval_tasks`` and a task's ``_filters``), the documents ``--samples``
  chose (``evaluate``'s ``samples``), the output folder (the
  evaluation tracker ``simple_evaluate`` was given);
- two wrappers: ``TaskManager.__init__`` puts our task folder on every task manager's include
  path, and ``GeneralConfigTracker.log_experiment_args`` names our runs."""

from __future__ import annotations

import functools
import inspect
import sys
from pathlib import Path
from typing import Any, Callable


def _evaluator_local(function: str, name: str, default: Any = None) -> Any:
    """A local of the ``lm_eval.evaluator.<function>`` call on the stack; ``default`` outside one."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == function and frame.f_globals.get("__name__") == "lm_eval.evaluator":
            return frame.f_locals.get(name, default)
        frame = frame.f_back
    return default


def evaluation_argument(name: str, default: Any = None) -> Any:
    """An argument of the ``lm_eval.evaluator.simple_evaluate`` call that is building this model
    (the stock CLI and the Python API both go through it); ``default`` outside one."""
    return _evaluator_local("simple_evaluate", name, default)


def task_answer(task) -> Callable[[dict, str], str]:
    """The answer lm-eval scores in ``text`` for ``doc``: the task's first filter pipeline applied
    to it (a gsm8k regex, our extractor on symoe_* tasks)."""
    from lm_eval.api.instance import Instance

    ensemble = task._filters[0]  # lm-eval keeps a task's filter pipelines here; there is no public accessor

    def answer(doc: dict, text: str) -> str:
        instance = Instance("generate_until", doc, ("", {}), 0)
        instance.resps = [text]
        ensemble.apply([instance])
        filtered = instance.filtered_resps[ensemble.name]
        return filtered[0] if isinstance(filtered, list) else filtered

    return answer


def running_task_answers() -> dict[str, Callable[[dict, str], str]]:
    """``task_answer`` of each task the ``lm_eval.evaluator.evaluate`` call on the stack runs, by
    name; empty outside one (our extractor then reads answers)."""
    tasks = _evaluator_local("evaluate", "eval_tasks", None) or {}
    return {name: task_answer(task) for name, task in tasks.items() if getattr(task, "_filters", None)}


def sampled_doc_ids() -> dict[str, list[int]]:
    """``--samples`` of the running evaluation: per task, the document ids it chose. lm-eval hands
    a model each request's position in that list as ``doc_id`` and writes ``indices[doc_id]`` into
    its samples file; empty without ``--samples``."""
    return _evaluator_local("evaluate", "samples", None) or {}


def lm_eval_output_path() -> Path | None:
    """The ``--output_path`` of the running evaluation (CLI, config file or Python API: the
    tracker given to ``simple_evaluate``), if any; a .json path means its folder."""
    value = getattr(evaluation_argument("evaluation_tracker"), "output_path", None)
    if not value:
        return None
    path = Path(value).expanduser()
    return path.parent if path.suffix == ".json" else path


def _patched(original: Callable) -> bool:
    return getattr(original, "_symoe_patched", False)


def wrap_task_manager_init(manager_cls, folder: str) -> None:
    """Every ``TaskManager`` that includes lm-eval's default tasks also includes ``folder``, right
    after lm-eval's built-ins, so a user's ``--include_path`` still wins (lm-eval has no hook)."""
    original = manager_cls.__init__
    if _patched(original):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        if bound.arguments.get("include_defaults", True):
            user = bound.arguments.get("include_path") or []
            user = list(user) if isinstance(user, (list, tuple)) else [user]
            bound.arguments["include_path"] = [folder, *user]
        original(*bound.args, **bound.kwargs)

    __init__._symoe_patched = True
    manager_cls.__init__ = __init__


def wrap_log_experiment_args(tracker_module, run_name: Callable[[str, Any], str | None]) -> None:
    """Runs that ``run_name`` names get that name as lm-eval's ``model_name`` (its output folder),
    instead of the random id lm-eval would give a model without ``pretrained``."""
    cls = tracker_module.GeneralConfigTracker
    original = cls.log_experiment_args
    if _patched(original):
        return

    @functools.wraps(original)
    def log_experiment_args(self, model_source, model_args, *args, **kwargs):
        original(self, model_source, model_args, *args, **kwargs)
        name = run_name(model_source, model_args)
        if name:
            self.model_name = name
            self.model_name_sanitized = tracker_module.sanitize_model_name(name)

    log_experiment_args._symoe_patched = True
    cls.log_experiment_args = log_experiment_args
