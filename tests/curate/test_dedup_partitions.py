"""Near-dedup partitioned for scale: pairs are verified in the mapped partition tasks, the single cluster
step does union-find over the verified duplicate edges only, and the kept set does not depend on the number
of partitions (`curate.dedup_buckets`)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from primer.config import StoreConfig
from primer.store import open_store
from tasks.curate import dedup as dd
from tasks.curate.work import read_arrow_rows, read_npy_rows, write_table_bytes
from tests.curate.conftest import STDLIB, reindent, rename

PACKAGES = ("json", "html", "http", "wsgiref")
# originals (relative to STDLIB) copied, each with a renamed + re-indented copy elsewhere in the tree
RENAME = {"value": "val", "name": "label"}  # estimated Jaccard 0.90-0.98 with the original
# estimated Jaccard 0.69, exact 0.71: a near duplicate only when decided by the texts (test_dedup_exact.py)
BORDERLINE = ("encodings/utf_16.py", "encodings/utf_32.py")
NEAR = ("json/decoder.py", "json/encoder.py", "html/parser.py", "http/cookies.py", "wsgiref/handlers.py",
        "wsgiref/validate.py")


@pytest.mark.parametrize("rows", [[], [0], [3, 4, 5, 6], [1, 7, 500, 501, 998, 999], list(range(0, 1000, 3))])
def test_read_npy_rows_reads_only_the_wanted_rows(store_cfg, rows):
    store = open_store(store_cfg)
    matrix = np.random.default_rng(0).integers(0, 2**32, size=(1000, 128), dtype=np.uint32)
    buf = io.BytesIO()
    np.save(buf, matrix)
    uri = store.uri("t", "minhash.npy")
    store.write_bytes(uri, buf.getvalue())
    got = read_npy_rows(store, uri, np.array(rows, dtype=np.int64))
    assert got.shape == (len(rows), 128) and got.dtype == np.uint32
    assert (got == matrix[rows]).all()


@pytest.mark.parametrize("batch_bytes", [0, 1, 100, 1_000_000])
def test_read_arrow_rows_by_record_batch(store_cfg, batch_bytes):
    """Rows of a kept file, from the record batches that hold them (or the whole file when written unbatched)."""
    import pyarrow as pa

    store = open_store(store_cfg)
    texts = [f"text {i} " * (i % 7) for i in range(1000)]                   # 0 to ~60 bytes each
    table = pa.table({"id": [f"f{i}" for i in range(1000)], "text": texts})
    uri = store.uri("t", "kept.arrow")
    store.write_bytes(uri, write_table_bytes(table, batch_bytes))
    reader = pa.ipc.open_file(pa.BufferReader(store.read_bytes(uri)))
    batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
    assert pa.Table.from_batches(batches).equals(table.replace_schema_metadata(reader.schema.metadata))
    if batch_bytes in (0, 1_000_000):
        assert len(batches) == 1
    else:  # each batch within the size, or one larger row (and empty ones); batches as few as that allows
        sizes = [sum(map(len, b.column("text").to_pylist())) for b in batches]
        assert all(n <= batch_bytes or sum(map(bool, b.column("text").to_pylist())) == 1
                   for n, b in zip(sizes, batches))
        assert all(a + b > batch_bytes for a, b in zip(sizes, sizes[1:]))
    for rows in ([], [0], [999, 0, 64, 63, 500], list(range(3, 1000, 97))):
        assert read_arrow_rows(store, uri, np.array(rows, dtype=np.int64), "text") == [texts[r] for r in rows]


def _texts() -> list[list[str]]:
    """Three shards of real files: originals, their near copies, exact copies (CRLF + trailing spaces) of an
    original and of a near copy, so exact and near clusters overlap across shards."""
    originals = [(STDLIB / rel).read_text() for rel in NEAR]
    near = ["# vendored\n" + reindent(rename(t, RENAME)) for t in originals]
    crlf = [("\r\n".join(ln + "  " for ln in t.splitlines())) for t in (originals[0], near[2])]
    others = [p.read_text() for p in sorted((STDLIB / "email").glob("*.py"))[:12]]
    return [originals[:3] + others[:6], near[3:] + others[6:] + crlf[:1], near[:3] + originals[3:] + crlf[1:]]


def _dedup(shards: list[list[str]], buckets: int) -> dd.DedupResult:
    hasher = dd.curate_hasher(128, 5, 0.7, seed=1)
    sigs = [dd.build_signatures(t, hasher, True) for t in shards]
    parts = [dd.bucket_records(s, sg, buckets, True) for s, sg in enumerate(sigs)]
    loaded: list[int] = []

    def load(docs):
        loaded.extend(docs.tolist())
        return np.stack([sigs[d >> dd.SHARD_SHIFT].minhash[d & 0xFFFFFFFF] for d in docs.tolist()])

    edges = [dd.verify_edges(dd.bucket_edges([dd.from_npz(p[k]) for p in parts]), load, 0.7, True)
             for k in range(buckets)]
    n_docs = sum(len(t) for t in shards)
    assert 0 < len(set(loaded)) < n_docs  # each partition fetched its candidates' signatures, not every doc's
    return dd.cluster(edges, 0.7)


def test_partitioned_verification_does_not_depend_on_the_number_of_partitions():
    shards = _texts()
    results = {k: _dedup(shards, k) for k in (1, 2, 5, 16)}
    first = results[1]
    doc = lambda s, r: (s << dd.SHARD_SHIFT) | r  # noqa: E731
    # the planted cases: exact copy of an original and of a near copy; six near copies of originals
    assert first.exact == {doc(1, 9): doc(0, 0), doc(2, 6): doc(2, 2)}
    # near copies in shard 2 lose to their originals in shard 0; originals in shard 2 to their copies in shard 1
    assert set(first.near) == {doc(2, r) for r in range(6)}
    assert {d: k for d, (k, _) in first.near.items()} == {doc(2, 0): doc(0, 0), doc(2, 1): doc(0, 1),
                                                          doc(2, 2): doc(0, 2), doc(2, 3): doc(1, 0),
                                                          doc(2, 4): doc(1, 1), doc(2, 5): doc(1, 2)}
    assert all(sim >= 0.7 for _, sim in first.near.values())
    for k, r in results.items():
        assert r.exact == first.exact, k
        assert r.near == first.near, k                      # same kept copy and same similarity
        assert r.confirmed == first.confirmed, k


def _overrides(corpus: Path, root: Path, buckets: int) -> dict:
    return {"store.root": str(root), "curate.sources": [{"uri": str(corpus)}], "curate.max_docs": 0,
            "curate.annotate_n": 0, "curate.decontaminate": False, "curate.shard_bytes": 60_000,
            "curate.dedup_buckets": buckets, "curate.keep_work": True}


@pytest.fixture(scope="module")
def dup_corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dedup-corpus")
    for pkg in PACKAGES:
        for path in sorted((STDLIB / pkg).glob("*.py")):
            dest = root / pkg / path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
    for rel in BORDERLINE:
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(STDLIB / rel, dest)
    copies = root / "zz_copies"
    copies.mkdir()
    for i, rel in enumerate(NEAR):
        near = "# vendored\n" + reindent(rename((STDLIB / rel).read_text(), RENAME))
        (copies / f"near_{i}.py").write_text(near)
        if i % 2:  # and an exact copy (CRLF line ends) of that near copy, first in file order
            (copies / f"a_exact_{i}.py").write_bytes(near.replace("\n", "\r\n").encode())
    return root


def _files(uri: str) -> dict[str, str]:
    manifest = json.loads(Path(uri, "manifest.json").read_text())
    return {f["name"]: f["sha256"] for f in manifest["files"] if f["name"].startswith(("data/", "exclusions/"))}


@pytest.mark.usefixtures("prefect_harness")
def test_curate_output_and_cluster_input_whatever_the_partitions(dup_corpus, tmp_path, monkeypatch):
    """(a) 1, 4 and 16 partitions give the same documents and exclusions, byte for byte; (b) the cluster step
    reads the partitions' verified edges and the shards' id tables, nothing else: with every signature,
    text and record file of the work area deleted it rebuilds the same removed tables."""
    from flows.curate import curate
    from primer.settings.curate import CurateConfig
    from tasks.curate import stages
    from tasks.curate.work import Work
    import pyarrow.parquet as pq

    uris = {k: curate("tiny", _overrides(dup_corpus, tmp_path / f"k{k}", k)) for k in (1, 4, 16)}
    files = {k: _files(u) for k, u in uris.items()}
    assert files[4] == files[1] and files[16] == files[1]
    excl = {r["id"]: r for f in sorted(files[1]) if f.startswith("exclusions/")
            for r in pq.read_table(Path(uris[1], f)).to_pylist()}
    for i, rel in enumerate(NEAR):
        near = excl[f"zz_copies/{'a_exact' if i % 2 else 'near'}_{i}.py"]
        assert near["reason"] == "near_duplicate" and near["duplicate_of"].endswith(rel), near
        if i % 2:  # the exact copy came first: it is the near duplicate, the near copy its exact duplicate
            assert excl[f"zz_copies/near_{i}.py"]["reason"] == "exact_duplicate"
            assert excl[f"zz_copies/near_{i}.py"]["duplicate_of"].endswith(f"a_exact_{i}.py")
    border = excl[BORDERLINE[1]]
    assert border["reason"] == "near_duplicate" and border["duplicate_of"].endswith(BORDERLINE[0]), border
    assert border["detail"].startswith("Jaccard 0.71 with"), border
    kept = sum(1 for f in files[1] if f.startswith("data/"))
    assert kept > 2  # several shards, so pairs and signatures cross shards

    # (b) rerun the cluster unit of the 4-partition run on a work area holding only edges and id tables
    k, root = 4, tmp_path / "k4"
    store_cfg = StoreConfig(root=str(root))
    store = open_store(store_cfg)
    key = Path(uris[k]).name
    work_dir = Path(root, "curate-work", key)
    before = {p.name: p.read_bytes() for p in (work_dir / "dedup").glob("removed-*.arrow")}
    assert before
    for p in list((work_dir / "dedup").iterdir()):
        if not p.name.startswith("edges-"):
            p.unlink()
    for p in list((work_dir / "shards").rglob("*")):
        if p.is_file() and p.name != "ids.arrow":
            p.unlink()
    reads: list[str] = []
    real_read = type(store).read_bytes
    monkeypatch.setattr(type(store), "read_bytes", lambda self, uri: (reads.append(uri), real_read(self, uri))[1])
    cfg = CurateConfig(dedup_buckets=k)
    shards = sorted(int(p.name) for p in (work_dir / "shards").iterdir())
    summary = stages.dedup_cluster(shards, cfg, key, store_cfg)
    after = {p.name: p.read_bytes() for p in (work_dir / "dedup").glob("removed-*.arrow")}
    assert after == before
    assert summary["near_duplicates"] >= len(NEAR) and summary["exact_duplicates"] >= len(NEAR) // 2
    rel = [u[len(Work(store, key).uri) + 1:] for u in reads]
    assert {r.split("/")[-1] for r in rel} <= {f"edges-{b:04d}.npz" for b in range(k)} | {"ids.arrow"}, rel
    assert sum(r.startswith("dedup/edges-") for r in rel) == k


def test_cluster_merges_pairs_repeated_across_partitions():
    """Many partitions repeating each other's pairs (as bands hashed apart do): the incremental merge gives
    the distinct pairs of the whole concatenation, whatever the partition order."""
    rng = np.random.default_rng(1)
    lo = rng.integers(0, 50_000, size=120_000)
    hi = lo + rng.integers(1, 1_000, size=len(lo))
    sim = (lo * 7 + hi) % 29 / 100 + 0.7                    # a function of the pair, as a real similarity is
    order = rng.permutation(np.repeat(np.arange(len(lo)), 3))   # every pair in three partitions
    chunks = np.array_split(order, 40)
    want = dd._distinct(lo, hi, sim)
    for chunks_in in (chunks, chunks[::-1]):
        edges = [{"exact_a": np.zeros(0, np.int64), "exact_b": np.zeros(0, np.int64), "near_a": lo[c],
                  "near_b": hi[c], "near_sim": sim[c], "candidates": np.array(len(c)),
                  "exact_checked": np.array(0)} for c in chunks_in]
        result = dd.cluster(iter(edges), 0.7)
        assert result.confirmed == len(want[0]) and result.candidates == len(order)
        pairs = dd._PairSet()
        for e in edges:
            pairs.add(e["near_a"], e["near_b"], e["near_sim"])
        got = pairs.merge()
        assert all((g == w).all() for g, w in zip(got, want))
