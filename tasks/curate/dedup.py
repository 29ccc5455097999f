"""Global exact + near-duplicate removal, memory-bounded (datatrove's MinhashDedup, in numpy).

1. Per shard (`MinHasher`, in the filter task): every surviving document gets a global number
   `doc = shard << 32 | row`, an exact hash of its normalized text and a MinHash signature over code-token
   shingles, cut into LSH bands. `(band, hash, doc)` records are written split into `dedup_buckets` hash
   partitions (exact hashes are band -1).
2. Per partition (`bucket_edges`, one mapped task each): records with equal (band, hash) are candidates;
   each group becomes a star of edges from its smallest document. A partition holds 1/K of all records, so
   memory is bounded by choosing K.
3. Once (`cluster`): exact groups keep their smallest document; near-duplicate candidate pairs are
   confirmed by estimated Jaccard (signatures read back only for documents in candidate pairs), joined with
   union-find, and each cluster keeps its smallest document. Smallest = first in source/file order, so the
   kept copy is deterministic and independent of task scheduling.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from primer.minhash import MinHasher, optimal_bands, splitmix64  # noqa: F401  (MinHasher, optimal_bands: re-exported)
from tasks.curate.text import hash64, normalize

EXACT_BAND = -1
SHARD_SHIFT = 32


def exact_hash(text: str) -> int:
    return hash64(normalize(text))


@dataclass
class Signatures:
    """One shard's dedup records."""

    rows: np.ndarray        # int64 [n]
    exact: np.ndarray       # uint64 [n]
    bands: np.ndarray       # uint64 [n, bands]
    minhash: np.ndarray     # uint32 [n, num_perm]


def build_signatures(texts: list[str], hasher: MinHasher, near: bool) -> Signatures:
    n = len(texts)
    exact = np.array([exact_hash(t) for t in texts], dtype=np.uint64)
    if near and n:
        mh = np.stack([hasher.signature(t) for t in texts])
        bands = hasher.band_hashes(mh)
    else:
        mh = np.zeros((n, 0), dtype=np.uint32)
        bands = np.zeros((n, 0), dtype=np.uint64)
    return Signatures(np.arange(n, dtype=np.int64), exact, bands, mh)


def bucket_records(shard: int, sigs: Signatures, buckets: int, exact: bool) -> list[bytes]:
    """Split a shard's (band, hash, doc) records into `buckets` partitions; .npz bytes per partition."""
    docs = (np.int64(shard) << SHARD_SHIFT) | sigs.rows
    parts_band, parts_hash, parts_doc = [], [], []
    if exact:
        parts_band.append(np.full(len(docs), EXACT_BAND, dtype=np.int16))
        parts_hash.append(sigs.exact)
        parts_doc.append(docs)
    nb = sigs.bands.shape[1]
    if nb:
        parts_band.append(np.tile(np.arange(nb, dtype=np.int16), len(docs)))
        parts_hash.append(sigs.bands.reshape(-1))
        parts_doc.append(np.repeat(docs, nb))
    band = np.concatenate(parts_band) if parts_band else np.zeros(0, np.int16)
    hsh = np.concatenate(parts_hash) if parts_hash else np.zeros(0, np.uint64)
    doc = np.concatenate(parts_doc) if parts_doc else np.zeros(0, np.int64)
    which = (splitmix64(hsh ^ band.astype(np.uint64)) % np.uint64(buckets)).astype(np.int64)
    out = []
    for k in range(buckets):
        sel = which == k
        out.append(to_npz(band=band[sel], hash=hsh[sel], doc=doc[sel]))
    return out


def to_npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def from_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def bucket_edges(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Edges (head, member) of every group of equal (band, hash): exact ones and near-duplicate candidates."""
    if not parts:
        empty = np.zeros(0, np.int64)
        return {"exact_a": empty, "exact_b": empty, "near_a": empty, "near_b": empty}
    band = np.concatenate([p["band"] for p in parts])
    hsh = np.concatenate([p["hash"] for p in parts])
    doc = np.concatenate([p["doc"] for p in parts])
    order = np.lexsort((doc, hsh, band))
    band, hsh, doc = band[order], hsh[order], doc[order]
    same = np.zeros(len(doc), dtype=bool)
    if len(doc) > 1:
        same[1:] = (band[1:] == band[:-1]) & (hsh[1:] == hsh[:-1])
    # head of each run = index of its first element
    starts = np.where(~same)[0]
    run_id = np.cumsum(~same) - 1
    head = doc[starts[run_id]]
    member = same
    is_exact = band == EXACT_BAND
    a, b = head[member], doc[member]
    ex = is_exact[member]
    near_a, near_b = a[~ex], b[~ex]
    if len(near_a):  # the same pair found in several bands: keep one
        pairs = np.unique(np.stack([near_a, near_b], axis=1), axis=0)
        near_a, near_b = pairs[:, 0], pairs[:, 1]
    return {"exact_a": a[ex], "exact_b": b[ex], "near_a": near_a, "near_b": near_b}


@dataclass
class DedupResult:
    """Removed documents and the copy each duplicates (arrays, sorted by removed doc)."""

    exact_removed: np.ndarray                  # int64 docs with the same normalized text as ...
    exact_kept: np.ndarray                     # ... this (smaller) doc
    near_removed: np.ndarray                   # int64 docs in a near-duplicate cluster ...
    near_kept: np.ndarray                      # ... whose smallest doc is this
    near_sim: np.ndarray                       # best estimated Jaccard of the removed doc to a neighbour
    candidates: int = 0
    confirmed: int = 0

    @property
    def exact(self) -> dict[int, int]:
        return dict(zip(self.exact_removed.tolist(), self.exact_kept.tolist()))

    @property
    def near(self) -> dict[int, tuple[int, float]]:
        return {d: (k, s) for d, k, s in zip(self.near_removed.tolist(), self.near_kept.tolist(),
                                             self.near_sim.tolist())}


_EMPTY = np.zeros(0, np.int64)


def _exact_groups(edges: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(removed, kept) for exact duplicates: each removed doc keeps the smallest doc of its group."""
    a = np.concatenate([e["exact_a"] for e in edges]) if edges else _EMPTY
    b = np.concatenate([e["exact_b"] for e in edges]) if edges else _EMPTY
    if not len(b):
        return _EMPTY, _EMPTY
    order = np.lexsort((a, b))          # by removed doc, smallest head first
    a, b = a[order], b[order]
    first = np.ones(len(b), dtype=bool)
    first[1:] = b[1:] != b[:-1]
    return b[first].astype(np.int64), a[first].astype(np.int64)


def cluster(edges: list[dict[str, np.ndarray]], load_minhash, threshold: float, verify: bool) -> DedupResult:
    """Resolve edges from every partition into removed documents, in arrays over duplicate pairs only.

    `load_minhash(docs: sorted int64 array) -> uint32[len(docs), num_perm]` fetches signatures for candidate
    documents only (shard by shard), so memory follows the number of candidate pairs, never of documents:
    16 bytes per pair plus one signature per candidate document. Clusters are connected components of the
    confirmed pairs (scipy's union-find on a sparse graph); each keeps its smallest doc, the first copy in
    source/file order, so the result does not depend on how partitions were scheduled.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ex_removed, ex_kept = _exact_groups(edges)
    near_a = np.concatenate([e["near_a"] for e in edges]) if edges else _EMPTY
    near_b = np.concatenate([e["near_b"] for e in edges]) if edges else _EMPTY
    if len(near_a) and len(ex_removed):  # near edges between exact duplicates collapse onto their kept copies
        for arr in (near_a, near_b):
            pos = np.clip(np.searchsorted(ex_removed, arr), 0, len(ex_removed) - 1)
            hit = ex_removed[pos] == arr
            arr[hit] = ex_kept[pos[hit]]
    keep = near_a != near_b
    lo, hi = np.minimum(near_a[keep], near_b[keep]), np.maximum(near_a[keep], near_b[keep])
    pairs = np.unique(np.stack([lo, hi], axis=1), axis=0) if len(lo) else np.zeros((0, 2), np.int64)
    empty = DedupResult(ex_removed, ex_kept, _EMPTY, _EMPTY, np.zeros(0), candidates=len(pairs))
    if not len(pairs):
        return empty
    nodes, inverse = np.unique(pairs, return_inverse=True)
    inverse = inverse.reshape(pairs.shape)
    sims = np.ones(len(pairs))
    if verify:
        sigs = np.asarray(load_minhash(nodes))
        sims = (sigs[inverse[:, 0]] == sigs[inverse[:, 1]]).mean(axis=1)
        del sigs
    ok = sims >= threshold
    if not ok.any():
        empty.candidates = len(pairs)
        return empty
    ia, ib, sims = inverse[ok, 0], inverse[ok, 1], sims[ok]
    n = len(nodes)
    graph = coo_matrix((np.ones(len(ia), dtype=np.int8), (ia, ib)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    root = np.full(label.max() + 1, n, dtype=np.int64)
    np.minimum.at(root, label, np.arange(n))        # nodes are sorted: the smallest index is the smallest doc
    best = np.zeros(n)
    np.maximum.at(best, ib, sims)                   # best similarity seen by the larger doc of each pair
    removed = np.nonzero(root[label] != np.arange(n))[0]
    best = np.where(best[removed] > 0, best[removed], threshold)
    return DedupResult(ex_removed, ex_kept, nodes[removed], nodes[root[label[removed]]], best,
                       candidates=len(pairs), confirmed=int(ok.sum()))
