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

from symoe_eval.aggregation import aggregate_prompt
from symoe_eval.answers import extract_answer, grade
from symoe_eval.engines import GenerationCache, GenerationRequest, SamplingParams, make_engine, pick_backend, sampling_for
from symoe_eval.errors import SymoeError
from symoe_eval import paths
from symoe_eval.profiles import (
    TaskProfile,
    base_task,
    build_aggregation_set,
    build_expert_profiles,
    choose_aggregator,
    render_report,
    save_profile,
)
from symoe_eval.registry import load_pool
from symoe_eval.scheduling import Call, Scheduler, default_max_loaded
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


def build_profile(
    pool: str,
    task: str,
    limit: int | None = None,
    data_dir: str | None = None,
    profiles_root: str | None = None,
    cache_dir: str | None = None,
    engine: str = "auto",
    max_gen_toks: int | None = None,
    samples: int = 1,
    seed: int = 0,
    batch_size: int = 8,
    max_loaded: int | None = None,
    keyword_max_gen_toks: int = 64,
    progress: bool = True,
) -> Path:
    spec = load_pool(pool)
    backend = pick_backend(engine)
    keyword_model = spec.keyword_model()
    experts = list(spec.experts)
    val = load_validation(task, limit, data_dir)
    cache = Path(cache_dir) if cache_dir else paths.cache_root() / "generations" / spec.name
    GenerationCache(cache).check_writable()
    scheduler = Scheduler(
        lambda name: make_engine(spec.expert(name), backend, cache_dir=cache, batch_size=batch_size, seed=seed),
        max_loaded or default_max_loaded(backend),
        progress=progress,
    )

    def params(name: str) -> SamplingParams:
        return sampling_for(spec.expert(name), val.gen_kwargs, max_tokens=max_gen_toks, seed=seed, cap=spec.max_gen_toks)

    try:
        kw_params = SamplingParams(temperature=0.7, max_tokens=keyword_max_gen_toks, seed=seed)
        keywords = annotate(scheduler, keyword_model, [d["question"] for d in val.docs], kw_params, later=experts)
        answer_calls = [
            Call((e, i, s), e, GenerationRequest.user(prompt, params(e), s))
            for e in experts
            for i, prompt in enumerate(val.prompts)
            for s in range(samples)
        ]
        answers = scheduler.run("answers", answer_calls, later=experts)
        graded = {(e, i, s): (c.text, val.grade(i, c.text)) for (e, i, s), c in answers.items()}
        question_keywords = [keywords[d["question"]] for d in val.docs]
        correct = {e: [[graded[(e, i, s)][1] for s in range(samples)] for i in range(len(val.docs))] for e in experts}
        profiles = build_expert_profiles(question_keywords, correct)
        pooled = [[graded[(e, i, s)] for e in experts for s in range(samples)] for i in range(len(val.docs))]
        items = build_aggregation_set(pooled, seed)
        aggregator_calls = [
            Call((e, j), e, GenerationRequest.user(aggregate_prompt(val.prompts[item.question_index], item.responses), params(e)))
            for e in experts
            for j, item in enumerate(items)
        ]
        aggregated = scheduler.run("aggregator-benchmark", aggregator_calls) if items else {}
    finally:
        scheduler.close()

    if items:
        scores = {
            e: sum(val.grade(item.question_index, aggregated[(e, j)].text) for j, item in enumerate(items)) / len(items)
            for e in experts
        }
        choice = "synthetic aggregation set"
    else:
        # No question had 1 right + 2 wrong answers (e.g. two experts, one sample each).
        scores = {e: p.accuracy for e, p in profiles.items()}
        hint = "; try --samples 2" if samples * len(experts) < 3 else ""
        choice = f"validation accuracy (no question had 1 correct and 2 incorrect answers{hint})"
        log.warning("aggregator chosen by %s", choice)
    profile = TaskProfile(
        task=val.task,
        pool=spec.name,
        experts=profiles,
        aggregator=choose_aggregator(scores, profiles),
        aggregator_scores=scores,
        aggregator_choice=choice,
        keywords=sorted({k for kws in question_keywords for k in kws}),
        provenance={
            "pool": spec.name,
            "models": {e: spec.expert(e).model for e in experts},
            "keyword_model": keyword_model,
            "questions": len(val.docs),
            "limit": limit,
            "split_hash": val.split_hash,
            "seed": seed,
            "samples_per_expert": samples,
            "max_gen_toks": max_gen_toks,
            "aggregation_items": len(items),
            "backend": backend,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "run": scheduler.summary(),
        },
    )
    folder = save_profile(profile, Path(profiles_root or paths.profiles_root()), render_report(profile))
    with jsonlines.open(folder / "annotations.jsonl", mode="w") as writer:
        for i, doc in enumerate(val.docs):
            writer.write({
                "index": i, "gold_answer": doc["gold_answer"], "keywords": question_keywords[i],
                "answers": {e: [extract_answer(graded[(e, i, s)][0], doc["question"]) for s in range(samples)] for e in experts},
            })
    return folder
