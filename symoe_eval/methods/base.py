"""What every method is: questions in, typed results out, through one runtime.

A method never sees lm-eval: the harness adapter (``symoe_eval.harness.lm``) turns lm-eval's
requests into :class:`Question` objects, opens the runtime's scheduler, calls :meth:`Method.run`
and turns the :class:`MethodResult` into lm-eval's texts, its cache and our run log. Adding a
method is one module with a :class:`Method` subclass and one entry in ``methods.METHODS``.

The multi-model methods (symoe, moa, discussion) share :class:`StagedMethod`: task profiles,
teams, rounds of calls through one scheduler, and prompts fitted to each reader's context, so
their accuracy and cost compare fairly."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

from symoe_eval.engines import GenerationRequest
from symoe_eval.errors import SymoeError
from symoe_eval.symbolic.aggregation import SynthesisPrompts, aggregate_prompt
from symoe_eval.answers import extract_answer
from symoe_eval.symbolic.profiles import TaskProfile, base_task, load_profile, pooled_profile, profile_path, profiled_tasks
from symoe_eval.symbolic.routing import strongest
from symoe_eval.paths import profiles_root
from symoe_eval.runoutput import Response, Row
from symoe_eval.runtime.context import RunContext
from symoe_eval.runtime.scheduling import Call, StageScheduler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Question:
    """One question to answer: where it comes from, the task's prompt and the raw question."""

    task: str
    doc_id: int
    repeat: int  # which sample of this question (lm-eval's ``repeats``)
    prompt: str  # the task's prompt: the user turn
    text: str  # the raw question
    gen_kwargs: dict
    prefix: tuple = ()  # messages before the user turn (system instruction, few-shot turns)
    read_answer: Callable[[str], str] | None = field(default=None, compare=False, repr=False)  # the task's filter

    def answer(self, text: str) -> str:
        """The answer the task's filter reads in ``text`` (our extractor without one)."""
        return self.read_answer(text) if self.read_answer else extract_answer(text, self.text)

    @property
    def system(self) -> tuple:
        return tuple(m for m in self.prefix if m[0] == "system")

    @property
    def key(self) -> tuple:
        return (self.task, self.doc_id, self.repeat)


@dataclass
class MethodResult:
    """What a method hands back: one text per question (lm-eval scores it), one routing-log row
    per question (a ``runoutput.Row`` subclass, or none), and the method's part of the run summary."""

    texts: dict[Hashable, str]  # by Question.key
    rows: list[Row] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


class Method:
    """Base of every method, registered by its lm-eval model name in ``methods.METHODS``; the
    constructor's keyword arguments are its model_args (besides the run's, ``settings.RUN_ARGS``)."""

    def __init__(self, runtime: RunContext):
        self.runtime = runtime
        self.pool = runtime.pool

    def run(self, questions: list[Question], scheduler: StageScheduler) -> MethodResult:
        raise NotImplementedError


def parse_names(value: str | None) -> list[str]:
    """Model lists inside --model_args (which splits on commas) use '|' or '+'."""
    if not value:
        return []
    return [v.strip() for v in str(value).replace("+", "|").split("|") if v.strip()]


def response_rows(experts: Sequence[str], texts: Sequence[str], question: Question) -> list[Response]:
    return [Response(e, question.answer(t), t) for e, t in zip(experts, texts)]


class StagedMethod(Method):
    """What symoe, moa and discussion share (see the module docstring)."""

    def __init__(self, runtime: RunContext, profiles: str | None = None, profile: str | None = None):
        super().__init__(runtime)
        self.profiles_root = profiles or str(profiles_root())
        self.profile = profile or "auto"  # own, pooled or task names (a|b); auto: own, else pooled
        self.profile_sources: dict[str, str] = {}  # tasks routed with another profile than their own
        self.prompts = SynthesisPrompts(runtime)

    def task_profiles(self, tasks: Sequence[str], required: bool = True) -> dict[str, TaskProfile]:
        """Each task's profile as ``profile=`` says; with ``required=False`` a task without its own
        is left out (a method given its team needs none)."""
        profiles = {t: found for t in tasks if (found := self._profile_for(t, required)) is not None}
        for task, profile in profiles.items():
            unknown = sorted(set(profile.experts) - set(self.pool.experts))
            if unknown:
                raise SymoeError(
                    f"profile for {task} names experts not in pool '{self.pool.name}': {', '.join(unknown)}; rebuild it"
                )
        return profiles

    def _profile_for(self, task: str, required: bool) -> TaskProfile | None:
        root, pool = self.profiles_root, self.pool.name
        if self.profile == "own" or (self.profile == "auto" and profile_path(root, pool, task)):
            return load_profile(root, pool, task)  # missing: one line with the command that builds it
        if self.profile == "auto" and not required:
            return None
        names = parse_names(self.profile) if self.profile not in ("auto", "pooled") else \
            [t for t in profiled_tasks(root, pool) if t != base_task(task)]
        if not names:
            load_profile(root, pool, task)  # no profile to pool from: the same one line
        self.profile_sources[task] = "pooled from " + ", ".join(names)
        if self.profile == "auto":
            log.warning("no profile of %s for pool %s: routing with one pooled from %s (profile=own makes this an "
                        "error; symoe profile --pool %s --task %s builds its own)", base_task(task), pool,
                        ", ".join(names), pool, base_task(task))
        return pooled_profile(base_task(task), [load_profile(root, pool, n) for n in names])

    def shared_summary(self) -> dict:
        """What every staged method adds to the run summary: prompt cuts, and where a task's
        profile came from when it was not its own."""
        return {**self.prompts.counts(), **({"profile_sources": self.profile_sources} if self.profile_sources else {})}

    def team(self, explicit: str | None, profile: TaskProfile | None, size: int) -> list[str]:
        """Explicit model names ('a|b|c'), or the task's ``size`` strongest experts by profile strength."""
        names = parse_names(explicit)
        if names:
            return [self.pool.expert(n).name for n in names]
        return list(dict.fromkeys(strongest(profile, size)))

    def request(self, expert: str, q: Question, sample: int, max_tokens: int | None = None) -> GenerationRequest:
        """The expert answering the question with the task's prompt."""
        return self.runtime.request(expert, q.prompt, q.gen_kwargs, sample, max_tokens, q.prefix)

    def synthesis_request(self, expert: str, q: Question, responses: Sequence[str], sample: int,
                          max_tokens: int | None = None,
                          build: Callable[[str, list[str]], str] = aggregate_prompt) -> GenerationRequest:
        """A prompt that quotes ``responses`` (by default the aggregate-and-synthesize prompt),
        fitted to the reader's context (``SynthesisPrompts``)."""
        return self.prompts.request(expert, q.prompt, responses, q.gen_kwargs, sample, max_tokens, build,
                                    where=f"{q.task} doc {q.doc_id}", system=q.system, key=q.key)

    def run_rounds(
        self,
        scheduler: StageScheduler,
        questions: list[Question],
        teams: dict[str, list[str]],
        rounds: int,
        stage: Callable[[int], str],
        make_request: Callable[[int, Question, int, str, list[str] | None], GenerationRequest],
        after: Sequence[str],
    ) -> dict[tuple, list[list[str]]]:
        """Rounds in which every team member answers every question, one scheduler stage each;
        ``make_request(round, question, slot, model, previous round's texts or None)``.
        ``after`` names the models the stage after the last round needs."""
        members = sorted({m for team in teams.values() for m in team})
        history: dict[tuple, list[list[str]]] = {q.key: [] for q in questions}
        for rnd in range(rounds):
            previous = {q.key: history[q.key][-1] if history[q.key] else None for q in questions}
            calls = [
                Call((q.key, slot), name, make_request(rnd, q, slot, name, previous[q.key]))
                for q in questions
                for slot, name in enumerate(teams[q.task])
            ]
            out = scheduler.run(stage(rnd), calls, later=[members] * (rounds - rnd - 1) + [list(after)])
            for q in questions:
                history[q.key].append([out[(q.key, s)].text for s in range(len(teams[q.task]))])
        return history
