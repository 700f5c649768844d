"""The run's settings, each declared once in :data:`RUN_ARGS`: name, kind, range, default, help.

Everything else is derived from that table: :class:`RunSettings` (the checked values a run
carries: ``RunContext.settings``, the engines' keyword defaults, Ray workers through the engine
factory), the ``--model_args`` every model accepts, ``symoe profile``'s flags and the README's
table. A new run argument is one ``RunArg`` line. :func:`parse_run_args` turns raw values
(model_args strings, CLI values, Python values) into settings, or one line naming the argument
and its valid range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Optional

from symoe_eval.errors import SymoeError

UNSET = ("", "None", "none", None)


@dataclass(frozen=True)
class RunArg:
    name: str
    kind: type  # int, float or str
    default: Any
    help: str
    minimum: float | None = None
    shown_default: str = ""  # the README's wording of a default that depends on the machine
    auto: bool = False  # ``auto`` (lm-eval's ``--batch_size auto``, ``auto:4``; ``--device auto``) means the default

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, value: Any) -> Any:
        if self.auto and str(value).startswith("auto"):
            return self.default
        if self.kind is str:
            return None if value in (None, "") else str(value)
        if value in UNSET and self.default is None:
            return None
        return model_arg(self.name, value, self.kind, self.minimum)


RUN_ARGS: tuple[RunArg, ...] = (
    RunArg("pool", str, None, "pool name or YAML path", shown_default="`tiny-cpu` (no GPU) / `paper16` (vLLM)"),
    RunArg("engine", str, "auto", "`hf`, `vllm` or a backend you registered; served experts always use `openai`"),
    RunArg("cache_dir", str, None, "generation cache folder; `none` disables the cache",
           shown_default="`~/.cache/symoe_eval/generations/<pool>`"),
    RunArg("seed", int, 0, "run seed (every request's seed is derived from it)", shown_default="lm_eval's `--seed`, else 0"),
    RunArg("temperature", float, None, "overrides the task's sampling temperature", minimum=0, shown_default="task's"),
    RunArg("max_gen_toks", int, None, "caps every answer's new tokens", minimum=1, shown_default="task's, capped by the pool"),
    RunArg("batch_size", int, 8, "rows decoded together (`hf` on a CPU), else distinct prompts per micro-batch (`auto`: 8)", minimum=1,
           shown_default="lm_eval's `--batch_size`, else 8", auto=True),
    RunArg("device", str, None, "`cpu`, `cuda`, `cuda:1`", shown_default="a GPU if there is one", auto=True),
    RunArg("max_loaded", int, None, "models kept resident at once (per worker)", minimum=1,
           shown_default="2 (hf) / 1 (vllm)"),
    RunArg("workers", int, 1, "Ray actors running each stage's model groups; 1: in process, no Ray", minimum=1),
    RunArg("ray_address", str, None, "join a running Ray cluster (`auto`, `ray://host:10001`)"),
    RunArg("gpus_per_worker", float, None, "GPUs per Ray actor", minimum=0, shown_default="from the pool"),
    RunArg("threads", int, None, "torch threads per model process: on a CPU they change the arithmetic", minimum=1,
           shown_default="the process's"),
)
NAMES = tuple(arg.name for arg in RUN_ARGS)

RunSettings = make_dataclass(
    "RunSettings", [(arg.name, Optional[arg.kind], field(default=arg.default)) for arg in RUN_ARGS], frozen=True,
    namespace={"__doc__": "A run's checked settings, one field per ``RUN_ARGS`` entry (what was asked: the "
                          "pool and engine by name)."},
)
RunSettings.__module__ = __name__
DEFAULTS = RunSettings()


def model_arg(name: str, value: Any, kind: type = int, minimum: float | None = None, optional: bool = False):
    """A --model_args value as ``kind``, or one line naming the argument and its valid range:
    NaN and infinities are refused, and an integer argument refuses a fraction (``k=1.5``)."""
    if optional and value in UNSET:
        return None
    valid = ("an integer" if kind is int else "a finite number") + (f" >= {minimum}" if minimum is not None else "")
    given = int(value) if kind is int and isinstance(value, float) and value.is_integer() else value  # lm_eval's CLI: k=-1 -> -1.0
    try:
        number = float(value)
        converted = int(number) if kind is int and isinstance(value, float) else kind(value)
    except (TypeError, ValueError, OverflowError):
        raise SymoeError(f"model_args {name}={given}: expected {valid}") from None
    if not math.isfinite(number) or (kind is int and not number.is_integer()) or (minimum is not None and converted < minimum):
        raise SymoeError(f"model_args {name}={given}: expected {valid}")
    return converted


def parse_run_args(raw: dict[str, Any]) -> RunSettings:
    """Every run argument, checked, with its default where ``raw`` has none."""
    unknown = sorted(set(raw) - set(NAMES))
    if unknown:
        raise SymoeError(f"unknown run arguments {', '.join(unknown)}")
    return RunSettings(**{arg.name: arg.parse(raw[arg.name]) for arg in RUN_ARGS if arg.name in raw})


def add_flags(parser, skip: tuple[str, ...] = ()) -> None:
    """Each run argument as a CLI flag (``--max-gen-toks``), for ``symoe profile``."""
    for arg in RUN_ARGS:
        if arg.name not in skip:
            parser.add_argument(arg.flag, dest=arg.name, default=None, help=f"{arg.help} (default: {readme_default(arg)})")


def readme_default(arg: RunArg) -> str:
    return arg.shown_default or (f"`{arg.default}`" if arg.default is not None else "none")


def readme_table() -> str:
    """The README's table of the model args every model shares (a test keeps the README equal)."""
    rows = [f"| `{arg.name}` | {readme_default(arg)} | {arg.help} |" for arg in RUN_ARGS]
    return "\n".join(["| model arg | default | meaning |", "| --- | --- | --- |", *rows]) + "\n"
