"""``symoe_expert``: one registered expert evaluated alone (the single-model baseline)."""

from __future__ import annotations

from symoe_eval.errors import SymoeError
from symoe_eval.models.base import SymoeLM
from symoe_eval.runlog import RunLog
from symoe_eval.scheduling import Call


class ExpertLM(SymoeLM):
    """``--model symoe_expert --model_args pool=tiny-cpu,expert=smollm2-135m``. Works on any
    generate_until task; runs through the same scheduler and writes the same run summary as the
    multi-model methods, so its cost sits beside theirs on a leaderboard."""

    def __init__(self, expert: str | None = None, log_dir: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if not expert:
            raise SymoeError(
                f"symoe_expert needs model_args expert=NAME; pool '{self.pool.name}' has: "
                f"{', '.join(self.pool.experts)}"
            )
        self.expert = self.pool.expert(expert)
        self.log_dir = log_dir

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        calls = [
            Call(i, self.expert.name, self.context.request(self.expert.name, prompt, req.args[1], sample, prefix=prefix))
            for i, (req, sample, (prefix, prompt)) in enumerate(zip(requests, self.sample_indices(requests),
                                                                    self.contexts(requests)))
        ]
        with self.context.scheduler(not disable_tqdm) as scheduler:
            out = scheduler.run("generate", calls)
        texts = [out[i].text for i in range(len(calls))]
        for req, text in zip(requests, texts):
            self.cache_hook.add_partial("generate_until", req.args, text)
        RunLog.open(self.log_dir, "symoe_expert", self.pool.name).finish({
            "method": "symoe_expert", "pool": self.pool.name, "expert": self.expert.name, "seed": self.seed,
            "backend": self.backend, "questions": len(requests), **scheduler.summary(),
            "reproducibility": self.context.reproducibility(scheduler),
        }, [(req.task_name, req.doc_id, text) for req, text in zip(requests, texts)])
        return texts
