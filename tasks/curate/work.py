"""The curate run's work area, `curate-work/<key>/` on the store, and the small readers over it.

    shards/<s>/kept.arrow, ids.arrow, drops.arrow, minhash.npy, bucket-<k>.npz, _SUCCESS.json  (filter_shard)
    dedup/edges-<k>.npz                                                      (dedup_bucket: verified edges)
    dedup/removed-<s>.arrow, dedup/_SUCCESS.json                                    (dedup_cluster)
    annotate/_SUCCESS.json                                                          (annotate_sample)
    final/<s>.json                                                                  (finalize_shard)

Every unit writes its files first and its marker last, each file committed atomically, so a re-run skips
every finished unit and redoes only unfinished ones. Deleted after success unless `curate.keep_work`.
A `Work` is rebuilt from (store settings, key) inside each task: nothing process-local crosses tasks.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from primer.store import ArtifactStore


def shard_name(s: int) -> str:
    return f"{s:05d}"


class Work:
    """Paths of one curate run's work area."""

    def __init__(self, store: ArtifactStore, key: str):
        self.store, self.key = store, key
        self.uri = store.uri("curate-work", key)

    def shard(self, s: int, name: str) -> str:
        return f"{self.uri}/shards/{shard_name(s)}/{name}"

    def at(self, *parts: str) -> str:
        return "/".join([self.uri, *parts])

    def marker(self, uri: str) -> dict[str, Any] | None:
        return self.store.read_json(uri) if self.store.exists(uri) else None

    def remove(self) -> None:
        try:
            self.store.fs.rm(self.store.to_path(self.uri), recursive=True)
        except FileNotFoundError:
            pass


BATCH_STARTS = b"batch_starts"


def write_table_bytes(table: pa.Table, batch_bytes: int = 0, sized_by: str = "text") -> bytes:
    """An Arrow IPC file (work files: fast to write and to read back whole). With `batch_bytes`, consecutive rows
    go in record batches of about that many bytes of `sized_by` (a larger row alone), and the schema lists
    each batch's first row, so `read_arrow_rows` can read a few rows without the rest."""
    sink = io.BytesIO()
    starts = [0]
    if batch_bytes and table.num_rows:
        size = 0
        for row, n in enumerate(pc.binary_length(table[sized_by]).to_numpy(zero_copy_only=False).tolist()):
            if size and size + n > batch_bytes:
                starts.append(row)
                size = 0
            size += n
        meta = {**(table.schema.metadata or {}), BATCH_STARTS: ",".join(map(str, starts)).encode()}
        table = table.replace_schema_metadata(meta).combine_chunks()
    with pa.ipc.new_file(sink, table.schema) as w:
        for lo, hi in zip(starts, [*starts[1:], table.num_rows]):
            w.write_table(table.slice(lo, hi - lo))
    return sink.getvalue()


def read_arrow(store: ArtifactStore, uri: str) -> pa.Table:
    return pa.ipc.open_file(pa.BufferReader(store.read_bytes(uri))).read_all()


def read_arrow_rows(store: ArtifactStore, uri: str, rows: np.ndarray, column: str) -> list[Any]:
    """`column` at `rows` of an IPC file written with `batch_bytes`, reading only the record batches that hold
    them (ranged reads on object storage); a file without batch starts is read whole."""
    rows = np.asarray(rows, dtype=np.int64)
    # small blocks: object stores' file objects read ahead megabytes by default, for one ~32 kB batch
    with store.fs.open(store.to_path(uri), "rb", block_size=1 << 16) as f:
        reader = pa.ipc.open_file(f)
        listed = (reader.schema.metadata or {}).get(BATCH_STARTS)
        if listed is None or reader.num_record_batches != len(listed.split(b",")):
            return reader.read_all().column(column).take(pa.array(rows)).to_pylist()
        starts = np.array(listed.split(b","), dtype=np.int64)
        batch_of = np.searchsorted(starts, rows, side="right") - 1
        out: list[Any] = [None] * len(rows)
        for b in np.unique(batch_of).tolist():
            values = reader.get_batch(b).column(column)
            for i in np.nonzero(batch_of == b)[0].tolist():
                out[i] = values[int(rows[i] - starts[b])].as_py()
        return out


def read_npy_rows(store: ArtifactStore, uri: str, rows: np.ndarray, gap_bytes: int = 1 << 16) -> np.ndarray:
    """Rows `rows` (sorted) of a 2-D `.npy` matrix in the store, without reading the rest of it: the header,
    then one ranged read per run of wanted rows (runs closer than `gap_bytes` are read as one)."""
    with store.fs.open(store.to_path(uri), "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if fortran or len(shape) != 2:
            raise ValueError(f"{uri}: expected a C-ordered 2-D matrix, found shape {shape}")
        offset, width = f.tell(), shape[1] * dtype.itemsize
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), shape[1]), dtype=dtype)
        if not len(rows):
            return out
        breaks = np.nonzero(np.diff(rows) * width > gap_bytes)[0] + 1
        for run in np.split(np.arange(len(rows)), breaks):
            lo, hi = int(rows[run[0]]), int(rows[run[-1]]) + 1
            f.seek(offset + lo * width)
            block = np.frombuffer(f.read((hi - lo) * width), dtype=dtype).reshape(hi - lo, shape[1])
            out[run] = block[rows[run] - lo]
        return out


def load_removed(store: ArtifactStore, work: Work, s: int) -> dict[int, tuple[str, str, str]]:
    """Rows of shard `s` that dedup removed: row -> (reason, detail, duplicate_of)."""
    t = read_arrow(store, work.at("dedup", f"removed-{shard_name(s)}.arrow")).to_pylist()
    return {r["row"]: (r["reason"], r["detail"], r["duplicate_of"]) for r in t}


def pick_sample(shard_stats: list[dict[str, Any]], removed: dict[int, set[int]], n: int) -> list[tuple[int, int]]:
    """The n documents with the smallest sample keys among dedup survivors: [(shard, row)], deterministic."""
    cands = []
    for st in shard_stats:
        s = st["shard"]
        gone = removed.get(s, set())
        cands += [(k, s, r) for k, r in st["sample"] if r not in gone]
    cands.sort()
    return [(s, r) for _, s, r in cands[:n]]


def fetch_docs(store: ArtifactStore, work: Work, picks: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """The kept rows at (shard, row) positions, in the order asked."""
    by: dict[int, list[int]] = {}
    for s, r in picks:
        by.setdefault(s, []).append(r)
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for s, rs in by.items():
        t = read_arrow(store, work.shard(s, "kept.arrow"))
        sub = t.take(pa.array(rs, pa.int64())).to_pylist()
        for r, row in zip(rs, sub):
            rows[(s, r)] = {**row, "shard": s, "row": r}
    return [rows[p] for p in picks]
