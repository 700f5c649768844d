"""Routing: map a question's keywords onto a profile's vocabulary and recruit k experts.

Everything here is a pure function of its inputs (plus a seeded ``random.Random``); the
embedding function routers get is the run's (``engines.embedding.Embedder``).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from symoe_eval.errors import SymoeError
from symoe_eval.symbolic.profiles import ANNOTATIONS_FILE, TaskProfile
from symoe_eval.registry import Registry

STRENGTH_TEMPERATURE = 0.5


@dataclass
class Route:
    """Who answers one question, and why."""

    task: str
    doc_id: int
    keywords: list[str]
    mapped: list[str]
    experts: list[str]
    fallback: str | None = None  # why the keyword-based route was not used
    weights: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- keyword mapping


def cosine(query: np.ndarray, vocab: np.ndarray) -> np.ndarray:
    q = query / np.clip(np.linalg.norm(query, axis=1, keepdims=True), 1e-12, None)
    v = vocab / np.clip(np.linalg.norm(vocab, axis=1, keepdims=True), 1e-12, None)
    return q @ v.T


def nearest(query: np.ndarray, vocab: np.ndarray) -> list[int]:
    """Index of the most cosine-similar vocabulary row for each query row."""
    return list(np.argmax(cosine(query, vocab), axis=1))


def map_keywords(
    keywords: Sequence[str], vocab: Sequence[str], embed: Callable[[list[str]], np.ndarray]
) -> list[str]:
    """Each keyword onto its nearest profile keyword (itself when it is in the vocabulary)."""
    if not keywords or not vocab:
        return []
    known = set(vocab)
    unknown = [k for k in keywords if k not in known]
    mapped = {k: k for k in keywords if k in known}
    if unknown:
        picks = nearest(embed(unknown), embed(list(vocab)))
        mapped.update({k: vocab[i] for k, i in zip(unknown, picks)})
    return list(dict.fromkeys(mapped[k] for k in keywords))


# ---------------------------------------------------------------- recruitment


def normalized_strengths(strengths: dict[str, float], temperature: float = STRENGTH_TEMPERATURE) -> dict[str, float]:
    """Global strengths shifted to be positive (when any is negative), raised to 1/T, normalized."""
    names = sorted(strengths)
    low = min(strengths[n] for n in names)
    shifted = [strengths[n] - low + 1 if low < 0 else strengths[n] for n in names]
    scaled = [max(s, 0.0) ** (1 / temperature) for s in shifted]
    total = sum(scaled)
    if total == 0:
        return {n: 1 / len(names) for n in names}
    return {n: s / total for n, s in zip(names, scaled)}


def keyword_sums(profile: TaskProfile, keywords: Sequence[str]) -> dict[str, int]:
    """Each expert's summed score over the keywords its profile has seen."""
    sums: dict[str, int] = {}
    for keyword in keywords:
        for name, expert in profile.experts.items():
            if keyword in expert.scores:
                sums[name] = sums.get(name, 0) + expert.scores[keyword]
    return sums


def recruitment_weights(sums: dict[str, int], strengths: dict[str, float]) -> dict[str, float]:
    """Experts with a positive sum (or, if none, every sum shifted positive) weighted by
    sum x normalized strength, as probabilities."""
    if not sums:
        return {}
    positive = {e: s for e, s in sums.items() if s > 0}
    if not positive:
        low = min(sums.values())
        positive = {e: s - low + 1 for e, s in sums.items()}
    raw = {e: s * strengths.get(e, 0.0) for e, s in positive.items()}
    total = sum(raw.values())
    if total == 0:  # every candidate has zero strength: fall back to their sums alone
        raw, total = dict(positive), sum(positive.values())
    return {e: w / total for e, w in sorted(raw.items())}


def strongest(profile: TaskProfile, k: int) -> list[str]:
    return best_distinct({name: expert.strength for name, expert in profile.experts.items()}, k)


class Router(ABC):
    """How one question recruits its ``k`` experts. A new routing method is one subclass
    registered with :func:`register_router`; ``routing=NAME`` in model_args selects it."""

    name = "abstract"
    needs_keywords = False  # the symoe model runs the keyword stage only for routers that read it

    def __init__(self, k: int, embed: Callable[[list[str]], np.ndarray] | None = None):
        self.k = k
        self.embed = embed  # sentence embeddings, for routers that map keywords onto a profile

    @abstractmethod
    def route(self, profile: TaskProfile, question: QuestionRef, keywords: list[str], rng: random.Random) -> Route: ...


@dataclass(frozen=True)
class QuestionRef:
    task: str
    doc_id: int


class InstanceRouter(Router):
    """Symbolic-MoE: keywords mapped onto the profile, experts with a positive keyword sum
    weighted by sum x normalized strength, ``k`` sampled with replacement."""

    name = "instance"
    needs_keywords = True

    def route(self, profile, question, keywords, rng):
        mapped = map_keywords(keywords, profile.keywords, self.embed) if keywords else []
        weights = recruitment_weights(keyword_sums(profile, mapped), normalized_strengths(
            {n: e.strength for n, e in profile.experts.items()}))
        if not weights:
            return Route(question.task, question.doc_id, keywords, mapped, strongest(profile, self.k),
                         fallback="no usable keyword")
        names = list(weights)
        experts = rng.choices(names, weights=[weights[n] for n in names], k=self.k)
        return Route(question.task, question.doc_id, keywords, mapped, experts, weights=weights)


class TaskRouter(Router):
    """The task's ``k`` strongest experts for every question (the paper's task-level ablation)."""

    name = "task"

    def route(self, profile, question, keywords, rng):
        return Route(question.task, question.doc_id, keywords, [], strongest(profile, self.k))


class RandomRouter(Router):
    """``k`` experts drawn uniformly (the paper's random ablation)."""

    name = "random"

    def route(self, profile, question, keywords, rng):
        return Route(question.task, question.doc_id, keywords, [], rng.choices(sorted(profile.experts), k=self.k))


# Pseudo-answers at the expert's own validation accuracy behind every per-keyword estimate: a
# keyword seen twice moves an expert little, one seen forty times moves it almost to its rate.
SHRINKAGE = 4.0
# Evidence is pooled over the profile keywords near a question keyword: weight exp((cos - best) / T),
# none below NEIGHBOUR_FLOOR (so "organic chemistry" also reads the answers behind "chemistry").
SIMILARITY_TEMPERATURE = 0.3
NEIGHBOUR_FLOOR = 0.05


def keyword_similarity(keywords: Sequence[str], vocab: Sequence[str], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """Cosine of each keyword (row) with each profile keyword; a keyword in the vocabulary is
    its own vector, as in :func:`map_keywords`."""
    vectors = embed(list(vocab))
    position = {w: i for i, w in enumerate(vocab)}
    unknown = [k for k in keywords if k not in position]
    fresh = dict(zip(unknown, embed(unknown))) if unknown else {}
    rows = [vectors[position[k]] if k in position else fresh[k] for k in keywords]
    return cosine(np.stack(rows), vectors)


def neighbour_weights(similarity: np.ndarray, temperature: float = SIMILARITY_TEMPERATURE) -> np.ndarray:
    """Per question keyword (row), how much each profile keyword's answers count: 1 for the nearest."""
    weights = np.exp((similarity - similarity.max(axis=1, keepdims=True)) / temperature)
    return np.where(weights < NEIGHBOUR_FLOOR, 0.0, weights)


def skill_estimates(profile: TaskProfile, weights: np.ndarray, shrinkage: float = SHRINKAGE) -> dict[str, float]:
    """Each expert's estimated accuracy on a question: per question keyword, its hits and answers on
    the weighted profile keywords, shrunk towards its overall accuracy; averaged over the keywords."""
    answers = np.array([profile.answers_behind(w) for w in profile.keywords], dtype=float)
    estimates = {}
    for name, expert in sorted(profile.experts.items()):
        hits = (answers + np.array([expert.scores.get(w, 0) for w in profile.keywords])) / 2
        shrunk = (weights @ hits + shrinkage * expert.accuracy) / (weights @ answers + shrinkage)
        estimates[name] = float(shrunk.mean())
    return estimates


def majority_right(accuracies: Sequence[float]) -> float:
    """Chance that more than half of independent answers with these accuracies are right."""
    counts = np.zeros(len(accuracies) + 1)
    counts[0] = 1.0
    for p in accuracies:
        counts[1:] = counts[1:] * (1 - p) + counts[:-1] * p
        counts[0] *= 1 - p
    return float(counts[len(accuracies) // 2 + 1:].sum())


def team_by_majority(estimates: dict[str, float], k: int) -> list[str]:
    """The ``k`` best distinct experts, or the best one in every slot (its answers are separate
    samples) when its estimate is at least their majority's chance of being right."""
    team = best_distinct(estimates, k)
    if estimates[team[0]] >= majority_right([estimates[e] for e in team]):
        return [team[0]] * k
    return team


def best_distinct(estimates: dict[str, float], k: int) -> list[str]:
    """The ``k`` best experts, each once; a pool smaller than ``k`` is cycled, best first."""
    ranked = sorted(estimates, key=lambda e: (-estimates[e], e))
    return [ranked[i % len(ranked)] for i in range(k)]


class EstimatingRouter(Router):
    """A router that estimates each expert's accuracy on the question from the keywords'
    similarity to the profile's, and recruits a team by the estimates (no keyword: by overall
    accuracy)."""

    needs_keywords = True

    @abstractmethod
    def estimate(self, profile: TaskProfile, keywords: list[str], similarity: np.ndarray) -> dict[str, float]: ...

    @abstractmethod
    def team(self, estimates: dict[str, float]) -> list[str]: ...

    def route(self, profile, question, keywords, rng):
        if not keywords or not profile.keywords:
            overall = {n: e.accuracy for n, e in profile.experts.items()}
            return Route(question.task, question.doc_id, keywords, [], self.team(overall),
                         fallback="no usable keyword", weights=overall)
        similarity = keyword_similarity(keywords, profile.keywords, self.embed)
        mapped = list(dict.fromkeys(profile.keywords[i] for i in similarity.argmax(axis=1)))
        estimates = self.estimate(profile, keywords, similarity)
        return Route(question.task, question.doc_id, keywords, mapped, self.team(estimates), weights=estimates)


class CalibratedRouter(EstimatingRouter):
    """Beyond the paper: per-keyword accuracies pooled over similar profile keywords and shrunk
    towards each expert's overall accuracy, and the ``k`` best *distinct* experts (docs/method.md: Routers)."""

    name = "calibrated"

    def estimate(self, profile, keywords, similarity):
        return skill_estimates(profile, neighbour_weights(similarity))

    def team(self, estimates):
        return best_distinct(estimates, self.k)


# A validation question counts exp((similarity - best) / T) against the question's most similar
# one, and ``prior`` pseudo-answers at the expert's overall accuracy stand behind every estimate.
# Keywords may also count for the profile keywords near them (weight exp((cos - 1) / S), as
# ``neighbour_weights``; None: only for themselves). S, T and prior are chosen per profile by
# leave-one-out over its own records.
RECORD_SMOOTHING = (None, 0.1, 0.3)
RECORD_TEMPERATURES = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
RECORD_PRIORS = (1.0, 4.0, 16.0)


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return rows / np.clip(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12, None)


def record_weights(similarity: np.ndarray, temperature: float) -> np.ndarray:
    """Per row of question-record similarities, each record's weight exp((s - best) / T): 1 for
    the most similar (a record masked with -inf weighs 0)."""
    return np.exp((similarity - similarity.max(axis=-1, keepdims=True)) / temperature)


@dataclass(frozen=True)
class RecordIndex:
    """A profile's validation records as arrays: questions (rows) over the vocabulary, unit
    length, each keyword spread by ``spread`` (vocabulary x vocabulary); each expert's right share
    (``right``) where it answered (``seen``)."""

    names: list[str]
    spread: np.ndarray
    questions: np.ndarray
    right: np.ndarray
    seen: np.ndarray
    accuracy: np.ndarray

    @classmethod
    def of(cls, profile: TaskProfile, spread: np.ndarray) -> "RecordIndex":
        names, position = sorted(profile.experts), {w: i for i, w in enumerate(profile.keywords)}
        named = np.zeros((len(profile.records), len(profile.keywords)))
        for r, record in enumerate(profile.records):
            named[r, [position[k] for k in record.keywords if k in position]] = 1.0
        seen = np.array([[name in r.right for name in names] for r in profile.records], dtype=float)
        right = np.array([[r.right.get(name, 0.0) for name in names] for r in profile.records])
        return cls(names, spread, unit_rows(named @ spread), right, seen,
                   np.array([profile.experts[n].accuracy for n in names]))

    def question(self, keywords: Sequence[str], vocab: Sequence[str], similarity: np.ndarray) -> np.ndarray:
        """A question over the vocabulary like the records: a keyword in the vocabulary by its row
        of ``spread``, any other by its neighbour weights (``similarity``: :func:`keyword_similarity`'s rows)."""
        known = {w: i for i, w in enumerate(vocab)}
        rows = [self.spread[known[k]] if k in known else weights
                for k, weights in zip(keywords, neighbour_weights(similarity))]
        return unit_rows(np.sum(rows, axis=0))

    def estimates(self, weights: np.ndarray, prior: float) -> np.ndarray:
        """Each expert's right share over the records weighted by ``weights`` (one row per
        question), with ``prior`` pseudo-answers at its overall accuracy."""
        return (weights @ self.right + prior * self.accuracy) / (weights @ self.seen + prior)

    def weights(self, questions: np.ndarray, temperature: float) -> np.ndarray:
        """Per question (row), each record's weight (:func:`record_weights`)."""
        return record_weights(questions @ self.questions.T, temperature)

    def fit(self) -> tuple[float, float, float]:
        """The temperature and prior whose leave-one-out estimates (each record's from the others)
        came nearest its right shares, and that squared error (over the experts that answered);
        ties to the flatter temperature."""
        similarity = self.questions @ self.questions.T
        np.fill_diagonal(similarity, -np.inf)

        def held_out_error(temperature: float, prior: float) -> float:
            weights = record_weights(similarity, temperature)
            return float((((self.estimates(weights, prior) - self.right) ** 2) * self.seen).sum())

        fits = [(t, p, held_out_error(t, p)) for t in reversed(RECORD_TEMPERATURES) for p in RECORD_PRIORS]
        return min(fits, key=lambda fit: fit[2])


def fitted_index(profile: TaskProfile, embed: Callable[[list[str]], np.ndarray] | None) -> tuple[RecordIndex, float, float]:
    """The profile's records indexed with the keyword spread (``RECORD_SMOOTHING``), temperature and
    prior whose leave-one-out error is least."""
    vocab = list(profile.keywords)
    near = cosine(embed(vocab), embed(vocab)) if embed is not None and vocab else None
    fits = []
    for smoothing in RECORD_SMOOTHING:
        if smoothing is not None and near is None:
            continue
        spread = np.eye(len(vocab)) if smoothing is None else neighbour_weights(near, smoothing)
        index = RecordIndex.of(profile, spread)
        fits.append((index, *index.fit()))
    index, temperature, prior, _ = min(fits, key=lambda f: f[3])
    return index, temperature, prior


class RecordsRouter(EstimatingRouter):
    """Beyond the paper: each expert's accuracy on the validation questions whose keywords are most
    like the question's (the profile's per-question records, not its summed +/-1 scores); the ``k``
    best distinct experts, or the best one in every slot when its estimate beats their majority's
    (docs/method.md: Routers)."""

    name = "records"

    def __init__(self, k, embed=None):
        super().__init__(k, embed)
        self._indexes: dict[int, tuple[TaskProfile, RecordIndex, float, float]] = {}

    def _index(self, profile: TaskProfile) -> tuple[RecordIndex, float, float]:
        if id(profile) not in self._indexes:
            if not profile.records:
                raise SymoeError(f"routing=records needs the validation records of {profile.task}'s profile "
                                 f"({ANNOTATIONS_FILE} beside its profile.json): "
                                 f"{profile.records_problem or 'there are none; rebuild it with symoe profile'}")
            self._indexes[id(profile)] = (profile, *fitted_index(profile, self.embed))
        return self._indexes[id(profile)][1:]

    def route(self, profile, question, keywords, rng):
        self._index(profile)  # a profile without records is refused whatever the question
        return super().route(profile, question, keywords, rng)

    def estimate(self, profile, keywords, similarity):
        index, temperature, prior = self._index(profile)
        vector = index.question(keywords, profile.keywords, similarity)
        return dict(zip(index.names, map(float, index.estimates(index.weights(vector, temperature), prior))))

    def team(self, estimates):
        return team_by_majority(estimates, self.k)


ROUTERS: Registry[type[Router]] = Registry("routing", Router)


def register_router(cls: type[Router]) -> type[Router]:
    """``routing=cls.name`` in model_args selects ``cls``."""
    ROUTERS.register(cls.name, cls)
    return cls


for _router in (InstanceRouter, TaskRouter, RandomRouter, CalibratedRouter, RecordsRouter):
    register_router(_router)


def router_class(name: str) -> type[Router]:
    return ROUTERS.get(name)


def question_rng(seed: int, task: str, doc_id: int, repeat: int = 0) -> random.Random:
    """A generator per question, so routing does not depend on request order or batching."""
    return random.Random(f"{seed}:{task}:{doc_id}:{repeat}")
