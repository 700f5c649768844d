"""``discussion``: multi-agent discussion (Du et al. 2023; ReConcile, Chen et al. 2024, for
heterogeneous models) through the same engines and scheduler.

Round 0: every agent answers. Rounds 1..R: every agent sees the others' latest answers and
explanations and updates its own. The final answer is the vote of the last round's extracted
answers (ties to the agent with the higher profile strength); ``vote=confidence`` weighs each
vote by the confidence the agent states, as ReConcile does. The returned text ends with the
task's answer format so the task's filter scores the vote.
"""

from __future__ import annotations

import re

from symoe_eval.aggregation import discussion_prompt
from symoe_eval.answers import INVALID, choices_in, extract_answer, vote
from symoe_eval.errors import SymoeError
from symoe_eval.runargs import model_arg
from symoe_eval.models.staged import StagedLM, parse_names

VOTES = ("majority", "confidence")
_CONFIDENCE = re.compile(r"confidence\s*[:=]?\s*(\d+(?:\.\d+)?)\s*(%?)", re.IGNORECASE)


def stated_confidence(text: str) -> float:
    """The last "Confidence: x" in a response, as a number in [0, 1]; 1.0 when none is stated."""
    found = _CONFIDENCE.findall(text)
    if not found:
        return 1.0
    value, percent = found[-1]
    number = float(value) / (100 if percent or float(value) > 1 else 1)
    return min(max(number, 0.0), 1.0)


def answer_line(answer: str, question: str) -> str:
    return f"The answer is ({answer})." if choices_in(question) else f"The answer is \\boxed{{{answer}}}."


class Discussion(StagedLM):
    method = "discussion"

    def __init__(self, agents: str | None = None, n: int = 3, rounds: int = 2, vote: str = "majority", **kwargs):
        super().__init__(**kwargs)
        self.agents = "|".join(self.pool.expert(a).name for a in parse_names(agents)) or None
        self.n, self.rounds = model_arg("n", n, minimum=1), model_arg("rounds", rounds, minimum=0)
        if vote not in VOTES:
            raise SymoeError(f"unknown vote '{vote}'; choose one of {', '.join(VOTES)}")
        self.vote = vote

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        questions = self.questions(requests)
        tasks = sorted({q.task for q in questions})
        profiles = self.task_profiles(tasks, required=not self.agents)  # default team and tie-break
        teams = {t: self.team(self.agents, profiles.get(t), self.n) for t in tasks}
        strength = {t: {e: (profiles[t].experts[e].strength if t in profiles and e in profiles[t].experts else 0)
                        for e in teams[t]} for t in tasks}
        ask_confidence = self.vote == "confidence"

        def speak(rnd, q, slot, name, previous):
            if previous is None:
                return self.request(name, q, q.prompt, q.repeat)
            ordered = [previous[slot]] + [t for j, t in enumerate(previous) if j != slot]  # own answer first
            return self.synthesis_request(
                name, q, ordered, q.repeat,
                build=lambda question, texts: discussion_prompt(question, texts[0], texts[1:], ask_confidence))

        with self.context.scheduler(not disable_tqdm) as scheduler:
            history = self.run_rounds(scheduler, questions, teams, self.rounds + 1, lambda rnd: f"round {rnd}", speak, after=[])
        finals, rows = {}, []
        for q in questions:
            team, last = teams[q.task], history[q.key][-1]
            answers = [extract_answer(t, q.text) for t in last]
            weights = [stated_confidence(t) for t in last] if ask_confidence else None
            ties = [strength[q.task][e] for e in team]
            winner = vote(answers, weights, ties)
            if winner == INVALID:
                finals[q.key] = last[0]
            else:
                speaker = max((i for i, a in enumerate(answers) if a == winner), key=lambda i: ties[i])
                finals[q.key] = f"{last[speaker].rstrip()}\n\n{answer_line(winner, q.text)}"
            rows.append({
                "task": q.task, "doc_id": q.doc_id, "repeat": q.repeat, "experts": team,
                "rounds": [self.response_rows(team, rnd, q) for rnd in history[q.key]],
                "votes": answers, "vote_weights": weights, "final_answer": winner, "final_text": finals[q.key],
            })
        summary = {"rounds": self.rounds, "agents": teams, "vote": self.vote}
        return self.finish(requests, questions, finals, rows, scheduler, summary)
