"""Expert profiles: per-keyword scores from validation answers, and the task's aggregator.

The builders are pure (they take keywords and correctness, not models); ``TaskProfile`` is what
``symoe profile`` writes and the ``symoe`` model reads, as JSON with its provenance.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import check_name

PROFILE_FILE = "profile.json"
REPORT_FILE = "report.md"
ANNOTATIONS_FILE = "annotations.jsonl"  # the validation records, one question a line


@dataclass
class ExpertProfile:
    """+1 per keyword of each validation question the expert got right, -1 per wrong one."""

    expert: str
    scores: dict[str, int]
    accuracy: float = 0.0

    @property
    def strength(self) -> int:
        return sum(self.scores.values())


@dataclass(frozen=True)
class ValidationRecord:
    """One validation question as the profile saw it: its keywords and, per expert, the share of
    its sampled answers that were right."""

    keywords: tuple[str, ...]
    right: dict[str, float]


@dataclass
class TaskProfile:
    task: str
    pool: str
    experts: dict[str, ExpertProfile]
    aggregator: str
    aggregator_scores: dict[str, float] = field(default_factory=dict)
    aggregator_choice: str = "synthetic aggregation set"
    keywords: list[str] = field(default_factory=list)  # the profile vocabulary
    # graded answers behind each keyword's score (the same for every expert: all answer every
    # question); profiles written before it have none, see ``answers_behind``
    keyword_counts: dict[str, int] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    # per-question records (``annotations.jsonl`` beside ``profile.json``, not in it); when there
    # are none, ``records_problem`` says why (only ``routing=records`` reads them)
    records: list[ValidationRecord] = field(default_factory=list)
    records_problem: str | None = None

    def answers_behind(self, keyword: str) -> int:
        """How many graded answers a keyword's scores sum: its count, or for an older profile the
        largest |score| any expert has on it (a lower bound)."""
        if keyword in self.keyword_counts:
            return self.keyword_counts[keyword]
        return max((abs(e.scores.get(keyword, 0)) for e in self.experts.values()), default=0)

    def to_json(self) -> dict:
        data = asdict(self)
        del data["records"], data["records_problem"]
        for name, profile in self.experts.items():
            data["experts"][name]["strength"] = profile.strength
        return data

    @classmethod
    def from_json(cls, data: dict) -> "TaskProfile":
        experts = {
            name: ExpertProfile(name, {k: int(v) for k, v in e["scores"].items()}, e.get("accuracy", 0.0))
            for name, e in data["experts"].items()
        }
        fields_ = {k: data[k] for k in ("task", "pool", "aggregator") }
        optional = ("aggregator_scores", "aggregator_choice", "keywords", "keyword_counts", "provenance")
        return cls(experts=experts, **fields_, **{k: data[k] for k in optional if k in data})


def build_expert_profiles(
    keywords: Sequence[Sequence[str]], correct: dict[str, Sequence[Sequence[bool]]]
) -> dict[str, ExpertProfile]:
    """``correct[expert][question]`` lists the correctness of each sampled answer (one by default)."""
    profiles = {}
    for expert, per_question in correct.items():
        scores: dict[str, int] = {}
        hits = total = 0
        for question_keywords, outcomes in zip(keywords, per_question):
            for ok in outcomes:
                hits += ok
                total += 1
                for keyword in question_keywords:
                    scores[keyword] = scores.get(keyword, 0) + (1 if ok else -1)
        profiles[expert] = ExpertProfile(expert, scores, hits / total if total else 0.0)
    return profiles


def count_keywords(keywords: Sequence[Sequence[str]], samples: int) -> dict[str, int]:
    """Graded answers per keyword, when every expert answers each question ``samples`` times."""
    counts: dict[str, int] = {}
    for question_keywords in keywords:
        for keyword in question_keywords:
            counts[keyword] = counts.get(keyword, 0) + samples
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class AggregationItem:
    """One synthetic aggregation question: shuffled chains, exactly one of them correct."""

    question_index: int
    responses: tuple[str, ...]
    correct_position: int


def build_aggregation_set(
    responses: Sequence[Sequence[tuple[str, bool]]], seed: int = 0, wrong: int = 2
) -> list[AggregationItem]:
    """For each question with at least one correct and ``wrong`` incorrect answers among all the
    experts' answers, draw one correct and ``wrong`` incorrect chains and shuffle them; questions
    without such answers are skipped."""
    rng = random.Random(seed)
    items = []
    for index, answers in enumerate(responses):
        right = [text for text, ok in answers if ok]
        bad = [text for text, ok in answers if not ok]
        if not right or len(bad) < wrong:
            continue
        chosen = [rng.choice(right), *rng.sample(bad, wrong)]
        order = list(range(len(chosen)))
        rng.shuffle(order)
        items.append(AggregationItem(index, tuple(chosen[i] for i in order), order.index(0)))
    return items


def choose_aggregator(scores: dict[str, float], profiles: dict[str, ExpertProfile]) -> str:
    """Best synthetic-set accuracy; ties go to the globally stronger expert, then the name."""
    return max(scores, key=lambda e: (scores[e], profiles[e].strength, e))


# ---------------------------------------------------------------- files


def profile_dir(root: Path, pool: str, task: str) -> Path:
    """``root/pool/task``; names that would leave ``root`` are refused."""
    return Path(root) / check_name(pool, "pool name", "profile") / check_name(task, "task name", "profile")


def save_profile(profile: TaskProfile, root: Path, report: str) -> Path:
    folder = profile_dir(root, profile.pool, profile.task)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PROFILE_FILE).write_text(json.dumps(profile.to_json(), indent=1, sort_keys=True))
    (folder / REPORT_FILE).write_text(report)
    return folder


def base_task(task: str) -> str:
    """``symoe_gpqa_val`` and ``symoe_gpqa_sc`` route with ``symoe_gpqa``'s profile."""
    for suffix in ("_val", "_sc"):
        if task.endswith(suffix):
            return task[: -len(suffix)]
    return task


def profile_path(root: Path, pool: str, task: str) -> Path | None:
    """The profile file ``task`` routes with (its own, else its base task's), if there is one."""
    for name in dict.fromkeys((task, base_task(task))):
        path = profile_dir(root, pool, name) / PROFILE_FILE
        if path.is_file():
            return path
    return None


def load_profile(root: Path, pool: str, task: str) -> TaskProfile:
    path = profile_path(root, pool, task)
    if path is not None:
        try:
            profile = TaskProfile.from_json(json.loads(path.read_text()))
        except KeyError as err:
            raise SymoeError(f"{path} is not a valid profile: field '{err.args[0]}' is missing; "
                             "rebuild it with symoe profile") from None
        except (ValueError, TypeError, AttributeError) as err:
            raise SymoeError(f"{path} is not a valid profile ({type(err).__name__}: {err}); rebuild it with symoe profile") from None
        try:
            profile.records = read_records(path.parent / ANNOTATIONS_FILE, profile.experts)
        except SymoeError as err:
            profile.records_problem = str(err)
        return profile
    raise SymoeError(
        f"no profile for task '{base_task(task)}' and pool '{pool}' under {root}; build it with: "
        f"symoe profile --pool {pool} --task {base_task(task)} --profiles {root}"
    )


def read_records(path: Path, experts) -> list[ValidationRecord]:
    """The validation records of ``annotations.jsonl`` (none when the file is absent), each expert's
    right answers as a share; experts the profile does not have are left out. Files written
    before the answers were graded in them (no ``right``) are refused like any bad line."""
    if not path.is_file():
        return []
    records = []
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            try:
                records.append(_record(json.loads(line), experts))
            except (ValueError, TypeError, KeyError, AttributeError) as err:
                raise SymoeError(f"{path} line {number} is not a validation record ({type(err).__name__}: {err}); "
                                 "rebuild it with symoe profile") from None
    return records


def _record(row: dict, experts) -> ValidationRecord:
    keywords, right = row["keywords"], row["right"]
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        raise TypeError("keywords must be a list of strings")
    shares = {}
    for name in experts:
        graded = right.get(name)
        if graded is not None and (not isinstance(graded, list) or not all(isinstance(g, bool) for g in graded)):
            raise TypeError(f"right[{name!r}] must be a list of true/false")
        if graded:
            shares[name] = sum(graded) / len(graded)
    return ValidationRecord(tuple(keywords), shares)


def pooled_profile(task: str, profiles: Sequence[TaskProfile]) -> TaskProfile:
    """One profile from other tasks' profiles of one pool, for ``task`` (skills transfer: an
    expert's algebra record from one task speaks for algebra elsewhere). Each expert's keyword
    scores and answer counts are summed, as if the validation sets were one; accuracy is weighted
    by each task's validation questions; the vocabulary is the union. The aggregator is the one
    most tasks chose, ties to the higher pooled strength, then the name."""
    experts: dict[str, ExpertProfile] = {}
    weights = [max(1, int(p.provenance.get("questions") or 1)) for p in profiles]
    for name in dict.fromkeys(n for p in profiles for n in p.experts):
        scores: dict[str, int] = {}
        for p in profiles:
            for keyword, score in p.experts.get(name, ExpertProfile(name, {})).scores.items():
                scores[keyword] = scores.get(keyword, 0) + score
        accuracy = sum(w * p.experts[name].accuracy for p, w in zip(profiles, weights) if name in p.experts)
        experts[name] = ExpertProfile(name, scores, accuracy / sum(w for p, w in zip(profiles, weights) if name in p.experts))
    votes = {a: sum(p.aggregator == a for p in profiles) for a in {p.aggregator for p in profiles}}
    aggregator = max(votes, key=lambda a: (votes[a], experts[a].strength if a in experts else 0, a))
    counts: dict[str, int] = {}
    for p in profiles:
        for keyword in p.keywords:
            counts[keyword] = counts.get(keyword, 0) + p.answers_behind(keyword)
    tasks = [p.task for p in profiles]
    return TaskProfile(task, profiles[0].pool, experts, aggregator,
                       aggregator_choice=f"chosen by {votes[aggregator]} of {len(profiles)} pooled tasks",
                       keywords=list(dict.fromkeys(k for p in profiles for k in p.keywords)), keyword_counts=counts,
                       provenance={"pooled_from": tasks}, **pooled_records(profiles))


def pooled_records(profiles: Sequence[TaskProfile]) -> dict:
    """Every profile's records, or none (with the reason) when one of them has none."""
    lacking = next((p for p in profiles if not p.records), None)
    if lacking is None:
        return {"records": [r for p in profiles for r in p.records]}
    return {"records": [], "records_problem": lacking.records_problem or f"the profile of {lacking.task} has no validation records"}


def profiled_tasks(root: Path, pool: str) -> list[str]:
    """The tasks that have a profile for ``pool`` under ``root``."""
    folder = Path(root) / check_name(pool, "pool name", "profile")
    return sorted(d.name for d in folder.iterdir() if (d / PROFILE_FILE).is_file()) if folder.is_dir() else []


def render_report(profile: TaskProfile) -> str:
    lines = [
        f"# Profile: {profile.task} on pool {profile.pool}",
        "",
        f"Built {profile.provenance.get('date', '?')} from {profile.provenance.get('questions', '?')} validation "
        f"questions (split hash {str(profile.provenance.get('split_hash', '?'))[:12]}, seed "
        f"{profile.provenance.get('seed', '?')}); keyword model {profile.provenance.get('keyword_model', '?')}.",
        "",
        "| expert | validation accuracy | strength | top keywords | weakest keywords | as aggregator |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, expert in sorted(profile.experts.items(), key=lambda kv: -kv[1].strength):
        ranked = sorted(expert.scores.items(), key=lambda kv: (-kv[1], kv[0]))
        top = ", ".join(f"{k} ({v:+d})" for k, v in ranked[:3])
        low = ", ".join(f"{k} ({v:+d})" for k, v in ranked[::-1][:3])
        agg = profile.aggregator_scores.get(name)
        lines.append(
            f"| {name} | {expert.accuracy:.1%} | {expert.strength:+d} | {top} | {low} | "
            f"{'' if agg is None else f'{agg:.1%}'} |"
        )
    lines += ["", f"Aggregator: **{profile.aggregator}** ({profile.aggregator_choice}).",
              f"Profile vocabulary: {len(profile.keywords)} keywords."]
    return "\n".join(lines) + "\n"
