"""Routing on a simulated pool whose experts have known skills: how close each router gets to an
oracle that recruits by the true skills.

What the simulator assumes (docs/method.md's "Routers" section says the same):
- ``SUBJECTS`` subjects, each named by ``VARIANTS`` keyword variants whose embeddings scatter
  around the subject's direction (so an unseen variant sometimes maps onto another subject);
  ``NOISE_WORDS`` generic keywords ("problem solving") that carry no skill.
- Experts: specialists (strong in 2 subjects, weak elsewhere), generalists (fair everywhere) and
  weak ones, each with per-subject jitter. A question needs 1-3 subjects; an expert answers it
  right with probability sigmoid(logit(mean skill over its subjects) + difficulty + familiarity):
  the difficulty is shared by all experts, the familiarity (sd 1) is the expert's own, so one
  expert's repeated samples agree more than two experts' answers do; samples are independent
  given that probability. The oracle ranks by the mean skill alone and takes the k best distinct.
- The keyword model names each needed subject with probability 0.8 (a random variant), adds
  Poisson(0.7) generic keywords and, with probability 0.1, a wrong subject; 8% of questions get
  no keyword at all. Keywords are then mapped by the router's own code (nearest embedding).
- Validation: every expert answers every validation question once; profiles are built by
  ``symoe_eval.symbolic.profiles`` from those answers, exactly as ``symoe profile`` does.
- Aggregation: 4-option questions; a wrong answer is one of the 3 wrong options at random; the
  final answer is the plurality of the k=3 answers, ties broken at random.

Every router sees the same pools, questions, keywords and answer draws (common random numbers);
the table reports test accuracy over replications with 95% t-intervals, the paired gain over the
paper's router and the share of the instance-to-oracle gap it closes (bootstrap interval).

Five rows cheat, as references: they are told the true subject behind every keyword or the true
skills, which no real router is. ``known subjects, true skills`` ranks by the true skills on the
named subjects (all subjects' mean when none is named). ``oracle's best expert, k times`` calls
the oracle's first pick in every slot: one strong expert's repeated samples can beat three
distinct good ones, so the oracle is not a bound either. The two ``known subjects`` estimates rank by
each expert's accuracy on the validation questions naming a subject, shrunk towards its overall
accuracy: by ``calibrated``'s pseudo-answers, or by James-Stein (per subject, the spread of the
experts' deviations against their binomial noise decides how far). Between them and the true skills
lies the cost of estimating skills from the validation answers; between them and ``calibrated``
the cost of mapping keywords through embeddings.

    python benchmarks/routing_sim.py [--replications 12] [--output results/benchmarks/routing_sim.md]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats

from symoe_eval.symbolic.profiles import TaskProfile, ValidationRecord, build_expert_profiles, count_keywords
from symoe_eval.symbolic.routing import ROUTERS, SHRINKAGE, QuestionRef, question_rng

SUBJECTS, VARIANTS, NOISE_WORDS, DIM = 10, 4, 12, 24
K, OPTIONS, TEST_QUESTIONS = 3, 4, 300
FAMILIARITY = 1.0  # sd of an expert's own per-question log-odds shift
ORACLE = "oracle (true skills)"
ORACLE_BEST = "oracle's best expert, k times"
KNOWN_TRUE = "known subjects, true skills"
KNOWN_PSEUDO, KNOWN_JAMES_STEIN = "known subjects, calibrated's shrinkage", "known subjects, James-Stein"
CHEATS = (KNOWN_PSEUDO, KNOWN_JAMES_STEIN, KNOWN_TRUE, ORACLE, ORACLE_BEST)


@dataclass(frozen=True)
class Shape:
    """A pool shape: how many experts of each kind, and how many validation questions."""

    name: str
    specialists: int
    generalists: int
    weak: int
    validation: int = 150


SHAPES = (
    Shape("mixed", 5, 6, 5),
    Shape("generalist-heavy", 2, 11, 3),
    Shape("many specialists", 12, 2, 2),
    Shape("few validation (40)", 5, 6, 5, validation=40),
)


@dataclass
class World:
    skills: np.ndarray  # experts x subjects, true accuracies
    names: list[str]
    vectors: dict[str, np.ndarray]  # keyword -> embedding
    subject_of: dict[str, int]  # subject keyword -> its subject (generic keywords have none)


def make_world(shape: Shape, rng: np.random.Generator) -> World:
    rows = []
    for _ in range(shape.specialists):
        row = rng.uniform(0.25, 0.45, SUBJECTS)
        row[rng.choice(SUBJECTS, 2, replace=False)] = rng.uniform(0.8, 0.95, 2)
        rows.append(row)
    rows += [np.clip(rng.uniform(0.55, 0.72) + rng.normal(0, 0.06, SUBJECTS), 0.3, 0.9) for _ in range(shape.generalists)]
    rows += [rng.uniform(0.25, 0.4, SUBJECTS) for _ in range(shape.weak)]
    centres = rng.normal(size=(SUBJECTS, DIM))
    vectors = {f"subject{s}-v{v}": centres[s] + rng.normal(0, 0.8, DIM) for s in range(SUBJECTS) for v in range(VARIANTS)}
    vectors.update({f"generic{g}": rng.normal(size=DIM) for g in range(NOISE_WORDS)})
    subject_of = {f"subject{s}-v{v}": s for s in range(SUBJECTS) for v in range(VARIANTS)}
    return World(np.array(rows), [f"e{i:02d}" for i in range(len(rows))], vectors, subject_of)


@dataclass
class SimQuestion:
    subjects: list[int]
    keywords: list[str]
    difficulty: float
    familiarity: np.ndarray  # per expert


def make_question(rng: np.random.Generator, experts: int, among: Sequence[int] | None = None) -> SimQuestion:
    """A question needing 1-3 subjects (of ``among``, default all) and its keywords."""
    pool = np.arange(SUBJECTS) if among is None else np.asarray(among)
    subjects = list(rng.choice(pool, rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]), replace=False))
    if rng.random() < 0.08:
        return SimQuestion(subjects, [], rng.normal(0, 0.5), rng.normal(0, FAMILIARITY, experts))
    named = [s for s in subjects if rng.random() < 0.8] + ([int(rng.integers(SUBJECTS))] if rng.random() < 0.1 else [])
    words = [f"subject{s}-v{rng.integers(VARIANTS)}" for s in named]
    words += [f"generic{rng.integers(NOISE_WORDS)}" for _ in range(rng.poisson(0.7))]
    return SimQuestion(subjects, list(dict.fromkeys(words)), rng.normal(0, 0.5), rng.normal(0, FAMILIARITY, experts))


def skill_on(world: World, q: SimQuestion) -> np.ndarray:
    """Each expert's true accuracy on the question's subjects (what the oracle ranks by)."""
    return world.skills[:, q.subjects].mean(axis=1)


def right_probability(world: World, q: SimQuestion) -> np.ndarray:
    """Skill moved by the question's difficulty (shared) and how well each expert happens to know
    this question (its own), so one expert's repeated samples agree more than two experts' do."""
    mean = skill_on(world, q)
    return 1 / (1 + np.exp(-(np.log(mean / (1 - mean)) + q.difficulty + q.familiarity)))


def answer_validation(world: World, shape: Shape, rng: np.random.Generator,
                      among: Sequence[int] | None = None) -> tuple[list[SimQuestion], np.ndarray]:
    """The validation questions (of subjects ``among``) and whether each expert (column) answered each one right."""
    questions = [make_question(rng, len(world.names), among) for _ in range(shape.validation)]
    right = np.zeros((len(questions), len(world.names)), dtype=bool)
    for qi, q in enumerate(questions):
        p = right_probability(world, q)
        for i in range(len(world.names)):
            right[qi, i] = rng.random() < p[i]
    return questions, right


def build_profile(world: World, shape: Shape, questions: list[SimQuestion], right: np.ndarray) -> TaskProfile:
    keywords = [q.keywords for q in questions]
    experts = build_expert_profiles(keywords, {name: [[bool(ok)] for ok in right[:, i]] for i, name in enumerate(world.names)})
    records = [ValidationRecord(tuple(q.keywords), {name: float(right[qi, i]) for i, name in enumerate(world.names)})
               for qi, q in enumerate(questions)]
    return TaskProfile("sim", shape.name, experts, aggregator=world.names[0], keyword_counts=count_keywords(keywords, 1),
                       keywords=sorted({k for kws in keywords for k in kws}), records=records)


def named_subjects(world: World, q: SimQuestion) -> list[int]:
    return sorted({world.subject_of[w] for w in q.keywords if w in world.subject_of})


def subject_answers(world: World, questions: list[SimQuestion], right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right answers (experts x subjects) and answers (per subject) on the validation questions
    whose keywords name each subject."""
    hits, answers = np.zeros((len(world.names), SUBJECTS)), np.zeros(SUBJECTS)
    for q, row in zip(questions, right):
        for s in named_subjects(world, q):
            hits[:, s] += row
            answers[s] += 1
    return hits, answers


def pseudo_answer_skills(hits: np.ndarray, answers: np.ndarray, overall: np.ndarray) -> np.ndarray:
    """``calibrated``'s shrinkage: SHRINKAGE answers at the overall accuracy added to each subject's."""
    return (hits + SHRINKAGE * overall[:, None]) / (answers + SHRINKAGE)


def james_stein_skills(hits: np.ndarray, answers: np.ndarray, overall: np.ndarray) -> np.ndarray:
    """Each subject's deviations from the overall accuracy, kept in the share tau2 / (tau2 + noise),
    where tau2 is their spread across experts beyond the binomial noise."""
    deviation = hits / np.maximum(answers, 1) - overall[:, None]
    noise = (overall * (1 - overall))[:, None] / np.maximum(answers, 1)
    tau2 = np.maximum(deviation.var(axis=0, ddof=1) - noise.mean(axis=0), 0)
    return overall[:, None] + deviation * tau2 / np.maximum(tau2 + noise, 1e-12)


def ranked_teams(world: World, tests: list[SimQuestion], score) -> list[list[str]]:
    """The k best distinct experts of each question by ``score(question)``, one value per expert."""
    return [[world.names[i] for i in np.argsort(-score(q), kind="stable")[:K]] for q in tests]


def cheat_teams(world: World, tests: list[SimQuestion], questions: list[SimQuestion], right: np.ndarray) -> dict[str, list[list[str]]]:
    """Teams of the rows that know what no router knows (the module docstring says why they are here)."""
    overall, (hits, answers) = right.mean(axis=0), subject_answers(world, questions, right)

    def on_named(table: np.ndarray, default: np.ndarray):
        return lambda q: table[:, named_subjects(world, q)].mean(axis=1) if named_subjects(world, q) else default

    return {KNOWN_PSEUDO: ranked_teams(world, tests, on_named(pseudo_answer_skills(hits, answers, overall), overall)),
            KNOWN_JAMES_STEIN: ranked_teams(world, tests, on_named(james_stein_skills(hits, answers, overall), overall)),
            KNOWN_TRUE: ranked_teams(world, tests, on_named(world.skills, world.skills.mean(axis=1))),
            ORACLE: ranked_teams(world, tests, lambda q: skill_on(world, q)),
            ORACLE_BEST: [[world.names[int(np.argmax(skill_on(world, q)))]] * K for q in tests]}


def plurality_right(rights: list[bool], rng: random.Random) -> bool:
    """The aggregation model: plurality of the answers, wrong ones spread over the wrong options."""
    votes = [0 if ok else rng.randrange(1, OPTIONS) for ok in rights]
    counts = {a: votes.count(a) for a in set(votes)}
    top = max(counts.values())
    return rng.choice(sorted(a for a, c in counts.items() if c == top)) == 0


def team_accuracy(world: World, tests: list[SimQuestion], draws: np.ndarray, teams: list[list[str]], seed: int) -> float:
    """Accuracy of given teams; ``draws[q, e, j]`` is the j-th sample of expert e on question q."""
    index = {n: i for i, n in enumerate(world.names)}
    rng, hits = random.Random(seed), 0
    for qi, (q, team) in enumerate(zip(tests, teams)):
        p, seen = right_probability(world, q), {}
        rights = []
        for name in team:
            j = seen[name] = seen.get(name, -1) + 1
            rights.append(bool(draws[qi, index[name], j] < p[index[name]]))
        hits += plurality_right(rights, rng)
    return hits / len(tests)


def embedder(world: World):
    return lambda texts: np.stack([world.vectors[t] for t in texts])


def replicate(shape: Shape, seed: int, routers: list[str]) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    world = make_world(shape, rng)
    questions, right = answer_validation(world, shape, rng)
    profile = build_profile(world, shape, questions, right)
    tests = [make_question(rng, len(world.names)) for _ in range(TEST_QUESTIONS)]
    draws = rng.random((len(tests), len(world.names), K))
    scores = {}
    for name in routers:
        router = ROUTERS[name](K, embed=embedder(world))
        teams = [router.route(profile, QuestionRef("sim", i), q.keywords, question_rng(seed, "sim", i)).experts
                 for i, q in enumerate(tests)]
        scores[name] = team_accuracy(world, tests, draws, teams, seed)
    for name, teams in cheat_teams(world, tests, questions, right).items():
        scores[name] = team_accuracy(world, tests, draws, teams, seed)
    return scores


def interval(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval."""
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(half)


def gap_closed(router: np.ndarray, base: np.ndarray, oracle: np.ndarray, seed: int) -> tuple[float, float, float]:
    """Share of the base-to-oracle gap a router closes (ratio of means), with a bootstrap 95% interval."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(base), size=(2000, len(base)))
    ratios = (router[picks].mean(1) - base[picks].mean(1)) / (oracle[picks].mean(1) - base[picks].mean(1))
    point = (router.mean() - base.mean()) / (oracle.mean() - base.mean())
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(point), float(low), float(high)


def shape_table(shape: Shape, results: list[dict[str, float]], routers: list[str]) -> list[str]:
    column = {name: np.array([r[name] for r in results]) for name in [*routers, *CHEATS]}
    base, oracle = column["instance"], column[ORACLE]
    lines = [f"### {shape.name}: {shape.specialists} specialists, {shape.generalists} generalists, {shape.weak} weak; "
             f"{shape.validation} validation questions", "",
             "| router | accuracy | vs instance (paired) | vs task (paired) | gap to oracle closed |",
             "| --- | --- | --- | --- | --- |"]

    def paired(name: str, other: str) -> str:
        return "" if name == other else "{:+.3f} ± {:.3f}".format(*interval(column[name] - column[other]))

    for name in [*routers, *CHEATS]:
        mean, half = interval(column[name])
        closed = "" if name in ("instance", ORACLE) else "{:.0%} [{:.0%}, {:.0%}]".format(*gap_closed(column[name], base, oracle, 0))
        lines.append(f"| {name} | {mean:.3f} ± {half:.3f} | {paired(name, 'instance')} | {paired(name, 'task')} | {closed} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=12)
    parser.add_argument("--output", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    routers = ["instance", "task", "random", *sorted(set(ROUTERS) - {"instance", "task", "random"})]
    start = time.perf_counter()
    lines = [f"Simulated routing: k={K}, {TEST_QUESTIONS} test questions, {args.replications} replications per "
             "shape, plurality of the k answers; accuracy ± 95% t-interval; gap closed = (router - instance) / "
             "(oracle - instance) with a bootstrap 95% interval. The last five rows are told what no router knows "
             "(the true subject behind each keyword, or the true skills): references, not routers and not bounds.", ""]
    for shape in SHAPES:
        results = [replicate(shape, 1000 * n + 17, routers) for n in range(args.replications)]
        lines += shape_table(shape, results, routers)
    lines.append(f"({time.perf_counter() - start:.1f} s)")
    print_and_save("\n".join(lines), args.output)


def print_and_save(text: str, output: Path | None) -> None:
    """Print the table, and write it to ``output`` when given."""
    print(text)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")


if __name__ == "__main__":
    main()
