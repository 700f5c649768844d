"""A jsonlines generation cache in front of any engine, so a killed run resumes for free.

Keys cover everything that determines a generation: the expert and its weights, the chat
messages, the sampling parameters and the sample index. Each finished micro-batch is appended
at once; the model is not even loaded when every request is already cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Sequence

from symoe_eval.engines.base import Completion, Engine, GenerationRequest
from symoe_eval.errors import SymoeError
from symoe_eval.registry import ExpertSpec

log = logging.getLogger(__name__)
FIELDS = {"key": str, "text": str, "num_tokens": int}


def request_key(expert: ExpertSpec, request: GenerationRequest) -> str:
    payload = {
        "expert": expert.name,
        "model": expert.model,
        "weights": asdict(expert.source),
        "messages": request.messages,
        "params": asdict(request.params),
        "sample": request.sample_index,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _valid(row) -> bool:
    return isinstance(row, dict) and all(isinstance(row.get(k), t) for k, t in FIELDS.items())


class GenerationCache:
    """One jsonlines file per expert under ``directory``. Unreadable lines (a torn tail after a
    kill, a hand-edited or foreign line) are skipped and counted, and the file named once; a
    record never starts on a torn line, and a failed write keeps the run going."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._entries: dict[str, dict[str, dict]] = {}
        self._lock = threading.Lock()
        self.skipped_lines = 0
        self.failed_writes = 0
        self._unwritable: set[str] = set()

    def _file(self, expert: str) -> Path:
        return self.directory / f"{expert}.jsonl"

    def check_writable(self) -> None:
        """Fail before any model loads, not after the work is done."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / f".write-check-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise SymoeError(f"generation cache {self.directory} is not writable ({err.strerror}); "
                             "pass cache_dir=<a writable folder> or cache_dir=none") from None

    def entries(self, expert: str) -> dict[str, dict]:
        if expert not in self._entries:
            found: dict[str, dict] = {}
            path, bad = self._file(expert), 0
            if path.exists():
                with open(path, "rb") as fh:  # bytes: a line that is not UTF-8 is one more bad line
                    for line in fh:
                        try:
                            row = json.loads(line)
                        except ValueError:  # UnicodeDecodeError included
                            row = None
                        if _valid(row):
                            found[row["key"]] = row
                        elif line.strip():
                            bad += 1
            if bad:
                self.skipped_lines += bad
                log.warning("generation cache %s: skipped %d unreadable line(s); a request they answered is "
                            "generated again when a run asks for it", path, bad)
            self._entries[expert] = found
        return self._entries[expert]

    def get(self, expert: str, key: str) -> Completion | None:
        row = self.entries(expert).get(key)
        if row is None:
            return None
        return Completion(row["text"], row["num_tokens"], row.get("finish_reason", "stop"), cached=True)

    def put(self, expert: str, key: str, completion: Completion) -> None:
        row = {
            "key": key,
            "text": completion.text,
            "num_tokens": completion.num_tokens,
            "finish_reason": completion.finish_reason,
        }
        with self._lock:
            self.entries(expert)[key] = row
            try:
                self._append(self._file(expert), json.dumps(row))
            except OSError as err:
                self.failed_writes += 1
                if expert not in self._unwritable:  # one warning per file: a full disk fails every record
                    self._unwritable.add(expert)
                    log.warning("generation cache %s: write failed (%s); this run keeps its new generations for "
                                "this file in memory only (counted in failed_writes)", self._file(expert), err.strerror)

    @staticmethod
    def _append(path: Path, line: str) -> None:
        """One record per line, starting a fresh line when a killed run left a torn tail; a write
        that fails (a full disk) is cut back off, so no torn record stays in the file's middle."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab+") as fh:
            size = fh.seek(0, os.SEEK_END)
            torn = False
            if size > 0:
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"
            try:
                fh.write((b"\n" if torn else b"") + line.encode() + b"\n")
                fh.flush()
            except OSError:
                with contextlib.suppress(OSError):
                    fh.truncate(size)
                raise


class CachedEngine(Engine):
    """Serves cached requests itself and hands only the misses to the wrapped engine, which
    loads on the first miss (a fully cached group never loads its model)."""

    def __init__(self, inner: Engine, cache: GenerationCache):
        super().__init__(inner.expert)
        self.inner = inner
        self.cache = cache
        self.stats = inner.stats
        self.name = inner.name

    @property
    def loaded(self) -> bool:
        return self.inner.loaded

    def load(self) -> None:
        pass

    def unload(self) -> None:
        if self.inner.loaded:
            self.inner.unload()

    def load_tokenizer(self):
        return self.inner.load_tokenizer()

    def declared_context_limit(self) -> int | None:
        return self.inner.declared_context_limit()

    def report_budget_to(self, callback) -> None:
        super().report_budget_to(callback)
        self.inner.report_budget_to(callback)

    def pending(self, requests: Sequence[GenerationRequest]) -> int:
        entries = self.cache.entries(self.expert.name)
        return sum(request_key(self.expert, r) not in entries for r in requests)

    def iter_generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Completion]]:
        keys = [request_key(self.expert, r) for r in requests]
        misses = []
        for i, key in enumerate(keys):
            hit = self.cache.get(self.expert.name, key)
            if hit is None:
                misses.append(i)
            else:
                self.stats.count_hit(hit)
                self._budget_used(requests[i].params.max_tokens)
                yield i, hit
        for j, completion in self.inner.iter_generate([requests[i] for i in misses]):
            i = misses[j]
            self.cache.put(self.expert.name, keys[i], completion)
            yield i, completion
