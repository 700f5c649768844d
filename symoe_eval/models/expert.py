"""``symoe_expert``: one registered expert evaluated alone (the single-model baseline)."""

from __future__ import annotations

from tqdm import tqdm

from symoe_eval.errors import SymoeError
from symoe_eval.models.base import SymoeLM


class ExpertLM(SymoeLM):
    """``--model symoe_expert --model_args pool=tiny-cpu,expert=smollm2-135m``."""

    def __init__(self, expert: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if not expert:
            raise SymoeError(
                f"symoe_expert needs model_args expert=NAME; pool '{self.pool.name}' has: "
                f"{', '.join(self.pool.experts)}"
            )
        self.expert = self.pool.expert(expert)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        samples = self.sample_indices(requests)
        calls = [
            self.as_request(req.args[0], self.sampling_for(self.expert, req.args[1]), sample)
            for req, sample in zip(requests, samples)
        ]
        results: list[str] = [""] * len(calls)
        with self.engine_for(self.expert) as engine, tqdm(
            total=len(calls), desc=f"{self.expert.name}", disable=disable_tqdm
        ) as bar:
            for i, completion in engine.iter_generate(calls):
                results[i] = completion.text
                self.cache_hook.add_partial("generate_until", requests[i].args, completion.text)
                bar.update(1)
        return results
