"""Recruitment and keyword mapping, pure: weights, seeds, sampling distribution, fallbacks."""

import random
from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare

from symoe_eval.errors import SymoeError
from symoe_eval.symbolic.profiles import ExpertProfile, TaskProfile, ValidationRecord, build_expert_profiles, count_keywords
from symoe_eval.symbolic.routing import (
    ROUTERS,
    QuestionRef,
    RecordIndex,
    fitted_index,
    keyword_sums,
    majority_right,
    map_keywords,
    normalized_strengths,
    question_rng,
    recruitment_weights,
    strongest,
    team_by_majority,
)


def route(keywords, k, rng, doc=0, mode="instance"):
    """One question through the named router (keywords here are all in the profile's vocabulary)."""
    return ROUTERS[mode](k, embed=None).route(PROFILE, QuestionRef("t", doc), keywords, rng)


def profile(scores: dict[str, dict[str, int]]) -> TaskProfile:
    return TaskProfile("t", "p", {e: ExpertProfile(e, s) for e, s in scores.items()}, aggregator=next(iter(scores)),
                       keywords=sorted({k for s in scores.values() for k in s}))


PROFILE = profile({
    "bio": {"biology": 5, "genetics": 3, "algebra": -4},
    "math": {"biology": -3, "algebra": 6, "geometry": 2},
    "weak": {"biology": -1, "algebra": -2, "geometry": -1},
})


def test_normalized_strengths_closed_form():
    # strengths 4, 5, -4: shift by 4+1 -> 9, 10, 1; power 1/0.5 = 2 -> 81, 100, 1
    got = normalized_strengths({"bio": 4, "math": 5, "weak": -4})
    assert got == pytest.approx({"bio": 81 / 182, "math": 100 / 182, "weak": 1 / 182})
    assert normalized_strengths({"a": 2, "b": 0}) == pytest.approx({"a": 1.0, "b": 0.0})  # no shift when none negative
    assert normalized_strengths({"a": 0, "b": 0}) == {"a": 0.5, "b": 0.5}


def test_weights_keep_positive_sums_times_strength():
    sums = keyword_sums(PROFILE, ["biology", "genetics"])
    assert sums == {"bio": 8, "math": -3, "weak": -1}
    strengths = normalized_strengths({n: e.strength for n, e in PROFILE.experts.items()})
    weights = recruitment_weights(sums, strengths)
    assert list(weights) == ["bio"] and weights["bio"] == pytest.approx(1.0)


def test_weights_shift_when_no_sum_is_positive():
    sums = {"a": -5, "b": -1}
    weights = recruitment_weights(sums, {"a": 0.5, "b": 0.5})
    # shifted: a -> 1, b -> 5
    assert weights == pytest.approx({"a": 1 / 6, "b": 5 / 6})


def test_same_seed_same_routing_and_order_independence():
    def routes(seed, order):
        return [route(["biology", "algebra"], 3, question_rng(seed, "t", d), d).experts for d in order]

    assert routes(0, range(20)) == routes(0, range(20))
    assert routes(0, range(20)) == list(reversed(routes(0, reversed(range(20)))))
    assert routes(0, range(20)) != routes(1, range(20))


def test_recruitment_sampling_matches_the_weights():
    keywords = ["biology", "algebra", "geometry"]
    strengths = normalized_strengths({n: e.strength for n, e in PROFILE.experts.items()})
    weights = recruitment_weights(keyword_sums(PROFILE, keywords), strengths)
    assert set(weights) == {"bio", "math"}
    counts = Counter()
    for doc in range(4000):
        counts.update(route(keywords, 3, question_rng(7, "t", doc), doc).experts)
    names = sorted(weights)
    observed = [counts[n] for n in names]
    expected = [weights[n] * 12000 for n in names]
    assert counts["weak"] == 0
    assert chisquare(observed, expected).pvalue > 0.001


def test_no_usable_keyword_falls_back_to_the_strongest():
    r = route([], 3, random.Random(0))
    assert r.fallback == "no usable keyword"
    assert r.experts == strongest(PROFILE, 3) == ["math", "bio", "weak"]
    assert strongest(PROFILE, 5)[3:] == ["math", "bio"]  # cycles when k exceeds the pool


def test_task_and_random_routers():
    assert route(["biology"], 2, random.Random(0), mode="task").experts == ["math", "bio"]
    picks = Counter()
    for doc in range(600):
        picks.update(route([], 1, question_rng(0, "t", doc), doc, mode="random").experts)
    assert set(picks) == {"bio", "math", "weak"} and min(picks.values()) > 150


def fake_embed(texts):
    """Deterministic 'embeddings': biology words near each other, math words near each other."""
    axes = {"bio": 0, "gen": 0, "cell": 0, "alg": 1, "geo": 1, "equation": 1}
    out = []
    for t in texts:
        v = np.full(3, 0.05)
        for stem, axis in axes.items():
            if stem in t:
                v[axis] += 1.0
        out.append(v)
    return np.array(out)


def test_keywords_map_to_their_nearest_profile_keyword():
    vocab = ["biology", "algebra"]
    assert map_keywords(["cell biology", "linear equations", "algebra"], vocab, fake_embed) == ["biology", "algebra"]
    assert map_keywords([], vocab, fake_embed) == []
    assert map_keywords(["x"], [], fake_embed) == []


def calibrated(profile_, keywords, k, seed=0, doc=0):
    router = ROUTERS["calibrated"](k, embed=fake_embed)
    return router.route(profile_, QuestionRef("t", doc), keywords, question_rng(seed, "t", doc))


COUNTED = TaskProfile("t", "p", {
    # 'bio' is right on 9 of 10 biology answers; 'many' is mediocre on everything, seen often
    "bio": ExpertProfile("bio", {"biology": 8, "algebra": -2}, accuracy=0.5),
    "math": ExpertProfile("math", {"biology": -6, "algebra": 8}, accuracy=0.6),
    "weak": ExpertProfile("weak", {"biology": -8, "algebra": -8}, accuracy=0.1),
    "many": ExpertProfile("many", {"biology": 2, "algebra": 2}, accuracy=0.55),
}, aggregator="bio", keywords=["algebra", "biology"], keyword_counts={"biology": 10, "algebra": 10})


def test_calibrated_router_picks_k_distinct_experts_by_shrunk_accuracy():
    r = calibrated(COUNTED, ["cell biology"], 3)
    assert r.experts == ["bio", "many", "math"] and r.mapped == ["biology"] and r.fallback is None
    # (9 hits + 4 x 0.5) / (10 + 4) for 'bio' on biology
    assert r.weights["bio"] == pytest.approx(11 / 14)
    assert calibrated(COUNTED, ["linear equations"], 2).experts == ["math", "many"]


def test_calibrated_router_is_reproducible_and_respects_k():
    def teams(seed, k):
        return [calibrated(COUNTED, ["biology", "algebra"], k, seed, d).experts for d in range(10)]

    for k in (1, 2, 4):
        assert teams(0, k) == teams(0, k) == teams(1, k)  # it draws nothing: same team whatever the seed
        assert all(len(team) == k and len(set(team)) == k for team in teams(0, k))


def test_calibrated_router_without_keywords_and_small_pools():
    r = calibrated(COUNTED, [], 3)
    assert r.fallback == "no usable keyword" and r.experts == ["math", "many", "bio"]  # overall accuracy
    two = TaskProfile("t", "p", {n: COUNTED.experts[n] for n in ("bio", "math")}, aggregator="bio",
                      keywords=COUNTED.keywords, keyword_counts=COUNTED.keyword_counts)
    assert calibrated(two, ["biology"], 3).experts == ["bio", "math", "bio"]  # cycled, best first
    empty = TaskProfile("t", "p", dict(two.experts), aggregator="bio")
    assert calibrated(empty, ["biology"], 2).fallback == "no usable keyword"


def test_profiles_without_keyword_counts_use_the_largest_score_as_a_lower_bound():
    old = TaskProfile("t", "p", dict(COUNTED.experts), aggregator="bio", keywords=COUNTED.keywords)
    assert old.answers_behind("biology") == 8 and COUNTED.answers_behind("biology") == 10
    assert old.answers_behind("unseen") == 0
    assert calibrated(old, ["biology"], 1).experts == ["bio"]


def test_the_embedding_model_is_loaded_on_the_runs_device_and_threads(tiny_cpu_weights):
    """Through the engine layer (``RunContext.embedder``): ``device=`` and ``threads=`` reach it,
    its load is counted once per run and its setup described (before: a hard-coded CPU, uncounted)."""
    from symoe_eval.runtime.context import RunContext

    import torch

    context = RunContext.create(pool="tiny-cpu", engine="hf", cache_dir="none", device="cpu", threads="1")
    embed = context.embedder()
    assert embed.describe_setup() == {} and embed.stats.loads == 0  # nothing loads before it is used
    before = torch.get_num_threads()
    try:
        vectors = embed(["algebra", "organic chemistry", "algebra"])
    finally:
        torch.set_num_threads(before)  # the rest of the suite keeps its threads
    assert vectors.shape[0] == 3 and (vectors[0] == vectors[2]).all()
    embed(["pharmacology"])
    setup = embed.describe_setup()
    assert (embed.stats.loads, setup["device"], setup["threads"]) == (1, "cpu", 1) and context.embedder() is embed
    assert setup["model"] == context.pool.embedding_model.model
    (entry,) = context.embedding_summary().values()  # the run summary's "embedding" (schema version 2)
    assert {k: v for k, v in entry.items() if k != "load_seconds"} == {**setup, "loads": 1}
    assert entry["load_seconds"] > 0 and RunContext.create(pool="tiny-cpu", engine="hf", cache_dir="none").embedding_summary() == {}


def with_records(rows: list[tuple[list[str], dict[str, bool]]]) -> TaskProfile:
    """A profile built from per-question records, as ``symoe profile`` would write it."""
    keywords = [kw for kw, _ in rows]
    names = sorted({n for _, right in rows for n in right})
    experts = build_expert_profiles(keywords, {n: [[right[n]] for _, right in rows] for n in names})
    return TaskProfile("t", "p", experts, aggregator=names[0], keywords=sorted({k for kw in keywords for k in kw}),
                       keyword_counts=count_keywords(keywords, 1),
                       records=[ValidationRecord(tuple(kw), {n: float(right[n]) for n in right}) for kw, right in rows])


# 'cmp' answers "which is the largest" questions, 'sorter' the "sort from smallest to largest" ones
# (which also name 'largest'), 'gen' half of each: summed per-keyword scores credit 'sorter' with
# 'largest' (+4 against cmp's -4); the records separate the two kinds of question.
SHARED_KEYWORD = with_records(
    [(["largest"], {"cmp": True, "sorter": False, "gen": i % 2 == 0}) for i in range(6)]
    + [(["sort", "smallest", "largest"], {"cmp": False, "sorter": True, "gen": i % 2 == 1}) for i in range(10)]
)


def records(profile_, keywords, k, seed=0, doc=0):
    router = ROUTERS["records"](k, embed=fake_embed)
    return router.route(profile_, QuestionRef("t", doc), keywords, question_rng(seed, "t", doc))


def test_records_router_finds_the_expert_a_shared_keyword_hides():
    assert SHARED_KEYWORD.experts["sorter"].scores["largest"] == 4 and SHARED_KEYWORD.experts["cmp"].scores["largest"] == -4
    assert set(route_with(SHARED_KEYWORD, ["largest"], "instance")) == {"sorter"}  # the paper's router
    largest, sort = records(SHARED_KEYWORD, ["largest"], 3), records(SHARED_KEYWORD, ["sort", "smallest", "largest"], 3)
    assert largest.experts == ["cmp"] * 3 and sort.experts == ["sorter"] * 3
    assert largest.weights["cmp"] > 0.8 > largest.weights["gen"] and largest.mapped == ["largest"]


def route_with(profile_, keywords, mode, k=3):
    return ROUTERS[mode](k, embed=fake_embed).route(profile_, QuestionRef("t", 0), keywords, random.Random(0)).experts


def test_records_router_is_reproducible_respects_k_and_falls_back_without_keywords():
    for k in (1, 2, 5):
        teams = [records(SHARED_KEYWORD, ["largest"], k, seed, d).experts for seed in (0, 1) for d in range(4)]
        assert all(team == teams[0] for team in teams) and len(teams[0]) == k
    r = records(SHARED_KEYWORD, [], 3)
    assert r.fallback == "no usable keyword" and r.experts == ["sorter"] * 3  # 10 of 16 right overall
    one = with_records([(["largest"], {"cmp": True})] * 3)
    assert records(one, ["largest"], 3).experts == ["cmp"] * 3


def test_records_router_calls_distinct_experts_when_their_majority_is_likelier_right():
    assert majority_right([0.7, 0.7, 0.7]) == pytest.approx(0.784)  # 3 x 0.7^2 x 0.3 + 0.7^3
    assert team_by_majority({"a": 0.7, "b": 0.7, "c": 0.7}, 3) == ["a", "b", "c"]
    assert team_by_majority({"a": 0.9, "b": 0.5, "c": 0.3}, 3) == ["a", "a", "a"]
    assert team_by_majority({"a": 0.9}, 3) == ["a", "a", "a"]


def test_records_router_needs_the_validation_records():
    bare = TaskProfile("t", "p", dict(SHARED_KEYWORD.experts), aggregator="cmp", keywords=SHARED_KEYWORD.keywords)
    with pytest.raises(SymoeError, match=r"routing=records needs the validation records of t's profile \(annotations.jsonl"):
        records(bare, ["largest"], 3)


def test_records_router_fits_a_sharp_temperature_to_crisp_skills_and_a_flat_one_to_noise():
    _, temperature, _ = fitted_index(SHARED_KEYWORD, fake_embed)
    assert temperature <= 0.2
    rng = random.Random(0)
    noise = with_records([([rng.choice(["biology", "algebra", "x"])], {"x": rng.random() < 0.5, "y": rng.random() < 0.5})
                          for _ in range(60)])
    assert fitted_index(noise, fake_embed)[1] >= 1.0


def test_records_spread_keywords_over_their_neighbours_when_that_predicts_better():
    """Two spellings of one skill ('cell biology', 'biology') are one skill to fake_embed: a
    question named by either reads the records of both once the spread is fitted."""
    split = with_records([(["biology"], {"bio": True, "alg": False})] * 6 + [(["cell biology"], {"bio": True, "alg": False})] * 6
                         + [(["algebra"], {"bio": False, "alg": True})] * 12)
    index, _, _ = fitted_index(split, fake_embed)
    assert not np.allclose(index.spread, np.eye(len(split.keywords)))  # the neighbours' records count
    assert RecordIndex.of(split, np.eye(3)).fit()[2] > index.fit()[2]  # and predict the held-out records better
    assert records(split, ["biology"], 3).experts == ["bio"] * 3
