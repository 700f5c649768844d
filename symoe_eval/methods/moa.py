"""``moa``: Mixture-of-Agents (Wang et al. 2024) through the same engines and scheduler.

Layer 1: every proposer answers the question. Layer l > 1: every proposer answers again given the
previous layer's responses through the aggregate-and-synthesize prompt. Finally the aggregator
synthesizes the last layer. Defaults: 3 layers as in Wang et al.'s main setting; proposers are
the task's top-3 experts by profile strength (the same k=3 as symoe, so a comparison isolates
instance-level routing); the aggregator is the task profile's. Each layer is one scheduler stage.
"""

from __future__ import annotations

from symoe_eval.methods.base import MethodResult, StagedMethod, parse_names, response_rows
from symoe_eval.runoutput import MoaRow
from symoe_eval.runtime.scheduling import Call
from symoe_eval.settings import model_arg


class MixtureOfAgents(StagedMethod):
    def __init__(self, runtime, profiles: str | None = None, layers: int = 3, proposers: str | None = None, n: int = 3,
                 aggregator: str | None = None, aggregator_max_gen_toks: int | None = None, profile: str | None = None):
        super().__init__(runtime, profiles, profile)
        self.layers, self.n = model_arg("layers", layers, minimum=1), model_arg("n", n, minimum=1)
        self.proposers = "|".join(self.pool.expert(p).name for p in parse_names(proposers)) or None
        self.aggregator = self.pool.expert(aggregator).name if aggregator else None
        self.aggregator_max_gen_toks = model_arg("aggregator_max_gen_toks", aggregator_max_gen_toks, minimum=1, optional=True)

    def run(self, questions, scheduler) -> MethodResult:
        tasks = sorted({q.task for q in questions})
        profiles = self.task_profiles(tasks, required=not (self.proposers and self.aggregator))
        teams = {t: self.team(self.proposers, profiles.get(t), self.n) for t in tasks}
        aggregators = {t: self.aggregator or profiles[t].aggregator for t in tasks}

        def propose(layer, q, slot, name, previous):
            if previous is None:
                return self.request(name, q, q.repeat)
            return self.synthesis_request(name, q, previous, q.repeat)

        history = self.run_rounds(scheduler, questions, teams, self.layers, lambda layer: f"layer {layer + 1}",
                                  propose, after=list(aggregators.values()))
        finals = scheduler.run("aggregation", [
            Call(q.key, aggregators[q.task],
                 self.synthesis_request(aggregators[q.task], q, history[q.key][-1], q.repeat, self.aggregator_max_gen_toks))
            for q in questions
        ])
        texts = {key: c.text for key, c in finals.items()}
        rows = [MoaRow(
            task=q.task, doc_id=q.doc_id, repeat=q.repeat, experts=teams[q.task],
            final_answer=q.answer(texts[q.key]), final_text=texts[q.key],
            layers=[response_rows(teams[q.task], layer, q) for layer in history[q.key]], aggregator=aggregators[q.task],
            prompts_cut=self.prompts.cut_prompts[q.key],
        ) for q in questions]
        summary = {**self.shared_summary(), "layers": self.layers, "proposers": teams, "aggregators": aggregators}
        return MethodResult(texts, rows, summary)
