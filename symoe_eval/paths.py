"""Where symoe-eval keeps things: the package's task and registry folders, and the user cache."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

CACHE_ENV = "SYMOE_CACHE_DIR"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"symoe-eval is installed without its {name} folder; reinstall it")
    return Path(list(spec.submodule_search_locations)[0])


def tasks_dir() -> Path:
    return _package_dir("symoe_eval.tasks")


def registry_dir() -> Path:
    return _package_dir("symoe_eval.model_registry")


def profiles_root() -> Path:
    """Committed and newly built profiles (``--profiles`` / ``profiles=`` point elsewhere)."""
    return registry_dir() / "profiles"


def cache_root() -> Path:
    """Assembled GGUF files, dense copies, generations and run logs; ``$SYMOE_CACHE_DIR`` moves it."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "symoe_eval").expanduser()
