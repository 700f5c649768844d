"""What the multi-model methods share: symoe, moa and discussion run their calls in stages through
one scheduler, read task profiles, budget long contexts, and write the same routing log and run
summary, so their accuracy and cost compare fairly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from symoe_eval.aggregation import aggregate_prompt
from symoe_eval.answers import extract_answer
from symoe_eval.engines import GenerationRequest
from symoe_eval.errors import SymoeError
from symoe_eval.models.base import SymoeLM
from symoe_eval.models.evaluation import running_task_answers
from symoe_eval.paths import profiles_root
from symoe_eval.profiles import TaskProfile, load_profile
from symoe_eval.routing import strongest
from symoe_eval.runlog import RunLog
from symoe_eval.scheduling import Call, Scheduler


@dataclass(frozen=True)
class Question:
    """One lm-eval request: where it comes from, the task's prompt and the raw question."""

    task: str
    doc_id: int
    repeat: int
    prompt: str  # the task's prompt: the user turn
    text: str  # the raw question
    gen_kwargs: dict
    prefix: tuple = ()  # messages before the user turn (system instruction, few-shot turns)
    read_answer: Callable[[str], str] | None = field(default=None, compare=False, repr=False)  # the task's filter

    def answer(self, text: str) -> str:
        """The answer lm-eval's filter for this task reads in ``text`` (our extractor outside lm-eval)."""
        return self.read_answer(text) if self.read_answer else extract_answer(text, self.text)

    @property
    def system(self) -> tuple:
        return tuple(m for m in self.prefix if m[0] == "system")

    @property
    def key(self) -> tuple:
        return (self.task, self.doc_id, self.repeat)


def parse_names(value: str | None) -> list[str]:
    """Model lists inside --model_args (which splits on commas) use '|' or '+'."""
    if not value:
        return []
    return [v.strip() for v in str(value).replace("+", "|").split("|") if v.strip()]


class StagedLM(SymoeLM):
    method = "staged"

    def __init__(self, profiles: str | None = None, log_dir: str | None = None, question_field: str = "question",
                 **kwargs):
        super().__init__(**kwargs)
        self.profiles_root = profiles or str(profiles_root())
        self.log_dir = log_dir
        self.question_field = question_field

    # ------------------------------------------------------------------ inputs

    def questions(self, requests) -> list[Question]:
        out, readers = [], running_task_answers()
        for req, repeat, (prefix, prompt) in zip(requests, self.sample_indices(requests), self.contexts(requests)):
            text = str((req.doc or {}).get(self.question_field, prompt))  # the raw question, else the prompt
            reader = readers.get(req.task_name)
            read = (lambda t, doc=req.doc, reader=reader: reader(doc, t)) if reader else None
            out.append(Question(req.task_name, req.doc_id, repeat, prompt, text, dict(req.args[1]), prefix, read))
        return out

    def task_profiles(self, tasks: Sequence[str], required: bool = True) -> dict[str, TaskProfile]:
        """Each task's profile; with ``required=False`` tasks without one are left out."""
        profiles = {}
        for t in tasks:
            try:
                profiles[t] = load_profile(self.profiles_root, self.pool.name, t)
            except SymoeError:
                if required:
                    raise
        for task, profile in profiles.items():
            unknown = sorted(set(profile.experts) - set(self.pool.experts))
            if unknown:
                raise SymoeError(
                    f"profile for {task} names experts not in pool '{self.pool.name}': {', '.join(unknown)}; rebuild it"
                )
        return profiles

    def team(self, explicit: str | None, profile: TaskProfile | None, size: int) -> list[str]:
        """Explicit model names ('a|b|c'), or the task's ``size`` strongest experts by profile strength."""
        names = parse_names(explicit)
        if names:
            return [self.pool.expert(n).name for n in names]
        return list(dict.fromkeys(strongest(profile, size)))

    # ------------------------------------------------------------------ requests

    def request(self, expert: str, q: Question, prompt: str, sample: int, max_tokens: int | None = None) -> GenerationRequest:
        return self.context.request(expert, prompt, q.gen_kwargs, sample, max_tokens, q.prefix)

    def synthesis_request(self, expert: str, q: Question, responses: Sequence[str], sample: int,
                          max_tokens: int | None = None,
                          build: Callable[[str, list[str]], str] = aggregate_prompt) -> GenerationRequest:
        """A prompt that quotes ``responses`` (by default the aggregate-and-synthesize prompt),
        fitted to the reader's context (see ``RunContext.synthesis_request``)."""
        return self.context.synthesis_request(expert, q.prompt, responses, q.gen_kwargs, sample, max_tokens, build,
                                              where=f"{q.task} doc {q.doc_id}", system=q.system)

    # ------------------------------------------------------------------ running

    def run_rounds(
        self,
        scheduler: Scheduler,
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

    @staticmethod
    def response_rows(experts: Sequence[str], texts: Sequence[str], question: Question) -> list[dict]:
        """Routing-log entries: who said what, and the answer the task's filter reads in it."""
        return [{"expert": e, "answer": question.answer(t), "text": t} for e, t in zip(experts, texts)]

    def finish(self, requests, questions: list[Question], finals: dict, rows: list[dict], scheduler: Scheduler,
               summary: dict) -> list[str]:
        texts = [finals[q.key] for q in questions]
        runlog = RunLog.open(self.log_dir, self.method, self.pool.name)
        for row in rows:
            runlog.record(row)
        runlog.finish({
            "method": self.method, "pool": self.pool.name, "seed": self.seed, "backend": self.backend,
            "questions": len(questions), "truncated_responses": self.context.truncated_responses,
            "truncated_questions": self.context.truncated_questions,
            **summary, **scheduler.summary(), "reproducibility": self.context.reproducibility(scheduler),
        }, [(q.task, q.doc_id, text) for q, text in zip(questions, texts)])
        for req, text in zip(requests, texts):
            self.cache_hook.add_partial("generate_until", req.args, text)
        return texts
