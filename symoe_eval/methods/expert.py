"""``symoe_expert``: one registered expert evaluated alone (the single-model baseline)."""

from __future__ import annotations

from symoe_eval.errors import SymoeError
from symoe_eval.methods.base import Method, MethodResult
from symoe_eval.runtime.scheduling import Call


class SingleExpert(Method):
    """``--model symoe_expert --model_args pool=tiny-cpu,expert=smollm2-135m``. Works on any
    generate_until task; runs through the same scheduler and writes the same run summary as the
    multi-model methods, so its cost sits beside theirs on a leaderboard."""

    def __init__(self, runtime, expert: str | None = None):
        super().__init__(runtime)
        if not expert:
            raise SymoeError(
                f"symoe_expert needs model_args expert=NAME; pool '{self.pool.name}' has: "
                f"{', '.join(self.pool.experts)}"
            )
        self.expert = self.pool.expert(expert).name

    def run(self, questions, scheduler) -> MethodResult:
        calls = [Call(q.key, self.expert, self.runtime.request(self.expert, q.prompt, q.gen_kwargs, q.repeat,
                                                               prefix=q.prefix))
                 for q in questions]
        out = scheduler.run("generate", calls)
        return MethodResult({key: c.text for key, c in out.items()}, summary={"expert": self.expert})
