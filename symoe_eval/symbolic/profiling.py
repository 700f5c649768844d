"""``symoe profile``: build a task's expert profiles and pick its aggregator, offline.

1. the keyword model annotates every validation question (5 samples, kept if said twice);
2. every expert answers every validation question with the task's own prompt;
3. each expert's profile scores +1/-1 per keyword for right/wrong answers;
4. every expert aggregates a synthetic set (1 correct + 2 wrong chains per question); the best
   becomes the task's aggregator.
All generations go through the cache, so a killed run resumes where it stopped. The validation
set comes from lm-eval's task (``symoe_eval.harness.profiling``), already rendered and graded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jsonlines

from symoe_eval import paths
from symoe_eval.symbolic.aggregation import SynthesisPrompts
from symoe_eval.symbolic.profiles import (
    ANNOTATIONS_FILE,
    AggregationItem,
    ExpertProfile,
    TaskProfile,
    build_aggregation_set,
    build_expert_profiles,
    choose_aggregator,
    count_keywords,
    render_report,
    save_profile,
)
from symoe_eval.symbolic.skills import annotate
from symoe_eval.runtime.context import RunContext
from symoe_eval.runtime.scheduling import Call

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
    prompts = SynthesisPrompts(context)
    calls = [Call((e, j), e, prompts.request(e, val.prompts[item.question_index], item.responses, val.gen_kwargs, 0,
                                             where=f"{val.task} item {j}"))
             for e in experts for j, item in enumerate(items)]
    aggregated = scheduler.run("aggregator-benchmark", calls)
    scores = {e: sum(val.grade(item.question_index, aggregated[(e, j)].text) for j, item in enumerate(items)) / len(items)
              for e in experts}
    return scores, "synthetic aggregation set"


def build_profile(context: RunContext, val: ValidationSet, limit: int | None = None, profiles_root: str | None = None,
                  samples: int = 1, progress: bool = True) -> Path:
    """Profile ``val``'s task on the context's pool and write the profile, its report and its
    annotations; ``limit``: how many docs ``val`` was cut to (for the provenance)."""
    seed, max_gen_toks = context.settings.seed, context.settings.max_gen_toks
    keyword_model = context.pool.keyword_model()
    with context.scheduler(progress) as scheduler:
        keywords = annotate(scheduler, keyword_model, val.questions, seed, later=list(context.pool.experts),
                            examples=context.pool.keyword_examples)
        answers = answer_validation(context, scheduler, val, samples)
        question_keywords = [keywords[q] for q in val.questions]
        profiles = build_expert_profiles(question_keywords, answers.correct(len(val.docs)))
        items = build_aggregation_set(answers.pooled(len(val.docs)), seed)
        scores, choice = score_aggregators(context, scheduler, val, items, profiles, samples)
    profile = TaskProfile(
        task=val.task, pool=context.pool.name, experts=profiles, aggregator=choose_aggregator(scores, profiles),
        aggregator_scores=scores, aggregator_choice=choice, keywords=sorted({k for kws in question_keywords for k in kws}),
        keyword_counts=count_keywords(question_keywords, samples),
        provenance=provenance(context, keyword_model, val, limit, samples, max_gen_toks, len(items), scheduler),
    )
    folder = save_profile(profile, Path(profiles_root or paths.profiles_root()), render_report(profile))
    write_annotations(folder / ANNOTATIONS_FILE, val, question_keywords, answers)
    return folder


def provenance(context: RunContext, keyword_model: str, val: ValidationSet, limit, samples, max_gen_toks,
               items: int, scheduler) -> dict:
    return {
        "pool": context.pool.name, "models": {e: s.model for e, s in context.pool.experts.items()},
        "keyword_model": keyword_model, "questions": len(val.docs), "limit": limit, "split_hash": val.split_hash,
        "seed": context.settings.seed, "samples_per_expert": samples, "max_gen_toks": max_gen_toks, "aggregation_items": items,
        "backend": context.engine_name, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
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
