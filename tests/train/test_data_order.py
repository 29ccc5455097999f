"""Curriculum order costs about what shuffle order costs: difficulty comes from the Parquet column alone,
and an epoch in difficulty order reads each shard about once (<= 1.5x the whole-shard reads of shuffle)."""

from __future__ import annotations

import io

import pyarrow.parquet as pq

from primer.config import SourceSpec, StoreConfig
from primer.shards import DIFFICULTY
from primer.store import open_store
from primer.training.data import RowOrder, ShardRows

FOOTER_READ = 64 << 10  # pyarrow reads a file's last 64 KiB to find the footer


class RangeRecorder(io.RawIOBase):
    """A read-only file that records the byte ranges pyarrow reads through it."""

    def __init__(self, f, ranges: list[tuple[int, int]]):
        self.f, self.ranges = f, ranges

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        return self.f.seek(offset, whence)

    def tell(self):
        return self.f.tell()

    def readinto(self, buffer) -> int:
        start = self.f.tell()
        data = self.f.read(len(buffer))
        buffer[:len(data)] = data
        self.ranges.append((start, start + len(data)))
        return len(data)


def test_difficulty_reads_the_footer_and_the_difficulty_column_only(pack_into_store, corpus_dir, monkeypatch):
    # Shards well over the 64 KiB footer read, so that reading the token ids would show.
    root, uri, _ = pack_into_store("bigshards", SourceSpec(uri=str(corpus_dir)), seq_len=128, rows_per_shard=1500,
                                   val_fraction=0.02)
    store = open_store(StoreConfig(root=root))
    rows = ShardRows(store, uri, "train")
    ranges: dict[str, list[tuple[int, int]]] = {}
    real_open = store.fs.open

    def recording_open(path, mode="rb", **kw):
        return RangeRecorder(real_open(path, mode, **kw), ranges.setdefault(path, []))

    monkeypatch.setattr(store.fs, "open", recording_open)
    difficulty = rows.difficulty()
    monkeypatch.undo()
    assert len(difficulty) == len(rows) and difficulty.std() > 0 and rows.reads == 0
    total = outside = big = 0
    for name in rows.shards:
        path = store.to_path(f"{uri}/{name}")
        size = store.fs.size(path)
        big += size > 2 * FOOTER_READ
        chunk = pq.ParquetFile(path).metadata.row_group(0)
        column = next(chunk.column(i) for i in range(chunk.num_columns) if chunk.column(i).path_in_schema == DIFFICULTY)
        start = column.dictionary_page_offset or column.data_page_offset
        allowed = [(start, start + column.total_compressed_size), (size - FOOTER_READ, size)]
        for a, b in ranges[path]:
            total += b - a
            outside += sum(1 for x in range(a, b) if not any(lo <= x < hi for lo, hi in allowed))
    print(f"difficulty(): {total} bytes read over {len(rows.shards)} shards, {outside} outside footer + column")
    assert big >= 2, "shards too small for this test to see a token-id read"
    assert total and outside == 0


def test_curriculum_epoch_reads_each_shard_about_once(pack_into_store, corpus_dir):
    root, uri, _ = pack_into_store("manyshards", SourceSpec(uri=str(corpus_dir)), seq_len=64, rows_per_shard=40,
                                   val_fraction=0.05)
    store = open_store(StoreConfig(root=root))

    def reads_for_one_epoch(mode: str) -> tuple[int, int]:
        split = ShardRows(store, uri, "train")
        order = RowOrder(split, seed=0, mode=mode)
        for g in range(len(split)):
            split.row(order.sample(g))
        return split.reads, len(split.shards)

    (shuffle, n_shards), (curriculum, _) = reads_for_one_epoch("shuffle"), reads_for_one_epoch("curriculum")
    assert n_shards >= 8, "want many shards, so that reading order matters"
    assert shuffle == n_shards
    assert curriculum <= 1.5 * shuffle, (curriculum, shuffle)
