"""Start-up hook that plugs symoe-eval into the stock ``lm_eval`` command.

``symoe_eval.pth`` (installed next to site-packages) imports this module in every Python
process. It must stay stdlib-only and cheap: it only puts one finder on ``sys.meta_path`` that
watches for three lm-eval modules and, once each has been executed, calls
:mod:`symoe_eval.harness.plugin` to register our models and task folder. Nothing of lm-eval or
symoe-eval's heavy code is imported by programs that never import lm-eval. ``SYMOE_EVAL_NO_HOOK=1``
keeps the ``.pth`` line from importing it; an lm-eval that discovers plugins finds us by our entry
points without it.
"""

from __future__ import annotations

import sys

# lm-eval module -> name of the symoe_eval.harness.plugin function to call once it has been executed.
WATCHED = {
    "lm_eval.api.registry": "on_registry_imported",
    "lm_eval.tasks.manager": "on_task_manager_imported",
    "lm_eval.loggers.evaluation_tracker": "on_tracker_imported",
}


class _Loader:
    """Runs the real loader, then our plugin callback for that module. (Duck-typed, not an
    ``importlib.abc`` subclass: importing ``importlib.abc`` costs ~8 ms at every start-up.)"""

    def __init__(self, real, callback: str):
        self._real = real
        self._callback = callback

    def create_module(self, spec):
        return self._real.create_module(spec)

    def exec_module(self, module):
        self._real.exec_module(module)
        from symoe_eval.harness import plugin

        getattr(plugin, self._callback)(module)


class LmEvalWatcher:
    """Wraps the loaders of the WATCHED modules; every other import passes straight through."""

    def find_spec(self, fullname, path=None, target=None):
        callback = WATCHED.get(fullname)
        if callback is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader, callback)
                return spec
        return None


def install() -> None:
    if not any(isinstance(f, LmEvalWatcher) for f in sys.meta_path):
        sys.meta_path.insert(0, LmEvalWatcher())


install()
