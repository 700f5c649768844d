"""symoe compare / leaderboard over hand-made lm-eval outputs with known answers."""

import json
from math import comb
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from conftest import run_cli
from lm_eval_outputs import discordant, run_summary, write_builtin_run, write_run
from symoe_eval.analysis.compare import compare_runs, render
from symoe_eval.errors import SymoeError
from symoe_eval.analysis.leaderboard import build_leaderboard
from symoe_eval.analysis.runs import find_runs, load_run
from symoe_eval.analysis.stats import holm


def binomial_p(k_a, k_b):
    n, k = k_a + k_b, min(k_a, k_b)
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n)


@pytest.fixture
def two_runs(tmp_path):
    g_a, g_b = discordant(20, 12, 2, 6)
    m_a, m_b = discordant(10, 3, 4, 13)
    a = write_run(tmp_path, "a", {"pool": "tiny-cpu", "expert": "qwen"}, {"symoe_gpqa": g_a, "symoe_medmcqa": m_a})
    b = write_run(tmp_path, "b", {"pool": "tiny-cpu", "expert": "smol"}, {"symoe_gpqa": g_b, "symoe_medmcqa": m_b})
    return tmp_path, a, b


def test_compare_known_p_values_and_holm(two_runs):
    _, a, b = two_runs
    report = compare_runs(load_run(a), load_run(b))
    gpqa, med = report["tasks"]
    assert (gpqa["name"], gpqa["n"], gpqa["only_a"], gpqa["only_b"]) == ("symoe_gpqa", 40, 12, 2)
    assert gpqa["mcnemar_p"] == pytest.approx(binomial_p(12, 2))
    assert med["mcnemar_p"] == pytest.approx(binomial_p(3, 4))
    assert [gpqa["holm_p"], med["holm_p"]] == pytest.approx(holm([binomial_p(12, 2), binomial_p(3, 4)]))
    assert gpqa["difference"] == pytest.approx(10 / 40) and gpqa["ci_low"] > 0
    assert report["overall"]["n"] == report["paired_docs"] == 70
    assert report["overall"]["only_a"] == 15 and report["overall"]["only_b"] == 6


def test_json_round_trips_and_table_renders(two_runs):
    _, a, b = two_runs
    report = compare_runs(load_run(a), load_run(b), seed=1)
    assert json.loads(render(report, "json")) == report
    table = render(report, "table")
    assert "symoe_gpqa" in table and "overall" in table and "(12:2)" in table
    assert render(report, "markdown").count("|") > 20


def test_runs_on_different_docs_or_prompts_are_refused(tmp_path):
    a = write_run(tmp_path, "a", {}, {"symoe_gpqa": [1, 0, 1]})
    short = write_run(tmp_path, "b", {}, {"symoe_gpqa": [1, 0]})
    other_prompt = write_run(tmp_path, "c", {}, {"symoe_gpqa": [1, 0, 1]}, prompt_suffix="x")
    with pytest.raises(SymoeError, match="different documents \\(3 vs 2, 2 in common\\)"):
        compare_runs(load_run(a), load_run(short))
    with pytest.raises(SymoeError, match="different prompt .*--pair-by-doc"):
        compare_runs(load_run(a), load_run(other_prompt))
    assert compare_runs(load_run(a), load_run(other_prompt), pair_by_doc=True)["paired_docs"] == 3
    with pytest.raises(SymoeError, match="tasks symoe_aime24 are not in both runs: A has symoe_gpqa; B has symoe_gpqa"):
        compare_runs(load_run(a), load_run(short), tasks=["symoe_aime24"])


def test_compare_cli_json(two_runs, tmp_path):
    root, a, b = two_runs
    done = run_cli(["symoe", "compare", str(root / "a"), str(root / "b"), "--json"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tasks"][0]["only_a"] == 12
    bad = run_cli(["symoe", "compare", str(root / "a"), str(tmp_path / "nowhere")], cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:") and len(bad.stderr.strip().splitlines()) == 1


def test_leaderboard_writes_table_csv_and_plots(two_runs, tmp_path):
    root, _, _ = two_runs
    strong = [1.0] * 55 + [0.0] * 5
    weak = [1.0] * 20 + [0.0] * 40
    write_run(root, "c", {"pool": "tiny-cpu", "expert": "big"}, {"symoe_aime24": strong})
    write_run(root, "d", {"pool": "tiny-cpu", "expert": "tiny"}, {"symoe_aime24": weak})
    out = tmp_path / "board"
    written = build_leaderboard(root, out, baseline="expert=tiny", note="synthetic")
    table = written["markdown"].read_text()
    assert "symoe_expert(pool=tiny-cpu,expert=big)" in table and "(baseline)" in table
    big_row = next(line for line in table.splitlines() if "expert=big" in line)
    assert "91.7% [" in big_row and "] +" in big_row  # significantly better than the baseline
    assert len(written["csv"].read_text().splitlines()) == 5
    image = mpimg.imread(written["accuracy_plot"])
    assert image.shape[0] >= 300 and image.shape[1] >= 500


def test_leaderboard_on_an_empty_folder_is_one_line(tmp_path):
    with pytest.raises(SymoeError, match="no lm-eval runs"):
        build_leaderboard(tmp_path)


def test_a_run_and_its_cached_rerun_are_each_credited_with_their_own_summary(tmp_path):
    """The same answers twice (the quick start, then its rerun from the generation cache): the
    digests match both summaries, so each run takes the last one written before its results file
    (before, both took the first: the cached run showed the cold run's 2 loads and 6,449 tokens)."""
    folder = tmp_path / "out" / "model_dir"
    scores = {"symoe_demo": [1.0, 0.0, 1.0]}
    for stamp in ("2026-12-07T10-05-00.000001", "2026-12-07T10-09-00.000001"):
        write_run(tmp_path, "demo", {"pool": "tiny-cpu"}, scores, model="symoe", stamp=stamp, folder=folder)
    summaries = {
        "2026-12-07T10-01-00.000001": run_summary("demo", scores, method="symoe", total_loads=2,
                                                  models={"a": {"calls": 3, "generated_tokens": 6449}}),
        "2026-12-07T10-08-59.000001": run_summary("demo", scores, method="symoe", total_loads=0,
                                                  models={"a": {"calls": 0, "cached_calls": 3, "generated_tokens": 0}}),
    }
    for stamp, summary in summaries.items():
        (folder.parent / f"routing_summary_symoe_tiny-cpu_{stamp}.json").write_text(json.dumps(summary))
    runs = {r.stamp: r for r in find_runs(tmp_path)}
    assert runs["2026-12-07T10-05-00.000001"].summary["total_loads"] == 2
    assert runs["2026-12-07T10-09-00.000001"].summary["total_loads"] == 0
    assert runs["2026-12-07T10-09-00.000001"].summary_path.name.endswith("10-08-59.000001.json")


def test_runs_in_one_folder_each_get_their_own_run_summary(tmp_path):
    """Two symoe runs in one --output_path folder: each is credited with the summary whose answers
    digest matches its samples, whatever the summaries' timestamps say."""
    folder = tmp_path / "out" / "model_dir"
    first, second = {"symoe_gpqa": [1.0, 0.0]}, {"symoe_gpqa": [0.0, 0.0]}
    write_run(tmp_path, "first", {"pool": "tiny-cpu"}, first, model="symoe", stamp="2026-11-25T10-00-00.000001", folder=folder)
    write_run(tmp_path, "second", {"pool": "tiny-cpu", "k": 2}, second, model="symoe", stamp="2026-11-25T11-00-00.000001",
              folder=folder)
    summaries = {  # stamps that a time-based match would get wrong
        "symoe_tiny-cpu_2026-11-25T10-59-00.000001": run_summary("first", first, method="symoe", total_loads=2,
                                                                  models={"a": {"calls": 4, "generated_tokens": 40}}),
        "symoe_tiny-cpu_2026-11-25T09-00-00.000001": run_summary(  # answered from the cache: no load, nothing generated
            "second", second, method="symoe", total_loads=0,
            models={"a": {"calls": 0, "cached_calls": 4, "cached_tokens": 40, "generated_tokens": 0}}),
        "symoe_expert_tiny-cpu_2026-11-25T10-59-30.000001": run_summary("first", first, method="symoe_expert", total_loads=99),
    }
    for stem, summary in summaries.items():
        (folder.parent / f"routing_summary_{stem}.json").write_text(json.dumps(summary))
    runs = {r.stamp: r for r in find_runs(tmp_path)}
    assert runs["2026-11-25T10-00-00.000001"].summary["total_loads"] == 2
    assert runs["2026-11-25T11-00-00.000001"].summary["total_loads"] == 0
    table = build_leaderboard(tmp_path, tmp_path / "b")["markdown"].read_text()
    # models used, calls and tokens are the method's work, cold cache or not; loads and generated are this run's
    assert "| 1 | 4 | 40 | 2 | 40 | 12 |" in table and "| 1 | 4 | 40 | 0 | 0 | 12 |" in table


def test_a_cut_samples_file_skips_its_torn_last_line_and_names_a_damaged_one(tmp_path, caplog):
    results = write_run(tmp_path, "r", {}, {"symoe_gpqa": [1.0, 0.0, 1.0]})
    (samples,) = results.parent.glob("samples_*.jsonl")
    text = samples.read_text()
    samples.write_text(text[: len(text) - 40])  # killed mid-write
    with caplog.at_level("WARNING"):
        run = load_run(results)
    assert len(run.tasks["symoe_gpqa"].scores) == 2 and "torn last line 3" in caplog.text
    lines = text.splitlines()
    samples.write_text("\n".join([lines[0], lines[1][:30], lines[2]]) + "\n")
    with pytest.raises(SymoeError, match=f"{samples}: line 2 is not JSON"):
        load_run(results)
    results.write_text(results.read_text()[:20])
    with pytest.raises(SymoeError, match=f"{results} is not JSON"):
        load_run(results)


def test_runs_on_different_tasks_list_each_runs_tasks(tmp_path):
    a = write_run(tmp_path, "a", {}, {"symoe_gpqa": [1.0]})
    b = write_run(tmp_path, "b", {}, {"symoe_aime24": [1.0], "symoe_medmcqa": [0.0]})
    with pytest.raises(SymoeError, match="the runs share no task: A has symoe_gpqa; B has symoe_aime24, symoe_medmcqa"):
        compare_runs(load_run(a), load_run(b))


def test_leaderboard_marks_cells_with_other_document_counts_and_refuses_an_ambiguous_baseline(tmp_path):
    write_run(tmp_path, "a", {"expert": "qwen-a"}, {"symoe_gpqa": [1.0, 0.0, 1.0, 1.0]})
    write_run(tmp_path, "b", {"expert": "qwen-b"}, {"symoe_gpqa": [1.0, 0.0, 0.0, 1.0]})
    write_run(tmp_path, "c", {"expert": "smol"}, {"symoe_gpqa": [1.0, 0.0]})
    table = build_leaderboard(tmp_path, tmp_path / "b")["markdown"].read_text()
    assert "(n=2)" in next(line for line in table.splitlines() if "expert=smol" in line)
    assert "(n=" not in next(line for line in table.splitlines() if "expert=qwen-a" in line)
    with pytest.raises(SymoeError, match="baseline 'qwen' matches 2 runs, not one"):
        build_leaderboard(tmp_path, tmp_path / "b", baseline="qwen")


def test_leaderboard_tells_runs_with_equal_model_args_apart(tmp_path):
    """Two runs of one model and args (a rerun, another seed) had equal labels: rows nobody could tell apart."""
    write_run(tmp_path, "a", {"expert": "qwen"}, {"symoe_gpqa": [1.0, 0.0]}, stamp="2026-11-25T10-00-00.000001")
    write_run(tmp_path, "b", {"expert": "qwen"}, {"symoe_gpqa": [1.0, 1.0]}, stamp="2026-11-25T11-00-00.000001")
    write_run(tmp_path, "c", {"expert": "smol"}, {"symoe_gpqa": [0.0, 0.0]})
    table = build_leaderboard(tmp_path, tmp_path / "out", baseline="T10-00")["markdown"].read_text()
    rows = [line for line in table.splitlines() if "expert=" in line]
    assert len(rows) == 3 and len({row.split("|")[1] for row in rows}) == 3
    assert any("expert=qwen) @ 2026-11-25T10-00-00.000001 (baseline)" in row for row in rows)
    assert any("expert=qwen) @ 2026-11-25T11-00-00.000001" in row for row in rows)
    assert any("expert=smol) |" in row or "expert=smol) " in row for row in rows)


def test_leaderboard_names_the_tasks_of_equal_model_args_on_other_tasks(tmp_path):
    """One expert alone and its self-consistency twin (another task): told apart by their tasks,
    and either can be the baseline."""
    write_run(tmp_path, "a", {"expert": "qwen"}, {"symoe_gpqa": [1.0, 0.0]}, stamp="2026-11-25T10-00-00.000001")
    write_run(tmp_path, "b", {"expert": "qwen"}, {"symoe_gpqa_sc": [1.0, 1.0]}, stamp="2026-11-25T11-00-00.000001")
    table = build_leaderboard(tmp_path, tmp_path / "out", baseline="qwen) [symoe_gpqa]")["markdown"].read_text()
    rows = [line for line in table.splitlines() if "expert=" in line]
    assert any("expert=qwen) [symoe_gpqa] (baseline)" in row for row in rows)
    assert any("expert=qwen) [symoe_gpqa_sc] |" in row for row in rows) and "@" not in table


@pytest.fixture
def builtin_runs(tmp_path):
    a = write_builtin_run(tmp_path, "a", {"strict-match": [1, 1, 0, 1], "flexible-extract": [1, 1, 1, 1]}, [1, 0, 1])
    b = write_builtin_run(tmp_path, "b", {"strict-match": [0, 1, 0, 0], "flexible-extract": [1, 1, 1, 0]}, [0, 0, 1])
    return a, b


def test_compare_reads_each_tasks_own_filter(builtin_runs):
    a, b = builtin_runs
    report = compare_runs(load_run(a), load_run(b))
    rows = {r["name"]: r for r in report["tasks"]}
    assert set(rows) == {"gsm8k", "mmlu_pro_math"}  # the group's aggregate has no samples: no row
    assert rows["gsm8k"]["scored_by"] == "exact_match,strict-match"  # the task's first filter
    assert (rows["gsm8k"]["n"], rows["gsm8k"]["accuracy_a"], rows["gsm8k"]["accuracy_b"]) == (4, 0.75, 0.25)
    assert rows["mmlu_pro_math"]["scored_by"] == "exact_match,custom-extract"
    assert report["paired_docs"] == 7
    assert "exact_match,strict-match" in render(report, "table")


def test_compare_filter_can_be_chosen_and_an_absent_one_is_an_error(builtin_runs):
    a, b = builtin_runs
    report = compare_runs(load_run(a, filter_name="flexible-extract"), load_run(b, filter_name="flexible-extract"), tasks=["gsm8k"])
    (row,) = report["tasks"]
    assert (row["scored_by"], row["accuracy_a"], row["accuracy_b"]) == ("exact_match,flexible-extract", 1.0, 0.75)
    with pytest.raises(SymoeError, match="no scored documents for exact_match,answer .*exact_match,strict-match, exact_match,flexible-extract"):
        compare_runs(load_run(a, filter_name="answer"), load_run(b, filter_name="answer"), tasks=["gsm8k"])


def test_a_task_with_one_paired_document_still_gets_a_row(tmp_path):
    a = write_run(tmp_path, "a", {}, {"symoe_gpqa": [1.0]})
    b = write_run(tmp_path, "b", {}, {"symoe_gpqa": [0.0]})
    (row,) = compare_runs(load_run(a), load_run(b))["tasks"]
    assert (row["n"], row["permutation_p"], row["mcnemar_p"]) == (1, 1.0, 1.0)


def test_compare_cli_on_builtin_shaped_runs(builtin_runs, tmp_path):
    a, b = builtin_runs
    done = run_cli(["symoe", "compare", str(a), str(b), "--json"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["paired_docs"] == 7
    done = run_cli(["symoe", "compare", str(a), str(b), "--filter", "answer"], cwd=tmp_path)
    assert done.returncode != 0 and "no scored documents" in done.stderr and "Traceback" not in done.stderr


def test_a_folder_of_several_runs_is_listed_not_silently_resolved(tmp_path):
    folder = tmp_path / "out" / "model_dir"
    write_run(tmp_path, "x", {}, {"symoe_gpqa": [1.0, 0.0]}, stamp="2026-11-25T10-00-00.000001", folder=folder)
    write_run(tmp_path, "y", {}, {"symoe_gpqa": [0.0, 0.0]}, stamp="2026-11-25T11-00-00.000001", folder=folder)
    with pytest.raises(SymoeError, match="holds 2 runs .*results_2026-11-25T10-00-00.000001.json.*--pick-a TEXT"):
        load_run(tmp_path / "out")
    done = run_cli(["symoe", "compare", str(tmp_path / "out"), str(tmp_path / "out"), "--pick-a", "T10"], cwd=tmp_path)
    assert done.returncode != 0 and "choose one with --pick-b TEXT" in done.stderr  # suggested --pick, no such flag
    assert load_run(tmp_path / "out", pick="T11-00").stamp == "2026-11-25T11-00-00.000001"


def test_compare_warns_when_the_runs_differ_in_what_their_texts_depend_on(tmp_path):
    """An ``hf`` run (no chat template unless asked) against ``symoe_expert`` (each expert's
    template), and two of ours at different torch threads: compare said nothing before."""
    from symoe_eval.runtime.context import CHAT_FORMATTING

    scores = {"symoe_gpqa": [1.0, 0.0, 1.0]}

    def ours(name, threads):
        out = write_run(tmp_path, name, {"expert": "qwen"}, scores, model="symoe_expert")
        setup = {"engine": "hf", "batch_size": 8, "threads": "default", "workers": 1, "chat_formatting": CHAT_FORMATTING,
                 "models": {"qwen": {"engine": "hf", "version": "transformers 5.1", "dtype": "bfloat16", "threads": threads}}}
        summary = run_summary(name, scores, method="symoe_expert", reproducibility=setup)
        (out.parent.parent / "routing_summary_symoe_expert_x.json").write_text(json.dumps(summary))
        return load_run(out)

    plain = load_run(write_run(tmp_path, "plain", {"pretrained": "Qwen/Qwen2.5"}, scores, model="hf"))
    a, b = ours("a", 2), ours("b", 1)
    assert compare_runs(a, b)["setup_differences"] == ["qwen threads: 2 vs 1"]
    report = compare_runs(a, plain)
    assert report["setup_differences"] == [f"chat_formatting: {CHAT_FORMATTING} vs none (the prompt as plain text)"]
    assert "setup differs: chat_formatting" in render(report, "table")
    assert compare_runs(a, ours("c", 2))["setup_differences"] == []


def test_a_sample_holding_unicode_line_separators_is_one_row(tmp_path):
    """GPQA questions hold U+2028, which lm-eval writes raw; only "\\n" ends a jsonlines row."""
    results = write_run(tmp_path, "r", {}, {"symoe_gpqa": [1.0, 0.0, 1.0]})
    (samples,) = results.parent.glob("samples_*.jsonl")
    rows = [json.loads(line) for line in samples.read_text().split("\n") if line]
    rows[1]["doc"] = {"Question": "Two lines\u2028of a question\x85 and a page\x0cbreak"}
    samples.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    run = load_run(results)
    assert run.tasks["symoe_gpqa"].scores == {0: 1.0, 1: 0.0, 2: 1.0}


def test_the_pareto_front_keeps_the_runs_no_other_beats():
    from symoe_eval.analysis.leaderboard import pareto_front

    points = [(100, 0.5), (200, 0.7), (150, 0.4), (300, 0.7), (50, 0.2), (200, 0.6)]
    assert pareto_front(points) == {0, 1, 4}  # (300, .7) costs more for the same; (150, .4), (200, .6) are beaten
    assert pareto_front([(1, 0.5), (1, 0.5)]) == {0, 1} and pareto_front([]) == set()


def test_the_report_plots_cost_against_accuracy_for_runs_with_a_summary(tmp_path):
    from symoe_eval.analysis.report import build_report

    folder = tmp_path / "out" / "model_dir"
    for i, (name, scores, tokens) in enumerate([("cheap", [1.0, 0.0, 0.0, 0.0], 100), ("dear", [1.0, 1.0, 1.0, 0.0], 900),
                                                ("waste", [1.0, 0.0, 0.0, 0.0], 800)]):
        tasks = {"symoe_demo": scores}
        write_run(tmp_path, name, {"k": i}, tasks, model="symoe", stamp=f"2026-12-07T10-0{i}-00.000001", folder=folder)
        summary = run_summary(name, tasks, method="symoe", total_loads=1, models={"a": {"calls": 4, "generated_tokens": tokens}})
        (folder.parent / f"routing_summary_symoe_x_2026-12-07T10-0{i}-00.000000.json").write_text(json.dumps(summary))
    write_run(tmp_path, "other", {"pretrained": "gpt2"}, {"symoe_demo": [1.0] * 4}, model="hf", stamp="2026-12-07T10-09-00.000001")
    html = build_report(tmp_path).read_text()
    assert html.count("accuracy against cost: generated tokens") == 1
    from symoe_eval.analysis.leaderboard import build_table, costed, pareto_front

    _, rows = build_table(find_runs(tmp_path), None)
    shown = costed(rows, "symoe_demo")  # the hf run has no run summary: no cost, left out
    front = pareto_front([(r["tokens"], r["cells"]["symoe_demo"][0]) for r in shown])
    assert sorted(r["run"] for r in shown) == sorted(r["run"] for r in rows if r["run"].startswith("symoe"))
    assert sorted(shown[i]["run"] for i in front) == sorted(r["run"] for r in shown if "k=1" in r["run"] or "k=0" in r["run"])


def test_a_folder_of_runs_reads_each_summary_once(tmp_path, monkeypatch):
    """Four runs in one --output_path folder: four summaries read, not 4 x 4 (each run used to
    read every summary of its folder)."""
    from symoe_eval.analysis import runs as runs_module

    folder = tmp_path / "out" / "model_dir"
    for i in range(4):
        scores = {"symoe_demo": [1.0, float(i % 2), 0.0, float(i > 1)]}
        write_run(tmp_path, f"r{i}", {"pool": "tiny-cpu"}, scores, model="symoe", stamp=f"2026-12-07T10-0{i}-30.000001",
                  folder=folder)
        (folder.parent / f"routing_summary_symoe_tiny-cpu_2026-12-07T10-0{i}-00.000001.json").write_text(
            json.dumps(run_summary(f"r{i}", scores, method="symoe", total_loads=i)))
    read = []
    real = runs_module.read_json
    monkeypatch.setattr(runs_module, "read_json", lambda path: (read.append(Path(path).name), real(path))[1])
    found = find_runs(tmp_path)
    assert sorted(r.summary["total_loads"] for r in found) == [0, 1, 2, 3]
    assert sum(name.startswith("routing_summary_") for name in read) == 4
