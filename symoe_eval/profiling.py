"""``symoe profile``: build a task's expert profiles and pick its aggregator, offline.

1. the keyword model annotates every validation question (5 samples, kept if said twice);
2. every expert answers every validation question with the task's own prompt;
3. each expert's profile scores +1/-1 per keyword for right/wrong answers;
4. every expert aggregates a synthetic set (1 correct + 2 wrong chains per question); the best
   becomes the task's aggregator.
All generations go through the cache, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jsonlines

from symoe_eval import paths
from symoe_eval.errors import SymoeError
from symoe_eval.models.context import RunContext
from symoe_eval.models.evaluation import task_answer
from symoe_eval.profiles import (
    AggregationItem,
    ExpertProfile,
    TaskProfile,
    base_task,
    build_aggregation_set,
    build_expert_profiles,
    choose_aggregator,
    render_report,
    save_profile,
)
from symoe_eval.scheduling import Call
from symoe_eval.skills import annotate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationSet:
    """The docs a profile is built on, their prompts as lm-eval renders them, the raw questions
    the keyword model reads, and the task's own answer filter and grading."""

    task: str
    docs: list[dict]
    prompts: list[str]
    questions: list[str]
    gen_kwargs: dict
    grader: Callable[[dict, str], bool]
    reader: Callable[[dict, str], str]  # the answer the task's filter reads

    def grade(self, index: int, text: str) -> bool:
        return self.grader(self.docs[index], text)

    def answer(self, index: int, text: str) -> str:
        return self.reader(self.docs[index], text)

    @property
    def split_hash(self) -> str:
        payload = json.dumps([[q, str(d.get("gold_answer", d))] for q, d in zip(self.questions, self.docs)], default=str)
        return hashlib.sha256(payload.encode()).hexdigest()


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
    from symoe_eval import plugin

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
                         dict(loaded.config.generation_kwargs or {}), task_grader(loaded), task_answer(loaded))


@dataclass
class ValidationAnswers:
    """Every expert's graded answers: ``graded[(expert, question, sample)] = (text, right)``."""

    experts: list[str]
    samples: int
    graded: dict[tuple[str, int, int], tuple[str, bool]]

    def correct(self, questions: int) -> dict[str, list[list[bool]]]:
        return {e: [[self.graded[(e, i, s)][1] for s in range(self.samples)] for i in range(questions)]
                for e in self.experts}

    def pooled(self, questions: int) -> list[list[tuple[str, bool]]]:
        return [[self.graded[(e, i, s)] for e in self.experts for s in range(self.samples)] for i in range(questions)]


def answer_validation(context: RunContext, scheduler, val: ValidationSet, samples: int) -> ValidationAnswers:
    """Every expert answers every validation question ``samples`` times, with the task's prompt."""
    experts = list(context.pool.experts)
    calls = [Call((e, i, s), e, context.request(e, prompt, val.gen_kwargs, s))
             for e in experts for i, prompt in enumerate(val.prompts) for s in range(samples)]
    answers = scheduler.run("answers", calls, later=experts)
    graded = {(e, i, s): (c.text, val.grade(i, c.text)) for (e, i, s), c in answers.items()}
    return ValidationAnswers(experts, samples, graded)


def score_aggregators(context: RunContext, scheduler, val: ValidationSet, items: list[AggregationItem],
                      profiles: dict[str, ExpertProfile], samples: int) -> tuple[dict[str, float], str]:
    """Each expert's accuracy at aggregating the synthetic set (prompts fitted to its context as
    at inference); with no item, validation accuracy, and the report says so."""
    experts = list(context.pool.experts)
    if not items:
        hint = "; try --samples 2" if samples * len(experts) < 3 else ""
        choice = f"validation accuracy (no question had 1 correct and 2 incorrect answers{hint})"
        log.warning("aggregator chosen by %s", choice)
        return {e: p.accuracy for e, p in profiles.items()}, choice
    calls = [Call((e, j), e, context.synthesis_request(e, val.prompts[item.question_index], item.responses,
                                                         val.gen_kwargs, 0, where=f"{val.task} item {j}"))
             for e in experts for j, item in enumerate(items)]
    aggregated = scheduler.run("aggregator-benchmark", calls)
    scores = {e: sum(val.grade(item.question_index, aggregated[(e, j)].text) for j, item in enumerate(items)) / len(items)
              for e in experts}
    return scores, "synthetic aggregation set"


def build_profile(pool: str, task: str, limit: int | None = None, data_dir: str | None = None,
                  profiles_root: str | None = None, samples: int = 1, progress: bool = True,
                  include_path: str | None = None, split: str | None = None, question_field: str | None = None,
                  **run: Any) -> Path:
    """Profile ``task`` on ``pool`` and write the profile, its report and its annotations;
    ``run``: the run arguments (``runargs.RUN_ARGS``: engine, cache_dir, seed, batch_size, ...)."""
    context = RunContext.create(pool=pool, **run)
    seed, max_gen_toks = context.seed, context.max_gen_toks
    keyword_model = context.pool.keyword_model()
    val = load_validation(task, limit, data_dir, include_path, split, question_field)
    with context.scheduler(progress) as scheduler:
        keywords = annotate(scheduler, keyword_model, val.questions, seed, later=list(context.pool.experts))
        answers = answer_validation(context, scheduler, val, samples)
        question_keywords = [keywords[q] for q in val.questions]
        profiles = build_expert_profiles(question_keywords, answers.correct(len(val.docs)))
        items = build_aggregation_set(answers.pooled(len(val.docs)), seed)
        scores, choice = score_aggregators(context, scheduler, val, items, profiles, samples)
    profile = TaskProfile(
        task=val.task, pool=context.pool.name, experts=profiles, aggregator=choose_aggregator(scores, profiles),
        aggregator_scores=scores, aggregator_choice=choice, keywords=sorted({k for kws in question_keywords for k in kws}),
        provenance=provenance(context, keyword_model, val, limit, samples, max_gen_toks, len(items), scheduler),
    )
    folder = save_profile(profile, Path(profiles_root or paths.profiles_root()), render_report(profile))
    write_annotations(folder / "annotations.jsonl", val, question_keywords, answers)
    return folder


def provenance(context: RunContext, keyword_model: str, val: ValidationSet, limit, samples, max_gen_toks,
               items: int, scheduler) -> dict:
    return {
        "pool": context.pool.name, "models": {e: s.model for e, s in context.pool.experts.items()},
        "keyword_model": keyword_model, "questions": len(val.docs), "limit": limit, "split_hash": val.split_hash,
        "seed": context.seed, "samples_per_expert": samples, "max_gen_toks": max_gen_toks, "aggregation_items": items,
        "backend": context.backend, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run": scheduler.summary(),
    }


def write_annotations(path: Path, val: ValidationSet, question_keywords: list[list[str]], answers: ValidationAnswers) -> None:
    with jsonlines.open(path, mode="w") as writer:
        for i, doc in enumerate(val.docs):
            writer.write({
                "index": i, "gold_answer": doc.get("gold_answer"), "keywords": question_keywords[i],
                "answers": {e: [val.answer(i, answers.graded[(e, i, s)][0]) for s in range(answers.samples)]
                            for e in answers.experts},
                "right": {e: [answers.graded[(e, i, s)][1] for s in range(answers.samples)] for e in answers.experts},
            })
