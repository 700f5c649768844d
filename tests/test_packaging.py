"""A regular (non-editable) ``pip install .`` ships the hook, the tasks and the registry (slow)."""

import site
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, listed_tasks_of, run_cli

pytestmark = pytest.mark.slow


def installed_package_dirs() -> list[str]:
    """This interpreter's package folders, whatever it is (venv, conda env, system Python).
    ``venv --system-site-packages`` would expose the *base* interpreter's folders instead."""
    user = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []
    found = [*site.getsitepackages(), *user, *sys.path]
    return [p for p in dict.fromkeys(found) if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


def child_venv(folder: Path) -> Path:
    """A venv that sees this environment's packages (lm-eval, torch, ...) behind its own, so a
    package installed into it shadows ours. A plain path line in a .pth file runs no other .pth
    file, so this environment's editable symoe-eval and its hook stay out of the child."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    site_dir = next((folder / "lib").glob("python3*/site-packages"))
    (site_dir / "_parent_env.pth").write_text("\n".join(installed_package_dirs()) + "\n")
    return folder


def test_child_venv_sees_this_environments_packages(tmp_path):
    python = child_venv(tmp_path / "venv") / "bin" / "python"
    done = subprocess.run([str(python), "-c", "import lm_eval, torch, yaml, sys; print(sys.prefix)"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(tmp_path / "venv")


def test_non_editable_install_serves_tasks_from_site_packages(tmp_path):
    venv = child_venv(tmp_path / "venv")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run([*pip, str(REPO)], check=True, capture_output=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert (site / "symoe_eval.pth").is_file()
    assert (site / "symoe_eval" / "tasks" / "symoe_gpqa.yaml").is_file()
    assert (site / "symoe_eval" / "model_registry" / "tiny-cpu.yaml").is_file()
    shipped = {str(p.parent.relative_to(site)) for p in (site / "symoe_eval").rglob("__init__.py")}
    assert shipped >= {str(p.parent.relative_to(REPO)) for p in (REPO / "symoe_eval").rglob("__init__.py")}

    done = run_cli([str(venv / "bin" / "python"), "-m", "lm_eval", "ls", "tasks"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if "|symoe_gpqa " in line]
    assert rows and str(site) in rows[0]  # served from the installed copy, not the checkout
    assert "symoe_medmcqa_val" in listed_tasks_of(done.stdout)
