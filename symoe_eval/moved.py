"""Old module names that still import, with a ``DeprecationWarning``: each maps to the module it
moved to, which both names then share (same classes, same registries). Installed on the import
path by ``symoe_eval/__init__.py``; the old names go with release 0.2."""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import warnings

MOVED = {
    **{f"symoe_eval.methods.{name}": f"symoe_eval.symbolic.{name}"
       for name in ("aggregation", "profiles", "profiling", "routing", "skills")},
    "symoe_eval.methods.answers": "symoe_eval.answers",
    "symoe_eval.harness.tasks": "symoe_eval.harness.task_functions",
}


class MovedModules:
    """Finds an old name of :data:`MOVED` and loads it as the new module (a meta path finder and
    its loader; the hook imports this in every process, so it stays free of ``importlib.abc``)."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        warnings.warn(f"{spec.name} is now {MOVED[spec.name]}; the old name goes with release 0.2",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:
        """Nothing to run: the module is the new one, already imported."""


def install() -> None:
    if not any(isinstance(finder, MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(MovedModules())
