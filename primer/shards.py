"""The token-shard data contract: how packed rows are written and read.

A token-shard output (stage `pack`) is a directory with

    train-00000.parquet, train-00001.parquet, ...   `input_ids`: fixed_size_list<int32>[seq_len]
                                                      `difficulty`: float32, for curriculum ordering
                                                      `prompt_mask`: fixed_size_list<bool>[seq_len], only
                                                      when a source had prompts: True = a prompt token
    val-00000.parquet, ...
    manifest.json                                     written last (see primer.store)

Every row holds exactly `seq_len` token ids: documents joined by EOS (each document is followed by one EOS),
no padding. Concatenating a split's rows in shard order gives the split's token stream; document boundaries
are where EOS stands. Readers list shards from the manifest, never from a directory listing, so a crashed
writer's leftovers are never read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from primer.store import ArtifactStore

COLUMN = "input_ids"
DIFFICULTY = "difficulty"
PROMPT_MASK = "prompt_mask"
SPLITS = ("train", "val")


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.parquet"


def write_shard(path: Path, rows: np.ndarray, difficulty: np.ndarray | None = None,
                prompt_mask: np.ndarray | None = None) -> None:
    """rows: int32 [n_rows, seq_len] (+ float32 [n_rows] difficulty, + bool [n_rows, seq_len] prompt mask)
    -> one Parquet file (deterministic bytes)."""
    n_rows, seq_len = rows.shape
    values = pa.array(np.ascontiguousarray(rows, dtype=np.int32).reshape(-1), type=pa.int32())
    columns = {COLUMN: pa.FixedSizeListArray.from_arrays(values, seq_len)}
    if difficulty is not None:
        columns[DIFFICULTY] = pa.array(np.asarray(difficulty, dtype=np.float32), type=pa.float32())
    if prompt_mask is not None:
        flags = pa.array(np.ascontiguousarray(prompt_mask, dtype=bool).reshape(-1), type=pa.bool_())
        columns[PROMPT_MASK] = pa.FixedSizeListArray.from_arrays(flags, seq_len)
    pq.write_table(pa.table(columns), path, compression="zstd", row_group_size=max(1, n_rows))


def read_difficulty(data: bytes) -> np.ndarray:
    """The per-row difficulty column of one shard (float32 [n_rows])."""
    table = pq.read_table(pa.BufferReader(data), columns=[DIFFICULTY])
    return table.column(DIFFICULTY).to_numpy().astype(np.float32)


def read_shard_bytes(data: bytes | Path | str) -> np.ndarray:
    """One shard -> int32 [n_rows, seq_len]."""
    return read_shard_columns(data)[0]


def read_shard_columns(data: bytes | Path | str, prompt_mask: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """One shard -> (int32 [n_rows, seq_len] token ids, bool [n_rows, seq_len] prompt mask or None)."""
    source = pa.BufferReader(data) if isinstance(data, bytes) else str(data)
    table = pq.read_table(source, columns=[COLUMN, PROMPT_MASK] if prompt_mask else [COLUMN])

    def fixed(name: str, dtype) -> np.ndarray:
        column = table.column(name).combine_chunks()
        return column.values.to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(-1, column.type.list_size)

    return fixed(COLUMN, np.int32), fixed(PROMPT_MASK, bool) if prompt_mask else None


def load_manifest(store: ArtifactStore, uri: str) -> dict[str, Any]:
    """The manifest of a token-shard output (through the store's one reader: `store.read_output`)."""
    return store.read_output(uri, "pack").manifest


def iter_split(store: ArtifactStore, uri: str, split: str = "train",
               manifest: dict[str, Any] | None = None) -> Iterator[np.ndarray]:
    """Yield each shard of `split` as int32 [n_rows, seq_len], in order."""
    manifest = manifest or load_manifest(store, uri)
    base = store.resolve(uri).rstrip("/")
    for name in manifest["splits"][split]["shards"]:
        yield read_shard_bytes(store.read_bytes(f"{base}/{name}"))


def read_split(store: ArtifactStore, uri: str, split: str = "train") -> np.ndarray:
    """All rows of a split as one int32 [n_rows, seq_len] array (small data and tests)."""
    manifest = load_manifest(store, uri)
    parts = list(iter_split(store, uri, split, manifest))
    if not parts:
        return np.zeros((0, manifest["seq_len"]), dtype=np.int32)
    return np.concatenate(parts)
