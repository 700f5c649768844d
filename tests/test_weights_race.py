"""Two runs that first-load the same GGUF model at once (slow: both de-quantize smollm2)."""

import os
import subprocess
import sys

import pytest

from symoe_eval.atomic import publish, scratch_path

LOAD = ("from symoe_eval.engines import make_engine; from symoe_eval.pools.schema import load_pool; "
        "e = make_engine(load_pool('tiny-cpu').expert('smollm2-135m'), engine='hf'); e.load(); print('loaded')")


@pytest.mark.slow
def test_two_processes_dequantizing_one_model_both_succeed(tmp_path):
    env = {**os.environ, "SYMOE_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen([sys.executable, "-c", LOAD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [r.communicate(timeout=600) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [err[-1500:] for _, err in outputs]
    dense = tmp_path / "cache" / "dense"
    assert [p.name for p in dense.iterdir()] == [next(dense.iterdir()).name]  # one copy, no .partial left
    assert (next(dense.iterdir()) / "config.json").is_file()


def test_scratch_paths_are_per_process_and_dead_leftovers_are_cleared(tmp_path):
    target = tmp_path / "model"
    (tmp_path / "model.partial").mkdir()  # an older version's shared scratch folder
    (tmp_path / "model.partial-999999999").mkdir()  # a process that no longer exists
    scratch = scratch_path(target)
    assert scratch.name == f"model.partial-{os.getpid()}"
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    scratch.mkdir()
    (scratch / "config.json").write_text("{}")
    publish(scratch, target)
    loser = scratch_path(target)
    loser.mkdir()
    (loser / "config.json").write_text("{}")
    (loser / "extra").write_text("x")
    publish(loser, target)  # someone else won: keep theirs, drop ours
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"] and not (target / "extra").exists()
