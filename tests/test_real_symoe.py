"""Symbolic-MoE with the real tiny-cpu models: profile (killed and resumed), then lm_eval (slow)."""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import run_cli
from symoe_eval.answers import INVALID

pytestmark = pytest.mark.slow

TOKENS = "48"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("symoe-real")


def profile_command(workdir, task):
    return ["symoe", "profile", "--pool", "tiny-cpu", "--task", task, "--limit", "4", "--samples", "2",
            "--max-gen-toks", TOKENS, "--profiles", str(workdir / "profiles"), "--cache-dir", str(workdir / "gen")]


def lm_eval_run(workdir, data_dir, model: str, model_args: str, out):
    """The stock CLI on two tasks, 2 docs each, with the test's profiles and generation cache."""
    args = f"pool=tiny-cpu,{model_args}profiles={workdir / 'profiles'},cache_dir={workdir / 'gen'},max_gen_toks={TOKENS}"
    return run_cli(
        ["lm_eval", "--model", model, "--model_args", args, "--tasks", "symoe_gpqa,symoe_aime24", "--limit", "2",
         "--batch_size", "8", "--output_path", str(out), "--log_samples"],
        cwd=workdir, env_extra={"SYMOE_DATA_DIR": str(data_dir)},
    )


def cached_lines(workdir) -> int:
    return sum(len(p.read_text().splitlines()) for p in (workdir / "gen").glob("*.jsonl"))


def test_profile_killed_midway_resumes_from_the_cache(workdir, data_dir):
    env = {"SYMOE_DATA_DIR": str(data_dir)}
    first = subprocess.Popen(
        [shutil.which("symoe"), *profile_command(workdir, "symoe_gpqa")[1:]], cwd=workdir,
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 600
    while cached_lines(workdir) < 8 and first.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_before = cached_lines(workdir)
    assert done_before >= 8, "the killed run should have cached some generations"

    done = run_cli(profile_command(workdir, "symoe_gpqa"), cwd=workdir, env_extra=env)
    assert done.returncode == 0, done.stderr[-3000:]
    profile = json.loads((workdir / "profiles" / "tiny-cpu" / "symoe_gpqa" / "profile.json").read_text())
    run = profile["provenance"]["run"]["models"]
    assert sum(m["cached_calls"] for m in run.values()) >= done_before
    assert set(profile["experts"]) == {"smollm2-135m", "qwen2.5-coder-0.5b"}
    assert profile["aggregator"] in profile["experts"] and profile["keywords"]
    assert profile["provenance"]["questions"] == 4 and len(profile["provenance"]["split_hash"]) == 64
    assert (workdir / "profiles" / "tiny-cpu" / "symoe_gpqa" / "report.md").read_text().startswith("# Profile")


def test_lm_eval_symoe_on_two_tasks_loads_each_model_once(workdir, data_dir):
    env = {"SYMOE_DATA_DIR": str(data_dir)}
    done = run_cli(profile_command(workdir, "symoe_aime24"), cwd=workdir, env_extra=env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = workdir / "run"
    done = lm_eval_run(workdir, data_dir, "symoe", "", out)
    assert done.returncode == 0, done.stderr[-3000:]
    (results_file,) = out.rglob("results_*.json")
    results = json.loads(results_file.read_text())["results"]
    assert {"symoe_gpqa", "symoe_aime24"} <= set(results)
    (summary_file,) = out.glob("routing_summary_symoe_tiny-cpu_*.json")
    summary = json.loads(summary_file.read_text())
    loaded = {m: s["loads"] for m, s in summary["models"].items() if s["loads"]}
    assert loaded and all(n == 1 for n in loaded.values()), summary["models"]
    assert [s["name"] for s in summary["stages"]] == ["keywords", "experts", "aggregation"]
    rows = [json.loads(line) for line in open(summary["routing_log"])]
    assert sorted((r["task"], r["doc_id"]) for r in rows) == [("symoe_aime24", 0), ("symoe_aime24", 1), ("symoe_gpqa", 0), ("symoe_gpqa", 1)]
    assert all(len(r["experts"]) == 3 and r["final_text"] for r in rows)
    assert "[symoe-eval] model loads:" in done.stderr


def test_moa_baseline_then_compare_and_leaderboard_on_real_outputs(workdir, data_dir):
    """A baseline through the stock CLI over the same docs, then the paired comparison and the
    leaderboard (with the symoe recruitment heatmap) read those real lm-eval outputs."""
    out = workdir / "moa"
    done = lm_eval_run(workdir, data_dir, "moa", "layers=1,", out)
    assert done.returncode == 0, done.stderr[-3000:]
    (summary_file,) = out.glob("routing_summary_moa_tiny-cpu_*.json")
    summary = json.loads(summary_file.read_text())
    assert [s["name"] for s in summary["stages"]] == ["layer 1", "aggregation"]

    compared = run_cli(["symoe", "compare", str(workdir / "run"), str(out), "--json"], cwd=workdir)
    assert compared.returncode == 0, compared.stderr[-2000:]
    report = json.loads(compared.stdout)
    assert report["paired_docs"] == 4 and {t["name"] for t in report["tasks"]} == {"symoe_gpqa", "symoe_aime24"}

    board = run_cli(["symoe", "leaderboard", str(workdir), "--baseline", "moa", "--out", str(workdir / "board")],
                    cwd=workdir)
    assert board.returncode == 0, board.stderr[-2000:]
    table = (workdir / "board" / "leaderboard.md").read_text()
    assert "moa(" in table and "symoe(" in table
    import matplotlib.image as mpimg

    heatmaps = list((workdir / "board").glob("recruitment_*.png"))
    assert heatmaps and all(mpimg.imread(p).shape[0] > 100 for p in heatmaps)


def test_readme_demo_command_runs_offline(demo_outputs):
    """The tiny-cpu demo (conftest's ``demo_outputs``): a routed answer for every question, and
    answers that fit the demo's budget: at most 2 of the 12 expert and 4 final answers without an
    answer to read (5 of 160 on the whole demo when measured; the demo's earlier reason-first
    prompt lost most of them to the budget)."""
    (summary_file,) = demo_outputs.glob("routing_summary_symoe_tiny-cpu_*.json")
    rows = [json.loads(line) for line in open(json.loads(summary_file.read_text())["routing_log"])]
    assert len(rows) == 4 and all(len(r["experts"]) == 3 and r["final_text"] for r in rows)
    assert any(r["mapped_keywords"] for r in rows)  # the committed profile's vocabulary is used
    answers = [e["answer"] for r in rows for e in r["responses"]] + [r["final_answer"] for r in rows]
    assert sum(a == INVALID for a in answers) <= 2, [(e["answer"], e["text"]) for r in rows for e in r["responses"]]


def test_workers_2_gives_the_texts_of_workers_1_sampled_in_the_default_dtype(tmp_path):
    """The stock CLI with workers=2 (two Ray actors) against workers=1, sampled at T=0.7 in the
    default dtype (bf16 on a CPU that has it), one torch thread per model in both: every text the
    same (keywords aside, each expert's and each final), because each request meets the same
    batch-mates whatever the chunking. Before micro-batches had one rule, 5 of 32 expert texts
    differed. Each model is loaded once per worker that ran it; the summaries record the setup."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

    def run(workers):
        out = tmp_path / f"w{workers}"
        args = f"pool=tiny-cpu,temperature=0.7,max_gen_toks=32,cache_dir=none,workers={workers},threads=1"
        done = run_cli(["lm_eval", "--model", "symoe", "--model_args", args, "--tasks", "symoe_demo", "--limit", "4",
                        "--batch_size", "3", "--output_path", str(out), "--log_samples"], cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads(next(out.glob("routing_summary_symoe_*.json")).read_text())
        rows = [json.loads(line) for line in open(summary["routing_log"])]
        return {(r["task"], r["doc_id"]): ([e["text"] for e in r["responses"]], r["final_text"]) for r in rows}, summary

    (alone, one), (spread, two) = run(1), run(2)
    assert spread == alone
    assert len(two["workers"]) == 2
    assert all(n == 1 for w in two["workers"] for n in w["loads"].values()), two["workers"]
    for summary, workers in ((one, 1), (two, 2)):
        setup = summary["reproducibility"]
        assert (setup["engine"], setup["threads"], setup["workers"], setup["batch_size"]) == ("hf", 1, workers, 3)
        assert {m["threads"] for m in setup["models"].values()} == {1}
    assert one["reproducibility"]["models"] == two["reproducibility"]["models"]
