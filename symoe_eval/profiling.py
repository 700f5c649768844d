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

import jsonlines

from symoe_eval import paths
from symoe_eval.answers import extract_answer, grade
from symoe_eval.errors import SymoeError
from symoe_eval.models.context import RunContext
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
    task: str
    docs: list[dict]
    prompts: list[str]
    gen_kwargs: dict

    def grade(self, index: int, text: str) -> bool:
        doc = self.docs[index]
        return grade(text, doc["question"], doc["gold_answer"])

    @property
    def split_hash(self) -> str:
        payload = json.dumps([[d["question"], d["gold_answer"]] for d in self.docs])
        return hashlib.sha256(payload.encode()).hexdigest()


def load_validation(task: str, limit: int | None, data_dir: str | None) -> ValidationSet:
    """The ``<task>_val`` docs and prompts exactly as lm-eval renders them."""
    from symoe_eval import plugin

    plugin.activate()
    from lm_eval.tasks import TaskManager

    val_task = f"{base_task(task)}_val"
    manager = TaskManager(metadata={"data_dir": data_dir} if data_dir else None)
    if val_task not in manager.all_tasks:
        raise SymoeError(f"no validation task {val_task} for '{task}'; profile one of the symoe_* tasks")
    loaded = manager.load([val_task])["tasks"][val_task]
    docs = list(loaded.test_docs())[: limit or None]
    return ValidationSet(
        base_task(task), docs, [loaded.doc_to_text(d) for d in docs], dict(loaded.config.generation_kwargs or {})
    )


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
                  profiles_root: str | None = None, cache_dir: str | None = None, engine: str = "auto",
                  max_gen_toks: int | None = None, samples: int = 1, seed: int = 0, batch_size: int = 8,
                  max_loaded: int | None = None, progress: bool = True, workers: int = 1,
                  ray_address: str | None = None) -> Path:
    """Profile ``task`` on ``pool`` and write the profile, its report and its annotations."""
    context = RunContext.create(pool, engine, cache_dir, seed, None, max_gen_toks, batch_size, None, max_loaded,
                                workers, ray_address)
    keyword_model = context.pool.keyword_model()
    val = load_validation(task, limit, data_dir)
    with context.scheduler(progress) as scheduler:
        keywords = annotate(scheduler, keyword_model, [d["question"] for d in val.docs], seed,
                            later=list(context.pool.experts))
        answers = answer_validation(context, scheduler, val, samples)
        question_keywords = [keywords[d["question"]] for d in val.docs]
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
                "index": i, "gold_answer": doc["gold_answer"], "keywords": question_keywords[i],
                "answers": {e: [extract_answer(answers.graded[(e, i, s)][0], doc["question"]) for s in range(answers.samples)]
                            for e in answers.experts},
            })
