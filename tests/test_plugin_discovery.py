"""How stock ``lm_eval`` finds us: the ``symoe_eval.pth`` hook on lm-eval 0.4.13, entry points
(``lm_eval.models``, ``lm_eval.tasks``) where lm-eval discovers plugins itself (its pull requests
4013-4015, the compatibility tier: ``.ci/compat-venv``). ``SYMOE_EVAL_NO_HOOK=1`` switches the
hook off."""

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from conftest import run_cli
from symoe_eval.methods import METHODS
from symoe_eval.paths import tasks_dir

PROBE = """
import json, lm_eval.api.registry as r, lm_eval.models, lm_eval.tasks.manager as m
from lm_eval.api.registry import get_model
names = [n for n in ("symoe", "symoe_expert", "moa", "discussion") if n in r.model_registry]
tasks = m.TaskManager()
print(json.dumps({"models": names, "symoe_class": get_model("symoe").__name__ if names else None,
                  "demo_task": "symoe_demo" in tasks.all_tasks,
                  "wrapped": getattr(m.TaskManager.__init__, "_symoe_patched", False),
                  "filter": "symoe_extract" in r.filter_registry}))
"""


def probe(**env) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def plugin_discovery() -> bool:
    import lm_eval.api.registry

    return hasattr(lm_eval.api.registry, "load_plugins")


@pytest.fixture
def compat_tier():
    """Tests of an lm-eval with plugin discovery: skipped elsewhere, failed under SYMOE_REQUIRE_COMPAT."""
    if not plugin_discovery():
        if os.environ.get("SYMOE_REQUIRE_COMPAT"):
            pytest.fail("compatibility tier: this lm-eval has no plugin discovery")
        pytest.skip("compatibility tier: lm-eval without plugin discovery (bash .ci/compat-venv makes .venv-compat)")


def test_the_entry_points_name_every_method_and_the_task_folder():
    models = {ep.name: ep.value for ep in entry_points(group="lm_eval.models") if ep.value.startswith("symoe_eval.")}
    assert models == {name: f"symoe_eval.harness.lm:{name}" for name in METHODS}
    (tasks,) = [ep for ep in entry_points(group="lm_eval.tasks") if ep.value.startswith("symoe_eval.")]
    import importlib.util

    assert Path(importlib.util.find_spec(tasks.value).submodule_search_locations[0]).resolve() == tasks_dir().resolve()


def test_the_hook_registers_us_and_switches_off():
    on = probe()
    assert set(on["models"]) == set(METHODS) and on["symoe_class"] == "SymbolicMoELM"
    assert on["demo_task"] and on["filter"]
    if plugin_discovery():
        assert not on["wrapped"]  # lm-eval scans our task folder from the entry point itself
        return
    off = probe(SYMOE_EVAL_NO_HOOK="1")
    assert off == {"models": [], "symoe_class": None, "demo_task": False, "wrapped": False, "filter": False}


def test_lm_eval_with_plugin_discovery_finds_us_without_the_hook(compat_tier):
    off = probe(SYMOE_EVAL_NO_HOOK="1")
    assert set(off["models"]) == set(METHODS) and off["symoe_class"] == "SymbolicMoELM" and off["demo_task"]


@pytest.mark.slow
def test_lm_eval_runs_symoe_without_the_hook(compat_tier, tiny_cpu_weights, tmp_path):
    """The README's tiny-cpu demo command, shortened to two questions, with the hook switched off."""
    lm_eval = str(Path(sys.executable).parent / "lm_eval")  # this venv's, whatever PATH says
    done = run_cli([lm_eval, "--model", "symoe", "--model_args", f"pool=tiny-cpu,cache_dir={tmp_path / 'gen'}",
                    "--tasks", "symoe_demo", "--limit", "2", "--batch_size", "8", "--output_path", str(tmp_path / "out")],
                   cwd=tmp_path, env_extra={"SYMOE_EVAL_NO_HOOK": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    (results,) = (tmp_path / "out").rglob("results_*.json")
    scores = json.loads(results.read_text())["results"]["symoe_demo"]
    assert 0 <= scores["exact_match,answer"] <= 1
    assert list((tmp_path / "out").glob("routing_summary_symoe_tiny-cpu_*.json"))  # our run log beside lm-eval's
