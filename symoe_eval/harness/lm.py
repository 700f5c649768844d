"""The one lm-eval adapter: a method (``symoe_eval.methods``) as an lm-eval model.

``generate_until`` receives every request of the run at once; the adapter turns them into
questions, runs the method through the runtime's scheduler, and turns its result into lm-eval's
texts, its request cache and our run log. Our models are generative and chat-based: the task's
prompt becomes the user turn of each expert's own chat template, and only ``generate_until`` is
supported. ``lm_class(name)`` (also this module's attribute ``name``, which the plugin registers
lazily) is the lm-eval model class of the method registered as ``name``."""

from __future__ import annotations

import inspect
import json
import logging
from collections import Counter
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.model import LM

from symoe_eval.errors import SymoeError
from symoe_eval.harness import plugin
from symoe_eval.harness.lm_eval_internals import evaluation_argument, lm_eval_output_path, running_task_answers, sampled_doc_ids
from symoe_eval.harness.runlog import RunLog
from symoe_eval.methods import METHODS
from symoe_eval.methods.base import Method, MethodResult, Question
from symoe_eval.runoutput import SCHEMA_VERSION, SUMMARY, row_record
from symoe_eval.runtime.context import RunContext
from symoe_eval.settings import NAMES as RUN_ARG_NAMES

log = logging.getLogger(__name__)

CHAT_PREFIX = "\x00symoe-chat:"  # marks a context that is a JSON chat history, not text
Message = tuple[str, str]


def run_arguments(args: dict) -> dict:
    """The run's arguments among ``args`` (removed from it), with lm-eval's run-wide settings that
    it never hands a model: ``--seed`` unless ``seed`` is given; ``--limit 0`` is refused."""
    run = {name: args.pop(name) for name in RUN_ARG_NAMES if name in args}
    limit = evaluation_argument("limit")
    if limit is not None and float(limit) <= 0:  # lm-eval would fail later in a 35-line traceback
        raise SymoeError(f"--limit {limit} selects no documents; give a count >= 1 or a fraction in (0, 1)")
    if run.get("seed") is None:  # follow lm-eval's --seed (its random_seed), as its own models do
        run["seed"] = evaluation_argument("random_seed", 0) or 0
    if "cache_dir" in run and run["cache_dir"] is None:  # lm-eval's parser turns cache_dir=none into None
        run["cache_dir"] = "none"
    return run


def method_arguments(method_cls: type[Method], name: str, args: dict) -> dict:
    """``args`` as ``method_cls``'s keyword arguments; any it does not take is an error."""
    accepted = set(inspect.signature(method_cls.__init__).parameters) - {"self", "runtime"}
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise SymoeError(f"{name}: unknown model_args {', '.join(unknown)}")
    return args


class MethodLM(LM):
    """Base of the adapters; ``lm_class`` makes one per registered method."""

    method_name = "method"
    method_cls: type[Method] = Method

    def __init__(self, log_dir: str | None = None, question_field: str = "question", max_batch_size=None,
                 **args: Any):
        super().__init__()
        self.runtime = RunContext.create(**run_arguments(args))
        self.pool = self.runtime.pool
        if evaluation_argument("num_fewshot"):
            log.warning("%s runs zero-shot (the paper's setting): --num_fewshot %s is ignored by symoe_* tasks, "
                        "which pin num_fewshot: 0", self.method_name, evaluation_argument("num_fewshot"))
        self.method = self.method_cls(self.runtime, **method_arguments(self.method_cls, self.method_name, args))
        self.log_dir, self.question_field = log_dir, question_field

    # ------------------------------------------------------------------ lm-eval API

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        questions = self.questions(requests)
        with self.runtime.scheduler(not disable_tqdm) as scheduler:
            result = self.method.run(questions, scheduler)
        texts = [result.texts[q.key] for q in questions]
        self.write_run_log(questions, texts, result, scheduler)
        for req, text in zip(requests, texts):
            self.cache_hook.add_partial("generate_until", req.args, text)
        return texts

    def write_run_log(self, questions: list[Question], texts: list[str], result: MethodResult, scheduler) -> None:
        runtime = self.runtime
        runlog = RunLog.open(self.log_dir or lm_eval_output_path(), self.method_name, self.pool.name)
        for row in result.rows:
            runlog.record(row_record(row))
        runlog.finish({
            SUMMARY.schema_version: SCHEMA_VERSION, SUMMARY.method: self.method_name, SUMMARY.pool: self.pool.name,
            SUMMARY.seed: runtime.settings.seed,
            SUMMARY.backend: runtime.engine_name, SUMMARY.questions: len(questions), **result.summary, **scheduler.summary(),
            SUMMARY.reproducibility: runtime.reproducibility(scheduler), **runtime.embedding_summary(),
        }, [(q.task, q.doc_id, text) for q, text in zip(questions, texts)])

    # lm-eval's likelihood API does not apply: experts are chat models sampled for reasoning.
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise SymoeError(f"{self.method_name} is generative only: use generate_until tasks such as symoe_gpqa")

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self.loglikelihood(requests, disable_tqdm)

    # ------------------------------------------------------------------ requests -> questions

    def questions(self, requests: list[Instance]) -> list[Question]:
        """lm-eval's requests as questions: the raw question is the doc's ``question_field`` (else
        the prompt); each task's own filter reads the answers (our extractor outside lm-eval)."""
        out, readers, chosen = [], running_task_answers(), sampled_doc_ids()
        system = evaluation_argument("system_instruction")  # looked up once per call, not per request
        for req, repeat in zip(requests, sample_indices(requests)):
            doc_id = chosen[req.task_name][req.doc_id] if req.task_name in chosen else req.doc_id  # lm-eval's own id
            prefix, prompt = split_context(req.args[0], system)
            text = str((req.doc or {}).get(self.question_field, prompt))
            reader = readers.get(req.task_name)
            read = (lambda t, doc=req.doc, reader=reader: reader(doc, t)) if reader else None
            out.append(Question(req.task_name, doc_id, repeat, prompt, text, generation_kwargs(req.args[1]), prefix,
                                read))
        return out

    @property
    def tokenizer_name(self) -> str:
        """Fingerprints lm-eval's request cache; every expert applies its own template."""
        return f"symoe-eval-{self.method_name}-{self.pool.name}"

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return "each expert's own" if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Keep the history as messages (``--apply_chat_template``), not one model's formatted text."""
        return encode_chat(chat_history)


def generation_kwargs(raw: dict | None) -> dict:
    """A task's gen_kwargs as lm-eval's own backends read them (``until`` a list, one
    ``max_gen_toks``, ``do_sample`` and ``temperature`` agreed); a missing ``max_gen_toks``
    stays 0, which means each expert's own budget."""
    from lm_eval.models.utils import normalize_gen_kwargs

    return normalize_gen_kwargs(dict(raw), 0) if raw else {}


def sample_indices(requests: list[Instance]) -> list[int]:
    """lm-eval sends ``repeats`` copies of a request; number them so each is its own sample."""
    seen: Counter = Counter()
    out = []
    for req in requests:
        key = (req.task_name, req.doc_id, req.idx)
        out.append(seen[key])
        seen[key] += 1
    return out


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


# ---------------------------------------------------------------- one adapter class per method

_CLASSES: dict[str, type[MethodLM]] = {}


def method_class(name: str) -> type[Method]:
    """The method registered as ``name``."""
    return METHODS.get(name)


def lm_class(name: str) -> type[MethodLM]:
    method_cls = method_class(name)
    if name not in _CLASSES or _CLASSES[name].method_cls is not method_cls:
        _CLASSES[name] = type(f"{method_cls.__name__}LM", (MethodLM,), {
            "method_name": name, "method_cls": method_cls, "__doc__": method_cls.__doc__, "__module__": __name__})
    return _CLASSES[name]


def __getattr__(name: str) -> type[MethodLM]:
    if name in METHODS:
        return lm_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# lm-eval's entry-point discovery imports this module for a method's model class: the filters our
# tasks name, run names and one-line errors come with it (a no-op where the hook did it already).
plugin.activate()
