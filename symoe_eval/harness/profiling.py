"""``symoe profile`` through lm-eval's tasks: the validation set a profile is built on, its
prompts rendered, its answers read and graded exactly as lm-eval scores the task; the profile
itself is built by ``symoe_eval.symbolic.profiling``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from symoe_eval.errors import SymoeError
from symoe_eval.harness.lm import generation_kwargs
from symoe_eval.harness.lm_eval_internals import task_answer
from symoe_eval.symbolic import profiling
from symoe_eval.symbolic.profiles import base_task
from symoe_eval.symbolic.profiling import ValidationSet
from symoe_eval.runtime.context import RunContext


def profile_task(pool: str, task: str, limit: int | None = None, data_dir: str | None = None,
                 profiles_root: str | None = None, samples: int = 1, progress: bool = True,
                 include_path: str | None = None, split: str | None = None, question_field: str | None = None,
                 **run: Any) -> Path:
    """Profile ``task`` on ``pool`` and write the profile, its report and its annotations;
    ``run``: the run arguments (``settings.RUN_ARGS``: engine, cache_dir, seed, batch_size, ...)."""
    context = RunContext.create(pool=pool, **run)
    val = load_validation(task, limit, data_dir, include_path, split, question_field)
    return profiling.build_profile(context, val, limit, profiles_root, samples, progress)


def task_grader(task) -> Callable[[dict, str], bool]:
    """Right or wrong as lm-eval scores the task: its first filter, then its ``process_results``
    (``exact_match`` if reported, else its first metric), a value above 0 being right."""
    answer = task_answer(task)

    def grade(doc: dict, text: str) -> bool:
        metrics = task.process_results(doc, [answer(doc, text)])
        return float(metrics.get("exact_match", next(iter(metrics.values())))) > 0

    return grade


def profiled_docs(task, split: str | None, twin: bool) -> list[dict]:
    """A ``_val`` twin's test docs; else the named split, the validation split or the train split."""
    if twin:
        return list(task.test_docs())
    if split:
        if split not in (task.dataset or {}):
            raise SymoeError(f"task {task.config.task} has no split '{split}' (it has: {', '.join(task.dataset or [])})")
        return list(task.dataset[split])
    for has, docs in ((task.has_validation_docs, task.validation_docs), (task.has_training_docs, task.training_docs)):
        if has():
            return list(docs())
    raise SymoeError(f"task {task.config.task} has no validation or training split; name one with --split")


def load_validation(task: str, limit: int | None, data_dir: str | None, include_path: str | None = None,
                    split: str | None = None, question_field: str | None = None) -> ValidationSet:
    """The docs to profile ``task`` on: its ``<task>_val`` twin (ours), or the task itself from
    lm-eval or ``include_path`` on a validation/training split, prompts rendered by lm-eval."""
    from symoe_eval.harness import plugin

    plugin.activate()
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=include_path, metadata={"data_dir": data_dir} if data_dir else None)
    twin = f"{base_task(task)}_val" in manager.all_tasks and not split
    name = f"{base_task(task)}_val" if twin else task
    if name not in manager.all_tasks:
        raise SymoeError(f"unknown task '{task}'; pass --include_path for a task of your own")
    loaded = manager.load([name])["tasks"][name]
    docs = profiled_docs(loaded, split, twin)[: limit or None]
    prompts = [loaded.doc_to_text(d) for d in docs]
    questions = [str(d.get(question_field or "question", p)) for d, p in zip(docs, prompts)]
    return ValidationSet(base_task(task) if twin else task, docs, prompts, questions,
                         generation_kwargs(loaded.config.generation_kwargs), task_grader(loaded), task_answer(loaded))
