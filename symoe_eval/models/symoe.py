"""``symoe``: Symbolic Mixture-of-Experts (arXiv 2503.05641) as an lm-eval model.

``generate_until`` receives every request of the run at once and sends them one way:
requests -> keywords (keyword model) -> routes (profiles, embeddings) -> expert answers, grouped
by expert -> aggregation (each task's aggregator) -> answers. The scheduler loads each model once.
"""

from __future__ import annotations

import logging

from symoe_eval.answers import extract_answer
from symoe_eval.engines import SamplingParams
from symoe_eval.errors import SymoeError
from symoe_eval.models.base import model_arg
from symoe_eval.models.staged import StagedLM
from symoe_eval.weights import resolve_weights
from symoe_eval.routing import ROUTING_MODES, Route, SentenceEmbedder, map_keywords, question_rng, route
from symoe_eval.scheduling import Call
from symoe_eval.skills import annotate

log = logging.getLogger(__name__)

KEYWORD_MAX_GEN_TOKS = 64


class SymbolicMoE(StagedLM):
    """``--model symoe --model_args pool=tiny-cpu,k=3,...`` (see the README for every argument).

    ``routing=instance`` is the method; ``routing=task`` recruits each task's top-k experts for
    every question and ``routing=random`` recruits uniformly (the paper's ablations)."""

    method = "symoe"

    def __init__(
        self,
        k: int = 3,
        aggregator: str | None = None,
        keyword_model: str | None = None,
        routing: str = "instance",
        keyword_max_gen_toks: int = KEYWORD_MAX_GEN_TOKS,
        aggregator_max_gen_toks: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.k = model_arg("k", k, minimum=1)
        if routing not in ROUTING_MODES:
            raise SymoeError(f"unknown routing '{routing}'; choose one of {', '.join(ROUTING_MODES)}")
        self.routing = routing
        self.aggregator_override = self.pool.expert(aggregator).name if aggregator else None
        self.keyword_model = self.pool.keyword_model(keyword_model)
        self.keyword_max_gen_toks = model_arg("keyword_max_gen_toks", keyword_max_gen_toks, minimum=1)
        self.aggregator_max_gen_toks = model_arg("aggregator_max_gen_toks", aggregator_max_gen_toks, minimum=1, optional=True)
        self._embedder: SentenceEmbedder | None = None

    def embedder(self) -> SentenceEmbedder:
        if self._embedder is None:
            spec = self.pool.embedding_model
            if spec is None:
                raise SymoeError(f"pool '{self.pool.name}' names no embedding_model ({self.pool.path})")
            folder, _ = resolve_weights(spec)
            self._embedder = SentenceEmbedder(folder)
        return self._embedder

    # ------------------------------------------------------------------ plan

    def _routes(self, questions, profiles, keywords) -> dict[tuple, Route]:
        routes = {}
        for q in questions:
            profile = profiles[q.task]
            found = keywords.get(q.text, [])
            mapped = map_keywords(found, profile.keywords, self.embedder()) if self.routing == "instance" else []
            rng = question_rng(self.seed, q.task, q.doc_id, q.repeat)
            routes[q.key] = route(profile, q.task, q.doc_id, found, mapped, self.k, rng, self.routing)
            if routes[q.key].fallback:
                log.warning("%s doc %s: %s; recruiting the globally strongest experts",
                            q.task, q.doc_id, routes[q.key].fallback)
        return routes

    def _expert_calls(self, questions, routes) -> list[Call]:
        calls = []
        for q in questions:
            seen: dict[str, int] = {}
            for slot, name in enumerate(routes[q.key].experts):
                sample = q.repeat * self.k + seen.get(name, 0)  # duplicates are separate samples
                seen[name] = seen.get(name, 0) + 1
                calls.append(Call((q.key, slot), name, self.request(name, q, q.prompt, sample)))
        return calls

    # ------------------------------------------------------------------ lm-eval API

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        questions = self.questions(requests)
        tasks = sorted({q.task for q in questions})
        profiles = self.task_profiles(tasks)
        aggregators = {t: self.aggregator_override or profiles[t].aggregator for t in tasks}
        scheduler = self.scheduler(disable_tqdm)
        try:
            keywords = {}
            if self.routing == "instance":
                params = SamplingParams(temperature=0.7, max_tokens=self.keyword_max_gen_toks, seed=self.seed)
                keywords = annotate(scheduler, self.keyword_model, [q.text for q in questions], params)
            routes = self._routes(questions, profiles, keywords)
            answers = scheduler.run("experts", self._expert_calls(questions, routes), later=list(aggregators.values()))
            responses = {q.key: [answers[(q.key, s)].text for s in range(len(routes[q.key].experts))] for q in questions}
            finals = scheduler.run("aggregation", [
                Call(q.key, aggregators[q.task],
                     self.synthesis_request(aggregators[q.task], q, responses[q.key], q.repeat, self.aggregator_max_gen_toks))
                for q in questions
            ])
        finally:
            scheduler.close()
        rows = []
        for q in questions:
            r = routes[q.key]
            rows.append({
                "task": q.task, "doc_id": q.doc_id, "repeat": q.repeat,
                "keywords": r.keywords, "mapped_keywords": r.mapped, "fallback": r.fallback,
                "weights": r.weights, "experts": r.experts,
                "responses": self.response_rows(r.experts, responses[q.key], q.text),
                "aggregator": aggregators[q.task],
                "final_answer": extract_answer(finals[q.key].text, q.text),
                "final_text": finals[q.key].text,
            })
        summary = {"k": self.k, "routing": self.routing, "keyword_model": self.keyword_model, "aggregators": aggregators}
        return self.finish(requests, questions, {k: c.text for k, c in finals.items()}, rows, scheduler, summary)
