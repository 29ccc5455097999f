"""The teacher ledger: every answer paid for, committed to the artifact store as it arrives.

Layout: `ledgers/<name>/parts/<time_ns>-<pid>-<rand>.jsonl`, one JSON record per answer:
`{"key", "text", "finish_reason", "prompt_tokens", "completion_tokens", "model", "ts"}`.

Commit protocol. Answers are buffered in memory and written as a *new* part file, atomically (local: temp
file + `os.replace`; S3: a single PUT), every `commit_every` answers or `commit_interval_s` seconds,
whichever comes first (the teacher runs a timer so a quiet buffer is flushed too). Part files are never
appended to or rewritten, so a reader sees each part whole or not at all; only answers are written, never
the in-flight set, so a request is "done" exactly when its answer is in a committed part.

What a SIGKILL costs: the answers still in the buffer (at most `commit_every - 1` plus those that arrived
within the last `commit_interval_s`) and the answers delivered over the wire but not yet handed to the
ledger (at most `concurrency`). Those keys are requested again on the next run; every committed key never
is. `commit_every=1` narrows the loss to the wire window at the price of one store write per answer.

Compaction: when more than `compact_above` parts exist, `compact()` writes their union as one new part and
then deletes the merged parts. A crash between the two leaves duplicates, which `load()` drops (first
record of a key wins), so it is safe at any moment and with several writers (each only deletes parts it
merged). Everything is held in memory: fine for ~10^5 answers; shard ledgers by name beyond that.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from typing import Any, Iterable

from primer.errors import StoreError
from primer.store import ArtifactStore

log = logging.getLogger("primer.teacher")


class Ledger:
    def __init__(self, store: ArtifactStore, name: str, commit_every: int = 8, commit_interval_s: float = 1.0,
                 compact_above: int = 256):
        if not name or ".." in name:
            raise StoreError(f"ledger name {name!r}: expected a simple name like 'synthesize'")
        self.store, self.name = store, name.strip("/")
        self.commit_every = max(1, int(commit_every))
        self.commit_interval_s = float(commit_interval_s)
        self.compact_above = compact_above
        self.uri = store.uri("ledgers", self.name)
        self._parts_path = store.path("ledgers", self.name, "parts")
        self._records: dict[str, dict[str, Any]] | None = None
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()          # guards _records and _buffer
        self._io_lock = threading.Lock()       # one part write at a time
        self._last_flush = time.monotonic()
        self.parts_written = 0

    # ---- reading -------------------------------------------------------------------------------------
    def _list_parts(self) -> list[str]:
        fs = self.store.fs
        try:
            names = fs.ls(self._parts_path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(p for p in names if p.rsplit("/", 1)[-1].endswith(".jsonl")
                      and not p.rsplit("/", 1)[-1].startswith(".tmp-"))

    def load(self) -> dict[str, dict[str, Any]]:
        """Read every committed part (idempotent; the first call reads the store)."""
        with self._lock:
            if self._records is not None:
                return self._records
        records: dict[str, dict[str, Any]] = {}
        for part in self._list_parts():
            try:
                data = self.store.fs.cat_file(part)
            except FileNotFoundError:  # compacted away by another writer: its records are in a newer part
                continue
            for line in data.splitlines():
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    log.warning("ledger %s: skipping an unreadable line in %s", self.name, part)
                    continue
                records.setdefault(rec["key"], rec)
        with self._lock:
            if self._records is None:
                self._records = records
            return self._records

    def reload(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            self._records = None
        return self.load()

    def get(self, key: str) -> dict[str, Any] | None:
        return self.load().get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.load()

    def __len__(self) -> int:
        return len(self.load())

    def records(self) -> Iterable[dict[str, Any]]:
        return list(self.load().values())

    def totals(self) -> tuple[int, int]:
        """(prompt_tokens, completion_tokens) over every answer known (committed or buffered)."""
        recs = self.load()
        with self._lock:
            return (sum(int(r.get("prompt_tokens") or 0) for r in recs.values()),
                    sum(int(r.get("completion_tokens") or 0) for r in recs.values()))

    # ---- writing -------------------------------------------------------------------------------------
    def add(self, record: dict[str, Any]) -> bool:
        """Buffer one answer. Returns True when a flush is due (by count or by time)."""
        self.load()
        record = {**record, "ts": record.get("ts") or round(time.time(), 3)}
        with self._lock:
            assert self._records is not None
            self._records.setdefault(record["key"], record)
            self._buffer.append(record)
            return len(self._buffer) >= self.commit_every or self._interval_due()

    def _interval_due(self) -> bool:
        return bool(self._buffer) and time.monotonic() - self._last_flush >= self.commit_interval_s

    def flush_due(self) -> bool:
        with self._lock:
            return len(self._buffer) >= self.commit_every or self._interval_due()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def flush(self) -> int:
        """Commit the buffered answers as one new part file. Returns how many were committed."""
        with self._io_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
                self._last_flush = time.monotonic()
            if not batch:
                return 0
            self._write_part(batch)
            return len(batch)

    def _write_part(self, batch: list[dict[str, Any]]) -> str:
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in batch).encode()
        uri = self.store.uri("ledgers", self.name, "parts", name)
        try:
            self.store.write_bytes(uri, data)
        except Exception:
            with self._lock:  # put them back so a later flush retries
                self._buffer[:0] = batch
            raise
        self.parts_written += 1
        return uri

    def compact(self, force: bool = False) -> int:
        """Merge every committed part into one (see module docs). Returns the number of parts merged."""
        self.flush()
        parts = self._list_parts()
        if len(parts) < 2 or (not force and len(parts) <= self.compact_above):
            return 0
        seen: dict[str, dict[str, Any]] = {}
        merged = []
        for part in parts:
            try:
                data = self.store.fs.cat_file(part)
            except FileNotFoundError:
                continue
            merged.append(part)
            for line in data.splitlines():
                if line.strip():
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    seen.setdefault(rec["key"], rec)
        if len(merged) < 2:
            return 0
        with self._io_lock:
            self._write_part(list(seen.values()))
            for part in merged:
                try:
                    self.store.fs.rm(part)
                except FileNotFoundError:
                    pass
        return len(merged)
