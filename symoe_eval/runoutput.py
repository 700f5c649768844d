"""What a run writes beside lm-eval's outputs, owned here for its writer (the harness) and every
reader (``analysis``, the report page): each method's routing-log row, the run summary's fields,
the answer that marks "none readable", and the digest that ties a summary to its lm-eval run.

A routing log holds one JSON row per question (:func:`row_record`): a :class:`Row`, or the row
type of the run's method, named by its ``kind`` (:data:`ROW_TYPES`). Readers name fields through
:data:`ROW`, :data:`RESPONSE`, :data:`SUMMARY`, :data:`MODEL_STATS` and :data:`SETUP`, so a field
renamed or dropped here fails where it is read, at import, not silently on a file.

The summary's ``schema_version`` is :data:`SCHEMA_VERSION`. Version 2 added ``schema_version``
and ``embedding`` to the summary and ``kind`` and ``prompts_cut`` to each row; files without a
``schema_version`` are version 1 and read as rows with ``prompts_cut`` 0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import ClassVar, Iterable

SCHEMA_VERSION = 2
INVALID = "[invalid]"  # the answer read in a text that states none (lm-eval's regex filters say the same)


@dataclass(frozen=True)
class Response:
    """Who said what in a routing-log row, and the answer the task's filter reads in it."""

    expert: str
    answer: str
    text: str


@dataclass(frozen=True)
class Row:
    """One question's routing-log row; each method's row adds what it decided. ``prompts_cut``:
    how many of the question's prompts that quote responses were shortened to fit a reader's
    context (``symbolic.aggregation.fit_prompt``)."""

    kind: ClassVar[str] = "row"
    task: str
    doc_id: int
    repeat: int
    experts: list[str]
    final_answer: str
    final_text: str
    prompts_cut: int = field(default=0, kw_only=True)


@dataclass(frozen=True)
class SymoeRow(Row):
    kind: ClassVar[str] = "symoe"
    keywords: list[str]
    mapped_keywords: list[str]
    fallback: str | None
    weights: dict
    responses: list[Response]
    aggregator: str
    consensus: bool


@dataclass(frozen=True)
class MoaRow(Row):
    kind: ClassVar[str] = "moa"
    layers: list[list[Response]]
    aggregator: str


@dataclass(frozen=True)
class DiscussionRow(Row):
    kind: ClassVar[str] = "discussion"
    rounds: list[list[Response]]
    votes: list[str]
    vote_weights: list[float] | None


ROW_TYPES: dict[str, type[Row]] = {t.kind: t for t in (Row, SymoeRow, MoaRow, DiscussionRow)}


def row_record(row: Row) -> dict:
    """A row as its routing-log line: its ``kind``, then its fields."""
    return {"kind": row.kind, **dataclasses.asdict(row)}


class Fields:
    """Field names as attributes (``SUMMARY.models == "models"``); naming an undeclared one is an
    ``AttributeError``."""

    def __init__(self, *names: str):
        self._names = tuple(dict.fromkeys(names))
        for name in self._names:
            setattr(self, name, name)

    def __iter__(self):
        return iter(self._names)


def row_fields(*row_types: type) -> Fields:
    return Fields(*(f.name for cls in row_types for f in dataclasses.fields(cls)))


ROW = Fields("kind", *row_fields(Row, *ROW_TYPES.values()))
RESPONSE = row_fields(Response)
SUMMARY = Fields("schema_version", "method", "pool", "seed", "backend", "questions", "models", "stages", "total_loads", "aggregators",
                 "routing_log", "answers_digest", "reproducibility",
                 "truncated_responses", "truncated_questions",  # staged methods: responses and questions cut to fit
                 "profile_sources",  # only where a task was routed with another task's profile (task -> "pooled from a, b")
                 "embedding")  # only where the run embedded keywords: EMBEDDING_SETUP and the model's loads
MODEL_STATS = Fields("loads", "calls", "cached_calls", "generated_tokens", "cached_tokens")  # summary["models"][name]
SETUP = Fields("engine", "batch_size", "threads", "workers", "chat_formatting", "models")  # summary["reproducibility"]
TEXT_SETUP = (SETUP.engine, SETUP.batch_size, SETUP.threads, SETUP.chat_formatting)  # workers alone changes no text
EMBEDDING_SETUP = Fields("model", "device", "threads", "sentence_transformers", "loads", "load_seconds")
MODEL_SETUP = Fields("version", "dtype", "device", "threads", "batch_size")  # summary["reproducibility"]["models"][name]


def answers_digest(answers: Iterable[tuple[str, int, str]]) -> str:
    """What ties a run summary to its lm-eval run: a hash of every (task, doc_id, returned text),
    which our summary records and lm-eval's samples files hold as ``resps``."""
    rows = sorted((str(task), int(doc), text) for task, doc, text in answers)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()
