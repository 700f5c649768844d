"""``symoe``: Symbolic Mixture-of-Experts (arXiv 2503.05641) as an lm-eval model.

``generate_until`` receives every request of the run at once and sends them one way:
requests -> keywords (keyword model) -> routes (profiles, embeddings) -> expert answers, grouped
by expert -> aggregation (each task's aggregator) -> answers. The scheduler loads each model once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from symoe_eval.aggregation import aggregate_prompt
from symoe_eval.answers import extract_answer
from symoe_eval.engines import SamplingParams
from symoe_eval.errors import SymoeError
from symoe_eval.models.base import SymoeLM
from symoe_eval.plugin import registry_dir
from symoe_eval.profiles import TaskProfile, load_profile
from symoe_eval.registry import resolve_weights
from symoe_eval.routing import ROUTING_MODES, Route, SentenceEmbedder, map_keywords, question_rng, route
from symoe_eval.runlog import RunLog
from symoe_eval.scheduling import Call, Scheduler
from symoe_eval.skills import annotate

log = logging.getLogger(__name__)

KEYWORD_MAX_GEN_TOKS = 64


@dataclass(frozen=True)
class Question:
    """One lm-eval request: where it comes from, the task's prompt and the raw question."""

    task: str
    doc_id: int
    repeat: int
    prompt: str
    text: str
    gen_kwargs: dict

    @property
    def key(self) -> tuple:
        return (self.task, self.doc_id, self.repeat)


class SymbolicMoE(SymoeLM):
    """``--model symoe --model_args pool=tiny-cpu,k=3,...`` (see the README for every argument)."""

    def __init__(
        self,
        k: int = 3,
        aggregator: str | None = None,
        keyword_model: str | None = None,
        profiles: str | None = None,
        routing: str = "instance",
        log_dir: str | None = None,
        max_loaded: int | None = None,
        keyword_max_gen_toks: int = KEYWORD_MAX_GEN_TOKS,
        aggregator_max_gen_toks: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.k = int(k)
        if self.k < 1:
            raise SymoeError("k must be at least 1")
        if routing not in ROUTING_MODES:
            raise SymoeError(f"unknown routing '{routing}'; choose one of {', '.join(ROUTING_MODES)}")
        self.routing = routing
        self.aggregator_override = self.pool.expert(aggregator).name if aggregator else None
        self.keyword_model = self._keyword_model(keyword_model)
        self.profiles_root = profiles or str(registry_dir() / "profiles")
        self.log_dir = log_dir
        # Two resident models let the keyword model or an aggregator stay loaded across stages.
        self.max_loaded = int(max_loaded) if max_loaded else (1 if self.backend == "vllm" else 2)
        self.keyword_max_gen_toks = int(keyword_max_gen_toks)
        self.aggregator_max_gen_toks = int(aggregator_max_gen_toks) if aggregator_max_gen_toks else None
        self._embedder: SentenceEmbedder | None = None

    def _keyword_model(self, name: str | None) -> str:
        if name:
            return self.pool.expert(name).name
        tagged = self.pool.tagged("keyword_model")
        if not tagged:
            raise SymoeError(f"pool '{self.pool.name}' tags no keyword_model; pass keyword_model=NAME")
        return tagged[0].name

    def embedder(self) -> SentenceEmbedder:
        if self._embedder is None:
            spec = self.pool.embedding_model
            if spec is None:
                raise SymoeError(f"pool '{self.pool.name}' names no embedding_model ({self.pool.path})")
            folder, _ = resolve_weights(spec)
            self._embedder = SentenceEmbedder(folder)
        return self._embedder

    # ------------------------------------------------------------------ stages

    def _questions(self, requests) -> list[Question]:
        out = []
        for req, repeat in zip(requests, self.sample_indices(requests)):
            doc = req.doc or {}
            if "question" not in doc:
                raise SymoeError(f"task {req.task_name} docs carry no 'question' field; symoe needs the raw question")
            out.append(Question(req.task_name, req.doc_id, repeat, req.args[0], doc["question"], dict(req.args[1])))
        return out

    def _profiles(self, tasks: list[str]) -> dict[str, TaskProfile]:
        profiles = {t: load_profile(self.profiles_root, self.pool.name, t) for t in tasks}
        for task, profile in profiles.items():
            unknown = sorted(set(profile.experts) - set(self.pool.experts))
            if unknown:
                raise SymoeError(
                    f"profile for {task} names experts not in pool '{self.pool.name}': {', '.join(unknown)}; rebuild it"
                )
        return profiles

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
                params = self.sampling_for(self.pool.expert(name), q.gen_kwargs)
                calls.append(Call((q.key, slot), name, self.as_request(q.prompt, params, sample)))
        return calls

    def _aggregation_calls(self, questions, routes, answers, aggregators) -> list[Call]:
        calls = []
        for q in questions:
            name = aggregators[q.task]
            responses = [answers[(q.key, slot)].text for slot in range(len(routes[q.key].experts))]
            params = self.sampling_for(self.pool.expert(name), q.gen_kwargs)
            if self.aggregator_max_gen_toks:
                params = SamplingParams(params.temperature, params.top_p, self.aggregator_max_gen_toks, params.stop, params.seed)
            calls.append(Call(q.key, name, self.as_request(aggregate_prompt(q.prompt, responses), params, q.repeat)))
        return calls

    # ------------------------------------------------------------------ lm-eval API

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        questions = self._questions(requests)
        tasks = sorted({q.task for q in questions})
        profiles = self._profiles(tasks)
        aggregators = {t: self.aggregator_override or profiles[t].aggregator for t in tasks}
        runlog = RunLog.open(self.log_dir, "symoe", self.pool.name)
        scheduler = Scheduler(
            lambda name: self.engine_for(self.pool.expert(name)), self.max_loaded, progress=not disable_tqdm
        )
        try:
            keywords = {}
            if self.routing == "instance":
                params = SamplingParams(temperature=0.7, max_tokens=self.keyword_max_gen_toks, seed=self.seed)
                keywords = annotate(scheduler, self.keyword_model, [q.text for q in questions], params)
            routes = self._routes(questions, profiles, keywords)
            answers = scheduler.run("experts", self._expert_calls(questions, routes), later=list(aggregators.values()))
            finals = scheduler.run("aggregation", self._aggregation_calls(questions, routes, answers, aggregators))
        finally:
            scheduler.close()
        for q in questions:
            r = routes[q.key]
            responses = [answers[(q.key, slot)].text for slot in range(len(r.experts))]
            runlog.record({
                "task": q.task, "doc_id": q.doc_id, "repeat": q.repeat,
                "keywords": r.keywords, "mapped_keywords": r.mapped, "fallback": r.fallback,
                "weights": r.weights, "experts": r.experts,
                "responses": [
                    {"expert": e, "answer": extract_answer(t, q.text), "text": t}
                    for e, t in zip(r.experts, responses)
                ],
                "aggregator": aggregators[q.task],
                "final_answer": extract_answer(finals[q.key].text, q.text),
                "final_text": finals[q.key].text,
            })
        runlog.finish({
            "method": "symoe", "pool": self.pool.name, "k": self.k, "routing": self.routing,
            "seed": self.seed, "backend": self.backend, "keyword_model": self.keyword_model,
            "aggregators": aggregators, "questions": len(questions), **scheduler.summary(),
        })
        for req, q in zip(requests, questions):
            self.cache_hook.add_partial("generate_until", req.args, finals[q.key].text)
        return [finals[q.key].text for q in questions]
