"""Reading lm-eval's own outputs (``--output_path ... --log_samples``), for any lm-eval model.

A run is one ``results_<stamp>.json`` with its ``samples_<task>_<stamp>.jsonl`` files beside it,
plus, for our models, the run summary our run log wrote next to lm-eval's outputs (cost).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from symoe_eval.errors import SymoeError
from symoe_eval.runoutput import SETUP, SUMMARY, answers_digest

log = logging.getLogger(__name__)

PATH_ARGS = ("profiles", "cache_dir", "log_dir", "pretrained", "gguf_file")
SAFE_TASK = re.compile(r"\w[\w.+-]*")  # a task name that stays a file name inside the run folder
SAFE_LOG_NAME = re.compile(r"routing_[\w.+-]+\.jsonl")
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d(\.\d+)?(?=\.json$)")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def scrub(value):
    """``value`` with lone surrogates (valid JSON, ``"\\ud800"``, but no text) as U+FFFD."""
    if isinstance(value, str):
        return LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    return value


def read_json(path: Path):
    """A JSON file's value, lone surrogates scrubbed; ValueError when it is not JSON in UTF-8."""
    return scrub(json.loads(path.read_bytes().decode("utf-8")))


@dataclass
class TaskSamples:
    metric: str = ""
    filter: str = ""
    available: list[str] = field(default_factory=list)  # every "metric,filter" the results report
    scores: dict[int, float] = field(default_factory=dict)
    doc_hash: dict[int, str] = field(default_factory=dict)
    prompt_hash: dict[int, str] = field(default_factory=dict)
    texts: dict[int, list[str]] = field(default_factory=dict)  # what the model returned per doc
    docs: dict[int, dict] = field(default_factory=dict)  # the document lm-eval logged (question, gold, ...)
    answers: dict[int, str] = field(default_factory=dict)  # what the scoring filter read in the texts
    targets: dict[int, str] = field(default_factory=dict)  # the gold answer lm-eval scored against

    @property
    def scored_by(self) -> str:
        return f"{self.metric},{self.filter}"


def metric_filters(task_results: dict) -> list[tuple[str, str]]:
    """The (metric, filter) pairs of one task's results, in lm-eval's order
    (keys such as ``exact_match,custom-extract``; stderr entries are not metrics)."""
    pairs = []
    for key in task_results:
        metric, sep, filter_name = key.partition(",")
        if sep and not metric.endswith("_stderr"):
            pairs.append((metric, filter_name))
    return pairs


def choose_scoring(pairs: list[tuple[str, str]], metric: str | None, filter_name: str | None) -> tuple[str, str] | None:
    """The task's own scoring unless told: the asked-for metric/filter, else ``exact_match``
    (else the first metric) under the task's first filter; None when nothing matches."""
    fits = [(m, f) for m, f in pairs if (metric is None or m == metric) and (filter_name is None or f == filter_name)]
    if metric is None:
        fits = [p for p in fits if p[0] == "exact_match"] or fits
    return fits[0] if fits else None


@dataclass
class Run:
    results_path: Path
    model: str
    model_args: dict
    results: dict
    tasks: dict[str, TaskSamples]
    summary: dict | None = None  # our run summary (loads, calls, tokens, stage times), if any
    summary_path: Path | None = None

    @property
    def routing_log(self) -> Path | None:
        """Our routing log: the file the summary names, read only beside the summary itself (a
        summary cannot point a reader at a file outside the run's folder)."""
        named = (self.summary or {}).get(SUMMARY.routing_log)
        if not isinstance(named, str) or self.summary_path is None:
            return None
        name = Path(named.replace("\\", "/")).name
        path = self.summary_path.parent / name
        return path if SAFE_LOG_NAME.fullmatch(name) and path.is_file() else None

    @property
    def stamp(self) -> str:
        return self.results_path.stem.removeprefix("results_")

    @property
    def label(self) -> str:
        args = self.model_args if isinstance(self.model_args, dict) else {"args": self.model_args}
        shown = ",".join(f"{k}={v}" for k, v in args.items() if k not in PATH_ARGS)
        if "pretrained" in args and isinstance(args["pretrained"], str):
            shown = ",".join(filter(None, [Path(args["pretrained"]).name, shown]))
        return f"{self.model}({shown})" if shown else self.model

    @property
    def setup(self) -> dict:
        """What its texts depend on besides requests and seed: our summary's record, else what
        lm-eval's results say (an ``hf`` run formats prompts by a chat template only when asked)."""
        if self.summary and SUMMARY.reproducibility in self.summary:
            return self.summary[SUMMARY.reproducibility]
        sha = self.results.get("chat_template_sha")
        return {SETUP.chat_formatting: f"chat template {sha[:12]}" if sha else "none (the prompt as plain text)"}

    @property
    def wall_seconds(self) -> float | None:
        value = self.results.get("total_evaluation_time_seconds")
        return float(value) if value is not None else None


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a jsonlines file; a torn last line (a killed run) is skipped with a warning, any
    other unreadable line (not UTF-8, not JSON, not an object) is one error naming the file and the
    line. Rows end at "\n" alone: lm-eval writes U+2028 and other line separators raw inside
    strings (GPQA has them)."""
    lines = path.read_bytes().rstrip(b"\n").split(b"\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError) as err:
            if number == len(lines):
                log.warning("%s: skipped its torn last line %d (a killed run?)", path, number)
                continue
            why = "not UTF-8" if isinstance(err, UnicodeDecodeError) else f"not JSON ({getattr(err, 'msg', type(err).__name__)})"
            raise SymoeError(f"{path}: line {number} is {why}; the file is damaged") from None
        if not isinstance(row, dict):
            raise SymoeError(f"{path}: line {number} is a JSON {type(row).__name__}, not an object; the file is damaged")
        rows.append(scrub(row) if b"\\u" in line else row)  # only an escape can make a lone surrogate
    return rows


def _first_of(value):
    """lm-eval logs one value per request, as a list (nested for multi-sample requests)."""
    while isinstance(value, list):
        value = value[0] if value else ""
    return "" if value is None else value


def _read_samples(path: Path, metric: str, filter_name: str, available: list[str]) -> TaskSamples:
    out, skipped = TaskSamples(metric, filter_name, available), 0
    for row in read_jsonl(path):
        try:
            _read_row(out, row, metric, filter_name)
        except (KeyError, ValueError, TypeError):
            skipped += 1
    if skipped:
        log.warning("%s: skipped %d row(s) without a readable doc_id or score", path, skipped)
    return out


def _read_row(out: TaskSamples, row: dict, metric: str, filter_name: str) -> None:
    doc = int(row["doc_id"])
    resps = row.get("resps", [])
    texts = [str(t) for resp in (resps if isinstance(resps, list) else [resps]) for t in (resp if isinstance(resp, list) else [resp])]
    if row.get("filter", filter_name) != filter_name or metric not in row:
        out.texts.setdefault(doc, texts)
        return
    score = float(row[metric])
    out.texts.setdefault(doc, texts)
    out.scores[doc] = score
    out.docs[doc] = row.get("doc") if isinstance(row.get("doc"), dict) else {}
    out.answers[doc] = str(_first_of(row.get("filtered_resps")))
    out.targets[doc] = str(_first_of(row.get("target")))
    out.doc_hash[doc] = str(row.get("doc_hash", ""))
    out.prompt_hash[doc] = str(row.get("prompt_hash", ""))


def run_digest(tasks: dict[str, TaskSamples]) -> str:
    return answers_digest((task, doc, text) for task, s in tasks.items() for doc, texts in s.texts.items() for text in texts)


def _summary_for(results_path: Path, model: str, digest: str,
                 summaries: Callable[[Path], list[tuple[Path, dict]]]) -> tuple[dict | None, Path | None]:
    """Our run summary of this run and its path, in the results folder or the --output_path
    folder above it: one whose ``answers_digest`` matches the texts in the run's samples. Runs
    that gave the same texts (a run and its rerun from the cache) are told apart by time: the
    last summary written before the results file (our summary is written during the run).
    ``summaries(folder)``: the folder's summaries (``find_runs`` reads each folder once)."""
    for folder in (results_path.parent, results_path.parent.parent):
        found = [(path, summary) for path, summary in summaries(folder)
                 if summary.get(SUMMARY.method) == model and summary.get(SUMMARY.answers_digest) == digest]
        if found:
            finished = _stamp(results_path)
            before = [f for f in found if _stamp(f[0]) <= finished] or found[:1]
            path, summary = max(before, key=lambda f: _stamp(f[0]))
            return summary, path
    return None, None


def _summaries(folder: Path) -> list[tuple[Path, dict]]:
    """The run summaries in ``folder`` with their paths; one that is not a JSON object is skipped."""
    found = []
    for path in sorted(folder.glob("routing_summary_*.json")):
        try:
            summary = read_json(path)
        except ValueError:
            log.warning("%s: not JSON in UTF-8; ignored", path)
            continue
        if isinstance(summary, dict):
            found.append((path, summary))
    return found


def _stamp(path: Path) -> str:
    """The time in an lm-eval results file's or our summary's name (``2026-12-07T12-00-00.123456``;
    both sort as text), else empty."""
    found = STAMP.search(path.name)
    return found.group(0) if found else ""


def _read_tasks(path: Path, task_results: dict, metric: str | None, filter_name: str | None) -> dict[str, TaskSamples]:
    """Each task's samples beside the results file ``path``, scored as ``choose_scoring`` says."""
    stamp = path.stem.removeprefix("results_")
    tasks = {}
    for task, found in task_results.items():
        if not SAFE_TASK.fullmatch(task) or not isinstance(found, dict):
            log.warning("%s: task %r skipped (not a plain task name with its results)", path, task[:80])
            continue
        samples = path.parent / f"samples_{task}_{stamp}.jsonl"
        if not samples.is_file():
            continue  # a group's aggregate, or a run without --log_samples
        pairs = metric_filters(found)
        available = [f"{m},{f}" for m, f in pairs]
        chosen = choose_scoring(pairs, metric, filter_name)
        if chosen is None:
            tasks[task] = TaskSamples(metric or "exact_match", filter_name or "?", available)
        else:
            tasks[task] = _read_samples(samples, *chosen, available)
    return tasks


def load_run(path: str | Path, metric: str | None = None, filter_name: str | None = None,
             pick: str | None = None, pick_flag: str = "--pick-a",
             summaries: Callable[[Path], list[tuple[Path, dict]]] = _summaries) -> Run:
    """A results file, or a folder holding one lm-eval run; a folder of several needs ``pick`` (a
    substring of one results file's path, e.g. its timestamp; the CLI's ``pick_flag``) and
    otherwise lists them.
    Each task is scored by its own metric and filter unless ``metric`` / ``filter_name`` say."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.rglob("results_*.json") if not pick or pick in str(p))
        if not found:
            raise SymoeError(f"no lm-eval results_*.json under {path}{f' matching {pick!r}' if pick else ''}; "
                             f"run lm_eval with --output_path {path}")
        if len(found) > 1:
            listed = "; ".join(str(p.relative_to(path)) for p in found)
            raise SymoeError(f"{path} holds {len(found)} runs ({listed}); choose one with {pick_flag} TEXT or give its results file")
        path = found[0]
    if not path.is_file():
        raise SymoeError(f"{path} does not exist")
    try:
        results = read_json(path)
    except ValueError as err:
        where = f" at line {err.lineno}" if isinstance(err, json.JSONDecodeError) else ""
        raise SymoeError(f"{path} is not JSON in UTF-8{where}; the run did not finish writing it") from None
    if not isinstance(results, dict) or not isinstance(results.get("results", {}), dict):
        raise SymoeError(f"{path} is not an lm-eval results file (no 'results' mapping)")
    tasks = _read_tasks(path, results.get("results", {}), metric, filter_name)
    config = results.get("config") if isinstance(results.get("config"), dict) else {}
    model = str(config.get("model", "?"))
    args = config.get("model_args") or {}
    summary, summary_path = _summary_for(path, model, run_digest(tasks), summaries) if tasks else (None, None)
    return Run(path, model, args, results, tasks, summary, summary_path)


def find_runs(root: str | Path, metric: str | None = None, filter_name: str | None = None) -> list[Run]:
    summaries = functools.cache(_summaries)  # each folder's summaries read once, whatever the number of runs
    runs = [load_run(p, metric, filter_name, summaries=summaries) for p in sorted(Path(root).rglob("results_*.json"))]
    return [r for r in runs if r.tasks]
