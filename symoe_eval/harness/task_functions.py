"""What the symoe_* task files call: the benchmark data as lm-eval ``custom_dataset`` callables,
and the answer filters and ``process_results`` that score it.

Two sources, one record shape ``{question, gold_answer, category}`` with options inline:
a local folder in the paper authors' format (``{MMLU_Pro,GPQA,AIME24,MedMCQA}_{train,test}.json``,
``train`` being the validation split), or the Hugging Face hub converted to that shape.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from symoe_eval.errors import SymoeError
from symoe_eval.registry import Registry
from symoe_eval.answers import extract_answer, is_correct, majority

DATA_DIR_ENV = "SYMOE_DATA_DIR"
SEED = 0
MMLU_PRO_TEST_PER_CATEGORY = 150
MMLU_PRO_VAL_PER_CATEGORY = 25
MEDMCQA_VAL_SIZE = 504  # the paper's validation size
LETTERS = "ABCDEFGHIJ"


def with_options(question: str, options: list[str], separator: str = " ") -> str:
    """Put options inline the way the authors' files do: ``... The options are: (A) x (B) y``."""
    listed = " ".join(f"({LETTERS[i]}) {opt}" for i, opt in enumerate(options))
    return f"{question}{separator}The options are: {listed}"


def record(question: str, gold_answer: str, category: str = "") -> dict:
    return {"question": question, "gold_answer": str(gold_answer), "category": category or ""}


# ---------------------------------------------------------------- hub conversions (pure)


def convert_mmlu_pro(rows: list[dict], seed: int = SEED) -> dict[str, list[dict]]:
    """TIGER-Lab/MMLU-Pro test rows -> 150 test and 25 validation items per category."""
    by_category: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(row)
    rng = random.Random(seed)
    splits: dict[str, list[dict]] = {"test": [], "train": []}
    for category in sorted(by_category):
        items = list(by_category[category])
        rng.shuffle(items)
        chosen = {
            "test": items[:MMLU_PRO_TEST_PER_CATEGORY],
            "train": items[
                MMLU_PRO_TEST_PER_CATEGORY : MMLU_PRO_TEST_PER_CATEGORY + MMLU_PRO_VAL_PER_CATEGORY
            ],
        }
        for split, picked in chosen.items():
            splits[split] += [
                record(with_options(r["question"], r["options"]), r["answer"], category)
                for r in picked
            ]
    return splits


def convert_gpqa(rows: list[dict], seed: int = SEED) -> list[dict]:
    """Idavidrein/gpqa rows -> items with the four answers shuffled by a fixed seed."""
    rng = random.Random(seed)
    out = []
    for row in rows:
        options = [
            row["Correct Answer"],
            row["Incorrect Answer 1"],
            row["Incorrect Answer 2"],
            row["Incorrect Answer 3"],
        ]
        options = [o.strip() for o in options]
        order = list(range(4))
        rng.shuffle(order)
        shuffled = [options[i] for i in order]
        gold = LETTERS[order.index(0)]
        out.append(record(with_options(row["Question"].strip(), shuffled, "\n\n"), gold))
    return out


def convert_aime(rows: list[dict], before_year: int | None = None) -> list[dict]:
    """AIME rows (``Problem`` or ``Question``, ``Answer``, optional ``Year``) -> items with the
    integer answer as a string; ``before_year`` keeps earlier contests only (the validation split)."""
    return [
        record((row.get("Problem") or row["Question"]).strip(), str(row["Answer"]).strip())
        for row in rows
        if before_year is None or int(row.get("Year", 0)) < before_year
    ]


def convert_medmcqa(rows: list[dict]) -> list[dict]:
    """openlifescienceai/medmcqa rows (``cop`` is the 0-based correct option) -> items."""
    return [
        record(
            with_options(row["question"], [row["opa"], row["opb"], row["opc"], row["opd"]]),
            LETTERS[int(row["cop"])],
        )
        for row in rows
    ]


# ---------------------------------------------------------------- hub fetch (side effects)


def _hub_rows(path: str, split: str, name: str | None = None) -> list[dict]:
    import datasets

    return list(datasets.load_dataset(path, name, split=split))


def _mmlu_pro_from_hub() -> dict[str, list[dict]]:
    return convert_mmlu_pro(_hub_rows("TIGER-Lab/MMLU-Pro", "test"))


def _gpqa_from_hub() -> dict[str, list[dict]]:
    return {
        "test": convert_gpqa(_hub_rows("Idavidrein/gpqa", "train", "gpqa_diamond")),
        "train": convert_gpqa(_hub_rows("Idavidrein/gpqa", "train", "gpqa_main")),
    }


def _aime_from_hub() -> dict[str, list[dict]]:
    return {
        "test": convert_aime(_hub_rows("Maxwell-Jia/AIME_2024", "train")),
        "train": convert_aime(_hub_rows("di-zhang-fdu/AIME_1983_2024", "train"), before_year=2024),
    }


def _medmcqa_from_hub() -> dict[str, list[dict]]:
    train = convert_medmcqa(_hub_rows("openlifescienceai/medmcqa", "train"))
    return {
        "test": convert_medmcqa(_hub_rows("openlifescienceai/medmcqa", "validation")),
        "train": random.Random(SEED).sample(train, min(MEDMCQA_VAL_SIZE, len(train))),
    }


def _from_package(file_name: str) -> Callable[[], dict[str, list[dict]]]:
    """A task's questions written by this project and shipped beside the task YAMLs."""
    def read() -> dict[str, list[dict]]:
        from symoe_eval.paths import tasks_dir

        rows = json.loads((tasks_dir() / file_name).read_text())
        return {split: [record(r["question"], r["gold_answer"], r["category"]) for r in rows[split]] for split in ("train", "test")}
    return read


@dataclass(frozen=True)
class Benchmark:
    key: str
    file_stem: str  # the authors' file prefix
    fetch: Callable[[], dict[str, list[dict]]]  # the hub (or package data) when no folder is named
    packaged: bool = False  # always read from package data, never from a data folder


BENCHMARKS: Registry[Benchmark] = Registry("benchmark", Benchmark, instances=True)
for _benchmark in (
    Benchmark("mmlu_pro", "MMLU_Pro", _mmlu_pro_from_hub),
    Benchmark("gpqa", "GPQA", _gpqa_from_hub),
    Benchmark("aime24", "AIME24", _aime_from_hub),
    Benchmark("medmcqa", "MedMCQA", _medmcqa_from_hub),
    Benchmark("demo", "Demo", _from_package("symoe_demo.json"), packaged=True),
    # four skills the specialists pool's LoRA adapters learned (scripts/build_specialists.py)
    Benchmark("skills", "Skills", _from_package("symoe_skills.json"), packaged=True),
):
    BENCHMARKS.register(_benchmark.key, _benchmark)


def get_benchmark(key: str) -> Benchmark:
    return BENCHMARKS.get(key)


def resolve_data_dir(data_dir: str | None = None) -> Path | None:
    chosen = data_dir or os.environ.get(DATA_DIR_ENV)
    return Path(chosen).expanduser() if chosen else None


def read_local(benchmark: Benchmark, data_dir: Path) -> dict[str, list[dict]]:
    splits = {}
    for split in ("train", "test"):
        path = data_dir / f"{benchmark.file_stem}_{split}.json"
        if not path.is_file():
            raise SymoeError(
                f"{path} not found: {DATA_DIR_ENV} / --metadata data_dir must name a folder with "
                f"{benchmark.file_stem}_train.json and {benchmark.file_stem}_test.json"
            )
        try:
            rows = json.loads(path.read_text())
            splits[split] = [record(r["question"], r["gold_answer"], r.get("category", "")) for r in rows]
        except (ValueError, KeyError, TypeError) as err:
            raise SymoeError(f"{path} is not a JSON list of {{question, gold_answer}}: {err}") from None
    return splits


def load_splits(benchmark_key: str, data_dir: str | None = None) -> dict[str, list[dict]]:
    """Records per split (``train`` = validation, ``test``) from the local folder or the hub."""
    benchmark = get_benchmark(benchmark_key)
    if benchmark.packaged:
        return benchmark.fetch()
    folder = resolve_data_dir(data_dir)
    if folder is not None:
        return read_local(benchmark, folder)
    try:
        return benchmark.fetch()
    except Exception as err:  # any hub/network failure gets the same actionable message
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SymoeError(
            f"cannot fetch {benchmark.file_stem} from the Hugging Face hub ({first[:160]}); "
            f"set {DATA_DIR_ENV} or --metadata '{{\"data_dir\": ...}}' to a folder with "
            f"{benchmark.file_stem}_{{train,test}}.json"
        ) from None


def load_dataset(benchmark: str, data_dir: str | None = None, **_metadata):
    """lm-eval ``custom_dataset`` entry point; other --metadata / model_args keys are ignored."""
    import datasets

    return datasets.DatasetDict(
        {split: datasets.Dataset.from_list(rows) for split, rows in load_splits(benchmark, data_dir).items()}
    )


# ---------------------------------------------------------------- scoring

def filter_extract(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval ``custom`` filter: every response of every doc -> its extracted answer."""
    return [[extract_answer(r, doc["question"]) for r in rs] for rs, doc in zip(resps, docs)]


def filter_vote(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval ``custom`` filter for self-consistency: the majority answer of a doc's repeats."""
    return [[majority(answers)] for answers in filter_extract(resps, docs)]


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """lm-eval ``process_results`` after the ``answer`` filter: exact match, math-aware for AIME."""
    return {"exact_match": float(is_correct(results[0], doc["gold_answer"], doc["question"]))}


def _written(answer: str) -> str:
    return " ".join(str(answer).split()).rstrip(".").lower()


def process_results_literal(doc: dict, results: list[str]) -> dict[str, float]:
    """lm-eval ``process_results`` for answers to be written out, not computed (symoe_skills): the
    extracted answer equals the gold one up to spacing, case and a final period, so "221 + 427" is
    no answer to "What is 221 + 427?" (math-aware matching would evaluate it)."""
    return {"exact_match": float(_written(results[0]) == _written(doc["gold_answer"]))}
