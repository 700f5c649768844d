"""What symoe-eval adds to lm-eval: a model name per method, answer filters and a task folder.

Called by the start-up hook (:mod:`symoe_eval.harness.hook`) right after lm-eval's registry and task
manager modules are executed, by the ``symoe-eval`` console script, and when lm-eval imports a
method's model class through our ``lm_eval.models`` entry point. Each path is idempotent. Where
lm-eval reads our entry points itself (its plugin discovery), the models and the task folder are
left to it.
"""

from __future__ import annotations

from symoe_eval.harness.lm_eval_internals import wrap_log_experiment_args, wrap_task_manager_init
from symoe_eval.methods import METHODS
from symoe_eval.paths import tasks_dir

ADAPTERS = "symoe_eval.harness.lm"  # its attribute <name> is the lm-eval model class of method <name>


def one_line_errors() -> None:
    """Under stock ``lm_eval``, our errors end the run as one line, as under ``symoe-eval``
    (``SYMOE_EVAL_DEBUG=1`` keeps the traceback)."""
    import os
    import sys

    previous = sys.excepthook
    if getattr(previous, "_symoe", False) or os.environ.get("SYMOE_EVAL_DEBUG"):
        return

    def hook(kind, error, trace):
        from symoe_eval.errors import SymoeError

        if isinstance(error, SymoeError):
            print(f"error: {error}", file=sys.stderr)
        else:
            previous(kind, error, trace)

    hook._symoe = True
    sys.excepthook = hook


def on_registry_imported(registry_module) -> None:
    # lm-eval fills its registry with its built-in models only when the registry is empty at the
    # first lookup; registering ours first would hide `hf`, `vllm`, ... So fill it first.
    import lm_eval.models  # noqa: F401  (cheap: registers lazy strings)

    for name in METHODS:  # lazy: lm-eval imports a method only when its name is asked for
        if name not in registry_module.model_registry:  # e.g. found through our entry points already
            registry_module.model_registry.register(name, target=f"{ADAPTERS}:{name}")
    register_filters(registry_module)
    one_line_errors()


def lm_eval_discovers_our_tasks(manager_module) -> bool:
    """Whether this lm-eval discovers plugin task folders (``discover_plugin_task_paths``) and
    finds ours among the ``lm_eval.tasks`` entry points (``setup.cfg``)."""
    if not hasattr(manager_module, "discover_plugin_task_paths"):
        return False
    from importlib.metadata import entry_points

    return any(ep.value.startswith("symoe_eval.") for ep in entry_points(group="lm_eval.tasks"))


def register_filters(registry_module) -> None:
    """Our answer filters by name (``function: symoe_extract``), so a results file records a
    stable name instead of ``<function filter_extract at 0x...>``."""
    from lm_eval.api.filter import Filter

    from symoe_eval.harness.task_functions import filter_extract, filter_vote

    for name, fn in (("symoe_extract", filter_extract), ("symoe_vote", filter_vote)):
        if name not in registry_module.filter_registry:
            cls = type(name, (Filter,), {"apply": lambda self, resps, docs, fn=fn: fn(resps, docs),
                                          "__doc__": fn.__doc__})
            registry_module.filter_registry.register(name)(cls)


def run_name(model_source: str, model_args) -> str | None:
    """``symoe-tiny-cpu``, ``symoe_expert-tiny-cpu-smollm2-135m``, ...: what a run of ours is, for
    lm-eval's output folder and model_name (it would otherwise pick a random id)."""
    if model_source not in METHODS:
        return None
    if isinstance(model_args, str):
        model_args = dict(kv.split("=", 1) for kv in model_args.split(",") if "=" in kv)
    from symoe_eval.runtime.context import default_pool

    args = model_args or {}
    pool = str(args.get("pool") or default_pool(args.get("engine"))).rsplit("/", 1)[-1].removesuffix(".yaml")
    parts = [model_source, pool, args.get("expert"), args.get("routing")]
    parts += [f"{key}{args[key]}" for key in ("layers", "rounds", "k") if key in args]
    return "-".join(str(p) for p in parts if p)


def on_tracker_imported(tracker_module) -> None:
    wrap_log_experiment_args(tracker_module, run_name)


def on_task_manager_imported(manager_module) -> None:
    if not lm_eval_discovers_our_tasks(manager_module):
        wrap_task_manager_init(manager_module.TaskManager, str(tasks_dir()))


def activate() -> None:
    """Register everything now, without relying on the .pth start-up hook."""
    import lm_eval.api.registry
    import lm_eval.loggers.evaluation_tracker
    import lm_eval.tasks.manager

    on_registry_imported(lm_eval.api.registry)
    on_task_manager_imported(lm_eval.tasks.manager)
    on_tracker_imported(lm_eval.loggers.evaluation_tracker)


def register_method(name: str, method_cls) -> None:
    """Make ``method_cls`` (a ``symoe_eval.methods.base.Method``) the lm-eval model ``name``:
    ``lm_eval --model name`` then runs it like the built-in methods."""
    METHODS.register(name, method_cls)
    activate()
