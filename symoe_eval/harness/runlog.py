"""Writes a run's routing log and summary next to lm-eval's own outputs (their schema:
:mod:`symoe_eval.runoutput`).

One jsonlines row per question (task, doc_id, keywords, experts, responses, final answer) and one
JSON summary per run (model loads, calls and tokens per model, time per stage), so leaderboards
can put cost beside accuracy.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Iterable

import jsonlines

from symoe_eval.paths import cache_root
from symoe_eval.runoutput import MODEL_STATS, SUMMARY, answers_digest

log = logging.getLogger(__name__)


class RunLog:
    def __init__(self, folder: Path, stem: str):
        self.folder = folder
        self.rows_path = folder / f"routing_{stem}.jsonl"
        self.summary_path = folder / f"routing_summary_{stem}.json"
        self.rows: list[dict] = []

    @classmethod
    def open(cls, folder: str | Path | None, method: str, pool: str) -> "RunLog":
        """A new run's log in ``folder`` (``log_dir=``, else lm-eval's ``--output_path``), else
        under the cache root."""
        folder = Path(folder).expanduser() if folder else cache_root() / "runs"
        stamp = dt.datetime.now().strftime("%Y-%m-%dT%H-%M-%S.%f")
        return cls(folder, f"{method}_{pool}_{stamp}")

    def record(self, row: dict) -> None:
        self.rows.append(row)

    def finish(self, summary: dict, answers: Iterable[tuple[str, int, str]]) -> None:
        """Write the rows and the summary; ``answers`` are the run's (task, doc_id, text)."""
        summary = {**summary, SUMMARY.answers_digest: answers_digest(answers)}
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.rows:
            with jsonlines.open(self.rows_path, mode="w") as writer:
                writer.write_all(self.rows)
            summary = {**summary, SUMMARY.routing_log: str(self.rows_path)}
        self.summary_path.write_text(json.dumps(summary, indent=1))
        loads = ", ".join(f"{m} x{s[MODEL_STATS.loads]}" for m, s in summary.get(SUMMARY.models, {}).items())
        stages = ", ".join(f"{s['name']} {s['seconds']:.1f}s" for s in summary.get(SUMMARY.stages, []))
        print(f"[symoe-eval] model loads: {loads}; stages: {stages}; summary: {self.summary_path}", file=sys.stderr)
