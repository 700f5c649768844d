"""What lm-eval asked for that it never hands a model: the run's seed, its system instruction,
its few-shot count (read from the ``simple_evaluate`` call on the stack, the one place that has
them), the tasks' own answer filters (from the ``evaluate`` call), and chat histories, which our
``apply_chat_template`` keeps as messages so that each expert formats them with its own template."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

CHAT_PREFIX = "\x00symoe-chat:"  # marks a context that is a JSON chat history, not text

Message = tuple[str, str]


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


def encode_chat(history: list[dict[str, str]]) -> str:
    return CHAT_PREFIX + json.dumps([{"role": m["role"], "content": m["content"]} for m in history])


def split_context(context: str, system_instruction: str | None = None) -> tuple[tuple[Message, ...], str]:
    """(messages before the question, the question's user text) of an lm-eval context: a chat
    history from ``--apply_chat_template`` (few-shot turns and system message kept as messages),
    or plain text, whose leading ``--system_instruction`` becomes a system message."""
    if context.startswith(CHAT_PREFIX):
        history = json.loads(context[len(CHAT_PREFIX):])
        while history and history[-1]["role"] == "assistant":  # a gen_prefix prefill: not supported
            history = history[:-1]
        last = max((i for i, m in enumerate(history) if m["role"] == "user"), default=None)
        if last is None:
            return tuple((m["role"], m["content"]) for m in history), ""
        return tuple((m["role"], m["content"]) for m in history[:last]), history[last]["content"]
    if system_instruction and context.startswith(system_instruction):
        return (("system", system_instruction),), context[len(system_instruction):].lstrip()
    return (), context
