"""A regular (non-editable) ``pip install .`` ships the hook, the tasks and the registry (slow)."""

import subprocess
import sys

import pytest

from conftest import REPO, listed_tasks_of, run_cli

pytestmark = pytest.mark.slow


def test_non_editable_install_serves_tasks_from_site_packages(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run([*pip, str(REPO)], check=True, capture_output=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert (site / "symoe_eval.pth").is_file()
    assert (site / "symoe_eval" / "tasks" / "symoe_gpqa.yaml").is_file()
    assert (site / "symoe_eval" / "model_registry" / "tiny-cpu.yaml").is_file()

    done = run_cli([str(venv / "bin" / "python"), "-m", "lm_eval", "ls", "tasks"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if "|symoe_gpqa " in line]
    assert rows and str(site) in rows[0]  # served from the installed copy, not the checkout
    assert "symoe_medmcqa_val" in listed_tasks_of(done.stdout)
