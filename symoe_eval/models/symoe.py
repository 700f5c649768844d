"""``symoe``: Symbolic Mixture-of-Experts (arXiv 2503.05641) as an lm-eval model."""

from __future__ import annotations

from symoe_eval.errors import SymoeError
from symoe_eval.models.base import SymoeLM


class SymbolicMoE(SymoeLM):
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        raise SymoeError(
            "the symoe model is registered but its routing pipeline is not implemented yet "
            "(issue #3); evaluate single experts with --model symoe_expert meanwhile"
        )
