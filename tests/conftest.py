import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SYMOE_TEST_DATA_DIR", REPO.parent / "shared" / "data" / "symoe_splits"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "GPQA_test.json").is_file():
        if os.environ.get("SYMOE_REQUIRE_DATA"):
            pytest.fail(f"benchmark splits missing at {DATA_DIR}")
        pytest.skip(f"benchmark splits not found at {DATA_DIR} (set SYMOE_TEST_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_cpu_weights() -> None:
    """Tests that read the tiny-cpu weight files: skipped (named) where the pool is not installed,
    failed instead under SYMOE_REQUIRE_WEIGHTS (CI installs it)."""
    from symoe_eval.pools.schema import load_pool
    from symoe_eval.pools.weights import missing_files

    problems = missing_files(load_pool("tiny-cpu"))
    if problems:
        if os.environ.get("SYMOE_REQUIRE_WEIGHTS"):
            pytest.fail(problems[0])
        pytest.skip(f"tiny-cpu weights not installed (symoe install-pool tiny-cpu): {problems[0]}")


@pytest.fixture(scope="session")
def vllm_installed(tiny_cpu_weights) -> None:
    """The real-vLLM tier: skipped (named) without vLLM, failed instead under SYMOE_REQUIRE_VLLM (CI)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        if os.environ.get("SYMOE_REQUIRE_VLLM"):
            pytest.fail("real-vLLM tier: vllm is not importable in this venv")
        pytest.skip("real-vLLM tier: vllm not installed here (bash .ci/vllm-venv makes .venv-vllm)")


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray instance whose workers can import the test modules (fakes, test classes)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    if not ray.is_initialized():
        tests = str(Path(__file__).parent)
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}})
    yield ray
    ray.shutdown()


@pytest.fixture
def registered():
    """``registered(REGISTRY, name, entry)``: an entry for this test only (removed after it)."""
    added = []

    def register(registry, name, entry):
        registry.register(name, entry)
        added.append((registry, name))

    yield register
    for registry, name in added:
        registry.unregister(name)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Point the symoe cache (assembled GGUF files, verified markers) at a temp folder."""
    monkeypatch.setenv("SYMOE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def demo_outputs(tmp_path_factory) -> Path:
    """The README's tiny-cpu demo command, once per session for the tests that read its outputs: the
    packaged demo with the committed tiny-cpu profile, no data folder and no hub, at the demo's own
    token budget (shortened to one question of each of four subjects; the first docs are all
    arithmetic, where the 0.5B keyword model rarely yields a usable keyword)."""
    root = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if k != "SYMOE_DATA_DIR"}
    done = subprocess.run(
        [shutil.which("lm_eval"), "--model", "symoe", "--model_args", f"pool=tiny-cpu,cache_dir={root / 'gen'}",
         "--tasks", "symoe_demo", "--samples", '{"symoe_demo": [8, 16, 24, 32]}', "--batch_size", "8",
         "--output_path", str(root / "demo"), "--log_samples"],
        cwd=root, env={**env, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "demo"


def run_cli(args, cwd, env_extra=None, timeout=900):
    """Run a console script as a new user would: from ``cwd``, in a fresh process."""
    env = {**os.environ, **(env_extra or {})}
    exe = shutil.which(args[0]) or args[0]
    return subprocess.run([exe, *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def python_exe() -> str:
    return sys.executable


def listed_tasks_of(output: str) -> set[str]:
    """Task names in the table that ``lm_eval ls tasks`` prints."""
    return {cell.strip() for line in output.splitlines() for cell in line.split("|")[1:2]}
