"""``symoe``: Symbolic Mixture-of-Experts (arXiv 2503.05641).

``run`` receives every question of the run at once and sends them one way:
questions -> keywords (keyword model) -> routes (profiles, embeddings) -> expert answers, grouped
by expert -> aggregation (each task's aggregator) -> answers. The scheduler loads each model once.
"""

from __future__ import annotations

import logging

from symoe_eval.errors import SymoeError
from symoe_eval.symbolic.aggregation import consensus
from symoe_eval.methods.base import MethodResult, StagedMethod, response_rows
from symoe_eval.symbolic.routing import QuestionRef, Route, question_rng, router_class
from symoe_eval.symbolic.skills import KEYWORD_MAX_GEN_TOKS, annotate
from symoe_eval.runoutput import SymoeRow
from symoe_eval.runtime.scheduling import Call
from symoe_eval.settings import model_arg

log = logging.getLogger(__name__)
AGGREGATE_MODES = ("always", "disagree")


class SymbolicMoE(StagedMethod):
    """``--model symoe --model_args pool=tiny-cpu,k=3,...`` (the README and docs/method.md list every argument).

    ``routing`` names a router (``symoe_eval.symbolic.routing.ROUTERS``): ``instance`` is the method,
    ``task`` and ``random`` are the paper's ablations. ``aggregate=always`` is the paper;
    ``aggregate=disagree`` answers a question whose k experts all state the same answer with
    that answer and calls the aggregator only for the rest (beyond the paper: cheaper)."""

    def __init__(
        self,
        runtime,
        profiles: str | None = None,
        k: int = 3,
        aggregator: str | None = None,
        keyword_model: str | None = None,
        routing: str = "instance",
        keyword_max_gen_toks: int = KEYWORD_MAX_GEN_TOKS,
        aggregator_max_gen_toks: int | None = None,
        aggregate: str = "always",
        profile: str | None = None,
    ):
        super().__init__(runtime, profiles, profile)
        self.k = model_arg("k", k, minimum=1)
        self.router = router_class(routing)(self.k, embed=self.embed)
        self.routing = routing
        self.aggregator_override = self.pool.expert(aggregator).name if aggregator else None
        self.keyword_model = self.pool.keyword_model(keyword_model)
        self.keyword_max_gen_toks = model_arg("keyword_max_gen_toks", keyword_max_gen_toks, minimum=1)
        self.aggregator_max_gen_toks = model_arg("aggregator_max_gen_toks", aggregator_max_gen_toks, minimum=1, optional=True)
        if aggregate not in AGGREGATE_MODES:
            raise SymoeError(f"model_args aggregate={aggregate}: expected one of {', '.join(AGGREGATE_MODES)}")
        self.aggregate = aggregate

    def embed(self, texts: list[str]):
        """Sentence embeddings from the pool's embedding model (``RunContext.embedder``)."""
        return self.runtime.embedder()(texts)

    # ------------------------------------------------------------------ plan

    def _routes(self, questions, profiles, keywords) -> dict[tuple, Route]:
        routes = {}
        for q in questions:
            rng = question_rng(self.runtime.settings.seed, q.task, q.doc_id, q.repeat)
            routes[q.key] = self.router.route(profiles[q.task], QuestionRef(q.task, q.doc_id), keywords.get(q.text, []), rng)
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
                calls.append(Call((q.key, slot), name, self.request(name, q, sample)))
        return calls

    def _run(self, scheduler, questions, profiles, aggregators):
        keywords = {}
        if self.router.needs_keywords:
            keywords = annotate(scheduler, self.keyword_model, [q.text for q in questions], self.runtime.settings.seed,
                                self.keyword_max_gen_toks, examples=self.pool.keyword_examples)
        routes = self._routes(questions, profiles, keywords)
        answers = scheduler.run("experts", self._expert_calls(questions, routes), later=list(aggregators.values()))
        responses = {q.key: [answers[(q.key, s)].text for s in range(len(routes[q.key].experts))] for q in questions}
        agreed = {}
        if self.aggregate == "disagree":
            agreed = {q.key: text for q in questions if (text := consensus(responses[q.key], q.answer)) is not None}
        finals = scheduler.run("aggregation", [
            Call(q.key, aggregators[q.task],
                 self.synthesis_request(aggregators[q.task], q, responses[q.key], q.repeat, self.aggregator_max_gen_toks))
            for q in questions if q.key not in agreed
        ])
        return routes, responses, {**{k: c.text for k, c in finals.items()}, **agreed}, set(agreed)

    def run(self, questions, scheduler) -> MethodResult:
        tasks = sorted({q.task for q in questions})
        profiles = self.task_profiles(tasks)
        aggregators = {t: self.aggregator_override or profiles[t].aggregator for t in tasks}
        routes, responses, finals, agreed = self._run(scheduler, questions, profiles, aggregators)
        rows = [SymoeRow(
            task=q.task, doc_id=q.doc_id, repeat=q.repeat, experts=routes[q.key].experts,
            final_answer=q.answer(finals[q.key]), final_text=finals[q.key],
            keywords=routes[q.key].keywords, mapped_keywords=routes[q.key].mapped, fallback=routes[q.key].fallback,
            weights=routes[q.key].weights, responses=response_rows(routes[q.key].experts, responses[q.key], q),
            aggregator=aggregators[q.task], consensus=q.key in agreed, prompts_cut=self.prompts.cut_prompts[q.key],
        ) for q in questions]
        summary = {**self.shared_summary(), "k": self.k, "routing": self.routing, "keyword_model": self.keyword_model,
                   "aggregators": aggregators, "aggregate": self.aggregate, "consensus_answers": len(agreed)}
        return MethodResult(finals, rows, summary)
