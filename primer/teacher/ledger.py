"""The teacher ledger: every answer paid for, committed to the artifact store as it arrives.

Layout: `ledgers/<name>/parts/<time_ns>-<pid>-<rand>.jsonl`, one JSON record per answer:
`{"key", "text", "finish_reason", "prompt_tokens", "completion_tokens", "model", "ts"}` (answers of the
batch mode add `"mode": "batch"` and their `"batch_id"`; its batch records live in
`ledgers/<name>/batches/`, see primer/teacher/batch.py).

Durability. Every answer is first appended to this writer's local *journal*
(`<journal_dir>/<host>-<pid>-<rand>.jsonl`, one line, flushed to the OS before `add` returns: a SIGKILL
cannot lose it), then buffered and folded into a *new* part file on the store, atomically (local: temp
file + `os.replace`; S3: a single PUT), every `commit_every` answers or `commit_interval_s` seconds. Once
everything in a journal is in a part, the journal is deleted. `load()` reads the parts and every journal:
answers found only in the journal of a writer that is gone (dead pid on this host) are folded into a part
and that journal is removed. So after a SIGKILL only the requests still in flight can be paid again,
whatever the commit batching; batching only saves store writes. Part files are never appended to or
rewritten, so a reader sees each part whole or not at all. (The journal survives a process kill, not a
lost machine: on a lost machine, the answers since the last part are lost, as before.)

Compaction: when more than `compact_above` parts exist, `compact()` writes their union as one new part and
then deletes the merged parts. A crash between the two leaves duplicates, which `load()` drops (first
record of a key wins), so it is safe at any moment and with several writers (each only deletes parts it
merged). Everything is held in memory: fine for ~10^5 answers; shard ledgers by name beyond that.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
from pathlib import Path
import time
import uuid
from typing import Any, Iterable

from primer.errors import StoreError
from primer.store import ArtifactStore

log = logging.getLogger("primer.teacher")


def record_line(record: dict[str, Any]) -> str:
    """One JSON line for a record, always encodable as UTF-8: a string holding a lone surrogate (which UTF-8
    cannot carry) is written with JSON escapes instead, which read back as the very same string."""
    line = json.dumps(record, ensure_ascii=False, sort_keys=True)
    if not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            line = json.dumps(record, sort_keys=True)
    return line + "\n"


class Ledger:
    def __init__(self, store: ArtifactStore, name: str, commit_every: int = 64, commit_interval_s: float = 5.0,
                 compact_above: int = 256, journal_dir: str | Path | None = None):
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
        self.journal_dir = Path(journal_dir) if journal_dir else default_journal_dir(store, self.name)
        self._journal: Any = None                 # this writer's open journal file
        self._journal_path: Path | None = None
        self._orphans: list[Path] = []           # journals of dead writers, removed once folded into a part
        self.recovered = 0                        # answers found only in a dead writer's journal

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
        recovered, orphans = self._read_journals(records)
        with self._lock:
            if self._records is None:
                self._records = records
                self._buffer[:0] = recovered
                self._orphans = orphans
                self.recovered = len(recovered)
            records = self._records
        if recovered or orphans:
            log.info("ledger %s: %d answer(s) recovered from the journal of a killed run", self.name,
                     len(recovered))
            self.flush()
        return records

    def _read_journals(self, records: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Path]]:
        """Add journal records to `records`; return (records only a dead writer's journal holds, its files)."""
        recovered: list[dict[str, Any]] = []
        orphans: list[Path] = []
        try:
            journals = sorted(self.journal_dir.glob("*.jsonl"))
        except OSError:
            return recovered, orphans
        for path in journals:
            if path == self._journal_path:
                continue
            dead = _writer_is_dead(path.name)
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except FileNotFoundError:
                continue
            for line in lines:
                try:
                    rec = json.loads(line)
                except ValueError:  # a line cut short by the kill: that answer was not complete
                    continue
                if rec.get("key") and rec["key"] not in records:
                    records[rec["key"]] = rec
                    if dead:
                        recovered.append(rec)
            if dead:
                orphans.append(path)
        return recovered, orphans

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

    def totals_by_mode(self) -> dict[str, tuple[int, int]]:
        """`totals()` split by the mode that paid: "online", or "batch" for records with `"mode": "batch"`
        (priced at the batch price)."""
        out: dict[str, list[int]] = {}
        recs = self.load()
        with self._lock:
            for r in recs.values():
                acc = out.setdefault(r.get("mode") or "online", [0, 0])
                acc[0] += int(r.get("prompt_tokens") or 0)
                acc[1] += int(r.get("completion_tokens") or 0)
        return {k: (v[0], v[1]) for k, v in out.items()}

    # ---- writing -------------------------------------------------------------------------------------
    def add(self, record: dict[str, Any]) -> bool:
        """Buffer one answer. Returns True when a flush is due (by count or by time)."""
        self.load()
        record = {**record, "ts": record.get("ts") or round(time.time(), 3)}
        line = record_line(record)
        with self._lock:
            assert self._records is not None
            self._journal_write(line)   # durable before anyone learns the answer arrived
            self._records.setdefault(record["key"], record)
            self._buffer.append(record)
            return len(self._buffer) >= self.commit_every or self._interval_due()

    def _journal_write(self, line: str) -> None:
        if self._journal is None:
            self.journal_dir.mkdir(parents=True, exist_ok=True)
            name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            self._journal_path = self.journal_dir / name
            self._journal = open(self._journal_path, "a", encoding="utf-8")
        self._journal.write(line)
        self._journal.flush()   # in the OS now: survives a SIGKILL of this process

    def _journal_done(self) -> None:
        """Everything journaled is in a part: drop the journal (a new one starts with the next answer)."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._journal_path is not None:
            self._journal_path.unlink(missing_ok=True)
            self._journal_path = None

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
            with self._lock:
                if not self._buffer:
                    self._journal_done()
                orphans, self._orphans = self._orphans, []
            for path in orphans:
                path.unlink(missing_ok=True)
            return len(batch)

    def _write_part(self, batch: list[dict[str, Any]]) -> str:
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        data = "".join(map(record_line, batch)).encode()
        uri = self.store.uri("ledgers", self.name, "parts", name)
        try:
            self.store.write_bytes(uri, data)
        except Exception:
            with self._lock:  # put them back so a later flush retries
                self._buffer[:0] = batch
            raise
        self.parts_written += 1
        return uri

    def close(self) -> None:
        """Commit what is buffered (and so remove this writer's journal)."""
        self.flush()

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


def default_journal_dir(store: ArtifactStore, name: str) -> Path:
    """Beside the ledger for a local store; under ~/.cache for a remote one (one folder per store root)."""
    env = os.environ.get("PRIMER_JOURNAL_DIR")
    if env:
        return Path(env) / hashlib.sha256(store.root.encode()).hexdigest()[:16] / name
    root = store.root
    if "://" not in root or root.startswith("file://"):
        return Path(store.path("ledgers", name, "journal").split("://", 1)[-1])
    return Path.home() / ".cache" / "primer" / "journal" / hashlib.sha256(root.encode()).hexdigest()[:16] / name


def _writer_is_dead(journal_name: str) -> bool:
    """A journal `<host>-<pid>-<rand>.jsonl` whose writer is not a live process on this host."""
    parts = journal_name[:-len(".jsonl")].rsplit("-", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return False          # another Ledger of this very process: alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
