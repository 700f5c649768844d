"""A jsonlines generation cache in front of any engine, so a killed run resumes for free.

Keys cover everything that determines a generation: the expert and its weights (served: also
its endpoint and served model name), the chat messages, the sampling parameters and the sample
index. Each finished micro-batch is appended at once; the model is not even loaded when every
request is already cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Sequence

from symoe_eval.engines.base import Completion, Engine, GenerationRequest
from symoe_eval.engines.batching import micro_batches
from symoe_eval.errors import SymoeError
from symoe_eval.pools.schema import ExpertSpec

log = logging.getLogger(__name__)
FIELDS = {"key": str, "text": str, "num_tokens": int}


def request_key(expert: ExpertSpec, request: GenerationRequest) -> str:
    payload = {
        "expert": expert.name,
        "model": expert.model,
        "weights": asdict(expert.source) if expert.source else None,
        "messages": request.messages,
        "params": asdict(request.params),
        "sample": request.sample_index,
    }
    if expert.adapter:  # a LoRA expert: its adapter's weights too
        payload["adapter"] = expert.adapter.sha256
    if expert.served:  # a server that now serves another model is not read from the old entries
        payload["served"] = [expert.served.base_url.rstrip("/"), expert.served.model]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _valid(row) -> bool:
    return isinstance(row, dict) and all(isinstance(row.get(k), t) for k, t in FIELDS.items())


class GenerationCache:
    """One jsonlines file per expert under ``directory``. Unreadable lines (a torn tail after a
    kill, a hand-edited or foreign line) are skipped and counted, and the file named once; a
    record never starts on a torn line, and a failed write keeps the run going."""

    def __init__(self, directory: str | Path, locked_by_driver: bool = False):
        """``locked_by_driver``: a Ray actor's view, whose driver holds ``generating``'s locks for
        the run (its actors never generate the same request, so they must not wait for each other)."""
        self.directory = Path(directory)
        self.locked_by_driver = locked_by_driver
        self._entries: dict[str, dict[str, dict]] = {}
        self._read_upto: dict[str, int] = {}  # bytes of each file read so far
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
            self._entries[expert], self._read_upto[expert] = {}, 0
            bad = self._read_new(expert, count_torn_tail=True)
            if bad:
                self.skipped_lines += bad
                log.warning("generation cache %s: skipped %d unreadable line(s); a request they answered is "
                            "generated again when a run asks for it", self._file(expert), bad)
        return self._entries[expert]

    def _read_new(self, expert: str, count_torn_tail: bool) -> int:
        """Read the records added since the last read; returns the unreadable lines. A last line
        without its newline is a torn tail (a killed run: counted) or a record another run is
        writing (a refresh: read again next time)."""
        path, bad = self._file(expert), 0
        if not path.exists():
            return 0
        with open(path, "rb") as fh:  # bytes: a line that is not UTF-8 is one more bad line
            fh.seek(self._read_upto[expert])
            for line in fh:
                if not line.endswith(b"\n") and not count_torn_tail:
                    break
                try:
                    row = json.loads(line)
                except ValueError:  # UnicodeDecodeError included
                    row = None
                if _valid(row):
                    self._entries[expert][row["key"]] = row
                elif line.strip():
                    bad += 1
                if line.endswith(b"\n"):
                    self._read_upto[expert] = fh.tell()
        return bad

    def get(self, expert: str, key: str) -> Completion | None:
        row = self.entries(expert).get(key)
        if row is None:
            return None
        return Completion(row["text"], row["num_tokens"], row.get("finish_reason", "stop"), cached=True)

    def put(self, expert: str, records: Sequence[tuple[str, Completion]]) -> None:
        """Keep ``(key, completion)`` records, appended to the file in one write (a micro-batch:
        a kill never leaves half of one, so a resumed run batches the rest as a fresh one)."""
        rows = [{"key": key, "text": c.text, "num_tokens": c.num_tokens, "finish_reason": c.finish_reason}
                for key, c in records]
        with self._lock:
            self.entries(expert).update((row["key"], row) for row in rows)
            try:
                self._append(self._file(expert), "".join(json.dumps(row) + "\n" for row in rows))
            except OSError as err:
                self.failed_writes += len(rows)
                if expert not in self._unwritable:  # one warning per file: a full disk fails every record
                    self._unwritable.add(expert)
                    log.warning("generation cache %s: write failed (%s); this run keeps its new generations for "
                                "this file in memory only (counted in failed_writes)", self._file(expert), err.strerror)

    @contextlib.contextmanager
    def generating(self, expert: str) -> Iterator[None]:
        """Hold while generating for ``expert``: two runs on one cache never generate for one model
        at once; the second waits, then reads what the first wrote and generates only the rest.
        The lock is the OS's (``flock``), so a dead run's is released at once; where there is
        none (a file system without locks) runs go on unlocked, as before. A thread that holds
        it already goes on (flock would make it wait for itself)."""
        held = ((self.directory / f".{expert}.lock").absolute(), threading.get_ident())
        lock = None if held in _HELD_HERE or self.locked_by_driver else _lock_file(held[0], expert)
        if lock is not None:
            _HELD_HERE.add(held)
        with self._lock:
            self.entries(expert)
            self._read_new(expert, count_torn_tail=False)
        try:
            yield
        finally:
            if lock is not None:
                _HELD_HERE.discard(held)
                lock.close()  # closing releases the flock

    @staticmethod
    def _append(path: Path, lines: str) -> None:
        """Whole records, one per line, starting a fresh line when a killed run left a torn tail; a write
        that fails (a full disk) is cut back off, so no torn record stays in the file's middle."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab+") as fh:
            size = fh.seek(0, os.SEEK_END)
            torn = False
            if size > 0:
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"
            try:
                fh.write((b"\n" if torn else b"") + lines.encode())
                fh.flush()
            except OSError:
                with contextlib.suppress(OSError):
                    fh.truncate(size)
                raise


_HELD_HERE: set[tuple[Path, int]] = set()  # (lock file, thread) this process holds


def _lock_file(path: Path, expert: str):
    """``path`` opened and locked (waiting for another holder, named in a warning), or None."""
    lock = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path, "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            log.warning("generation cache %s: another run (%s) is generating for %s; waiting to read its work",
                        path.parent, lock.read().strip() or "pid unknown", expert)
            fcntl.flock(lock, fcntl.LOCK_EX)
        lock.truncate(0)
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}")
        lock.flush()
        return lock
    except OSError as err:
        log.debug("generation cache %s: no lock for %s (%s)", path.parent, expert, err)
        if lock is not None:
            lock.close()
        return None


class CachedEngine(Engine):
    """Serves cached requests itself and hands only the misses to the wrapped engine, which
    loads on the first miss (a fully cached group never loads its model)."""

    def __init__(self, inner: Engine, cache: GenerationCache):
        super().__init__(inner.expert)
        self.inner = inner
        self.cache = cache
        self.stats = inner.stats
        self.name = inner.name
        self.holds_memory = inner.holds_memory

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

    def loaded_setup(self) -> dict:
        return self.inner.loaded_setup()

    def declared_context_limit(self) -> int | None:
        return self.inner.declared_context_limit()

    def report_budget_to(self, callback) -> None:
        super().report_budget_to(callback)
        self.inner.report_budget_to(callback)

    def generating(self):
        return self.cache.generating(self.expert.name)

    def pending(self, requests: Sequence[GenerationRequest]) -> int:
        entries = self.cache.entries(self.expert.name)
        return sum(request_key(self.expert, r) not in entries for r in requests)

    def iter_generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, Completion]]:
        keys = [request_key(self.expert, r) for r in requests]
        yield from self._hits(requests, keys, range(len(requests)))
        misses = [i for i, key in enumerate(keys) if key not in self.cache.entries(self.expert.name)]
        if not misses:
            return
        with self.cache.generating(self.expert.name):
            yield from self._hits(requests, keys, misses)  # what another run wrote meanwhile
            misses = [i for i in misses if keys[i] not in self.cache.entries(self.expert.name)]
            yield from self._generate_recording(requests, keys, misses)

    def _generate_recording(self, requests, keys, misses) -> Iterator[tuple[int, Completion]]:
        """The misses through the model, each micro-batch recorded in one write once it is whole."""
        batches = micro_batches([requests[i] for i in misses], self.inner.batch_size)
        batch_of = {misses[j]: n for n, batch in enumerate(batches) for j in batch}
        waiting = {n: len(batch) for n, batch in enumerate(batches)}
        done: dict[int, list] = {}
        for j, completion in self.inner.iter_generate([requests[i] for i in misses]):
            i, n = misses[j], batch_of[misses[j]]
            done.setdefault(n, []).append((keys[i], completion))
            if len(done[n]) == waiting[n]:
                self.cache.put(self.expert.name, done.pop(n))
            yield i, completion

    def _hits(self, requests, keys, indices) -> Iterator[tuple[int, Completion]]:
        for i in indices:
            hit = self.cache.get(self.expert.name, keys[i])
            if hit is not None:
                self.stats.count_hit(hit)
                self._budget_used(requests[i].params.max_tokens)
                yield i, hit
