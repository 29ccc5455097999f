"""Rows of packed token shards for training: random access from any store, deterministic per-rank batches.

The order of rows is a pure function of (seed, epoch): with `shuffle`, the shards are permuted and the rows
inside each shard are permuted (two levels, so a rank reads one shard at a time instead of jumping across
all of them); `curriculum` sorts rows by the difficulty recorded at packing time (easiest first, the same
every epoch); `sequential` is shard order. Global sample g of the run is row `order(epoch)[g % n_rows]` with epoch = g // n_rows, and
step s / rank r / micro-batch m reads samples

    g = s * batch_size + m * (micro_batch * world) + r * micro_batch + [0 .. micro_batch)

so resuming at step s needs no saved loader state, and every rank reads a disjoint slice.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

import pyarrow.parquet as pq

from model.loss import IGNORE_INDEX  # a target the loss skips
from primer.shards import DIFFICULTY, load_manifest, read_shard_columns
from primer.store import ArtifactStore

# Curriculum order visits rows by difficulty, i.e. across all shards at once: up to this many bytes of a
# split's shards stay cached so each shard is read about once per epoch, as in shuffle order.
CURRICULUM_CACHE_BYTES = 2 << 30


class ShardRows:
    """Random access to the rows of one split of a token-shard output, with a small shard cache.

    With `prompt_mask`, each shard's prompt mask is read too (`prompt_mask(i)`: True = a prompt token), for
    the loss on solution tokens only; shards packed without prompts have none (`has_prompt_mask`)."""

    def __init__(self, store: ArtifactStore, uri: str, split: str, cache_shards: int = 4, prompt_mask: bool = False):
        self.reads = 0  # whole-shard reads, for tests and benchmarks
        self.store, self.uri = store, uri.rstrip("/")
        self.manifest: dict[str, Any] = load_manifest(store, self.uri)
        info = self.manifest["splits"][split]
        self.shards: list[str] = info["shards"]
        self.n_rows: int = info["rows"]
        self.seq_len: int = self.manifest["seq_len"]
        self.rows_per_shard: int = self.manifest["config"]["rows_per_shard"]
        self.has_prompt_mask = "prompt_tokens" in info
        if prompt_mask and not self.has_prompt_mask and self.n_rows:
            raise ValueError(f"{self.uri}: these token shards record no prompt/solution boundary (packed from "
                             "no source with a prompt_column); re-pack exercises with one, or set loss_on=all")
        self.with_mask = prompt_mask and self.has_prompt_mask
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self._cache_shards = cache_shards

    def __len__(self) -> int:
        return self.n_rows

    def shard_rows(self, shard: int) -> int:
        return min(self.rows_per_shard, self.n_rows - shard * self.rows_per_shard)

    def _shard(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        rows = read_shard_columns(self.store.read_bytes(f"{self.uri}/{self.shards[index]}"), self.with_mask)
        self.reads += 1
        self._cache[index] = rows
        if len(self._cache) > self._cache_shards:
            self._cache.popitem(last=False)
        return rows

    def difficulty(self) -> np.ndarray:
        """float32 [n_rows]: every row's difficulty. Parquet column projection: only the footer and the
        difficulty column's pages are fetched (ranged reads on S3), never the token ids. (No pre-buffering:
        it coalesces ranges across holes < 8 KiB, which on small shards reads the whole file.)"""
        parts = []
        for name in self.shards:
            with self.store.fs.open(self.store.to_path(f"{self.uri}/{name}"), "rb") as f:
                table = pq.read_table(f, columns=[DIFFICULTY], pre_buffer=False)
            parts.append(table.column(DIFFICULTY).to_numpy().astype(np.float32))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def cache_whole_split(self, budget_bytes: int = CURRICULUM_CACHE_BYTES) -> bool:
        """Keep every shard once read (when the split fits the budget): for orders without shard locality."""
        if self.n_rows * self.seq_len * 4 > budget_bytes:
            return False
        self._cache_shards = max(self._cache_shards, len(self.shards))
        return True

    def row(self, i: int) -> np.ndarray:
        shard, offset = divmod(i, self.rows_per_shard)
        return self._shard(shard)[0][offset]

    def batch(self, idx: list[int]) -> np.ndarray:
        """int64 [len(idx), seq_len]: the token ids of rows `idx`, stacked."""
        return np.stack([self.row(i) for i in idx]).astype(np.int64)

    def prompt_mask(self, i: int) -> np.ndarray:
        """bool [seq_len]: which tokens of row i are prompt tokens (needs prompt_mask=True)."""
        shard, offset = divmod(i, self.rows_per_shard)
        mask = self._shard(shard)[1]
        if mask is None:
            raise ValueError(f"{self.uri}: rows were opened without their prompt mask")
        return mask[offset]


class RowOrder:
    """The deterministic order of rows for each epoch (see module docstring)."""

    def __init__(self, rows: ShardRows, seed: int, mode: str = "shuffle"):
        if mode not in ("shuffle", "sequential", "curriculum"):
            raise ValueError(f"data_order: unknown mode {mode!r}")
        self.rows, self.seed, self.mode = rows, seed, mode
        if mode == "curriculum":
            rows.cache_whole_split()
        self._epoch, self._order = -1, np.arange(0)

    def order(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            n_shards = len(self.rows.shards)
            if self.mode == "sequential":
                self._order = np.arange(len(self.rows))
            elif self.mode == "curriculum":
                self._order = np.argsort(self.rows.difficulty(), kind="stable")
            else:
                rng = np.random.default_rng([self.seed, epoch])
                parts = []
                for shard in rng.permutation(n_shards):
                    start = int(shard) * self.rows.rows_per_shard
                    parts.append(start + rng.permutation(self.rows.shard_rows(int(shard))))
                self._order = np.concatenate(parts) if parts else np.arange(0)
            self._epoch = epoch
        return self._order

    def sample(self, g: int) -> int:
        n = len(self.rows)
        return int(self.order(g // n)[g % n])


def micro_batch_rows(order: RowOrder, step: int, micro: int, rank: int, world: int, micro_batch_size: int,
                     batch_size: int) -> list[int]:
    """The row indices of (step, micro-batch index, rank)."""
    start = step * batch_size + micro * micro_batch_size * world + rank * micro_batch_size
    return [order.sample(g) for g in range(start, start + micro_batch_size)]


def loss_targets(rows: ShardRows, idx: list[int], batch: np.ndarray, loss_on: str) -> np.ndarray:
    """int64 [B, seq_len - 1] next-token targets of a batch of rows `idx`; with loss_on=solution, a target
    that is a prompt token is IGNORE_INDEX (-100): the loss counts solution tokens (and other documents'
    tokens, and the EOS that ends each document) only."""
    targets = batch[:, 1:].copy()
    if loss_on == "solution":
        targets[np.stack([rows.prompt_mask(i) for i in idx])[:, 1:]] = IGNORE_INDEX
    return targets


def eval_rows(rows: ShardRows, n_batches: int, micro_batch_size: int, rank: int, world: int) -> list[list[int]]:
    """A fixed slice of the validation split for this rank (the same rows at every evaluation)."""
    out: list[list[int]] = []
    if len(rows) == 0:
        return out
    for b in range(n_batches):
        start = (b * world + rank) * micro_batch_size
        if start >= len(rows) and b > 0:
            break
        out.append([i % len(rows) for i in range(start, start + micro_batch_size)])
    return out


def eval_batches(rows: ShardRows, n_batches: int, micro_batch_size: int, rank: int, world: int) -> list[np.ndarray]:
    """The token ids of `eval_rows`, one int64 [micro_batch_size, seq_len] array per batch."""
    return [rows.batch(idx) for idx in eval_rows(rows, n_batches, micro_batch_size, rank, world)]
