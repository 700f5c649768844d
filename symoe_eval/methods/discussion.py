"""``discussion``: multi-agent discussion (Du et al. 2023; ReConcile, Chen et al. 2024, for
heterogeneous models) through the same engines and scheduler.

Round 0: every agent answers. Rounds 1..R: every agent sees the others' latest answers and
explanations and updates its own. The final answer is the vote of the answers the task's filter
reads in the last round (ties to the agent with the higher profile strength); ``vote=confidence``
weighs each vote by the confidence the agent states, as ReConcile does. The returned text ends with the
task's answer format so the task's filter scores the vote.
"""

from __future__ import annotations

import re

from symoe_eval.errors import SymoeError
from symoe_eval.symbolic.aggregation import discussion_prompt
from symoe_eval.answers import INVALID, choices_in, vote
from symoe_eval.methods.base import MethodResult, StagedMethod, parse_names, response_rows
from symoe_eval.runoutput import DiscussionRow
from symoe_eval.settings import model_arg

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


class Discussion(StagedMethod):

    def __init__(self, runtime, profiles: str | None = None, agents: str | None = None, n: int = 3, rounds: int = 2,
                 vote: str = "majority", profile: str | None = None):
        super().__init__(runtime, profiles, profile)
        self.agents = "|".join(self.pool.expert(a).name for a in parse_names(agents)) or None
        self.n, self.rounds = model_arg("n", n, minimum=1), model_arg("rounds", rounds, minimum=0)
        if vote not in VOTES:
            raise SymoeError(f"unknown vote '{vote}'; choose one of {', '.join(VOTES)}")
        self.vote = vote

    def run(self, questions, scheduler) -> MethodResult:
        tasks = sorted({q.task for q in questions})
        profiles = self.task_profiles(tasks, required=not self.agents)  # default team and tie-break
        teams = {t: self.team(self.agents, profiles.get(t), self.n) for t in tasks}
        strength = {t: {e: (profiles[t].experts[e].strength if t in profiles and e in profiles[t].experts else 0)
                        for e in teams[t]} for t in tasks}
        ask_confidence = self.vote == "confidence"

        def speak(rnd, q, slot, name, previous):
            if previous is None:
                return self.request(name, q, q.repeat)
            ordered = [previous[slot]] + [t for j, t in enumerate(previous) if j != slot]  # own answer first
            return self.synthesis_request(
                name, q, ordered, q.repeat,
                build=lambda question, texts: discussion_prompt(question, texts[0], texts[1:], ask_confidence))

        history = self.run_rounds(scheduler, questions, teams, self.rounds + 1, lambda rnd: f"round {rnd}", speak, after=[])
        rows = [self._decide(q, teams[q.task], history[q.key], strength[q.task], ask_confidence, self.prompts.cut_prompts[q.key])
                for q in questions]
        summary = {**self.shared_summary(), "rounds": self.rounds, "agents": teams, "vote": self.vote}
        return MethodResult({q.key: row.final_text for q, row in zip(questions, rows)}, rows, summary)

    @staticmethod
    def _decide(q, team: list[str], history: list[list[str]], strength: dict, ask_confidence: bool,
                prompts_cut: int = 0) -> DiscussionRow:
        """The vote of the last round; the returned text is the winner's (the strongest speaker
        among those who gave it) with the task's answer line added."""
        last = history[-1]
        answers = [q.answer(t) for t in last]
        weights = [stated_confidence(t) for t in last] if ask_confidence else None
        ties = [strength[e] for e in team]
        winner = vote(answers, weights, ties)
        if winner == INVALID:
            final = last[0]
        else:
            speaker = max((i for i, a in enumerate(answers) if a == winner), key=lambda i: ties[i])
            final = f"{last[speaker].rstrip()}\n\n{answer_line(winner, q.text)}"
        return DiscussionRow(task=q.task, doc_id=q.doc_id, repeat=q.repeat, experts=team, final_answer=winner,
                             final_text=final, rounds=[response_rows(team, rnd, q) for rnd in history],
                             votes=answers, vote_weights=weights, prompts_cut=prompts_cut)
