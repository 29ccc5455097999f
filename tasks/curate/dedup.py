"""Global exact + near-duplicate removal, memory-bounded (datatrove's MinhashDedup, in numpy).

1. Per shard (`curate_hasher`, in the filter task): every surviving document gets a global number
   `doc = shard << 32 | row`, an exact hash of its normalized text and a MinHash signature over code-token
   shingles, cut into LSH bands. `(band, hash, doc)` records are written split into `dedup_buckets` hash
   partitions (exact hashes are band -1); the shard's signatures go to one row-addressable matrix.
2. Per partition (`bucket_edges` then `verify_edges`, one mapped task each): records with equal
   (band, hash) are candidates; each group becomes a star of edges from its smallest document. The
   partition's near candidate pairs are confirmed by estimated Jaccard right there, against the signatures
   of its own candidate documents only (read by row from the shards' signature files); pairs whose estimate
   is within `near_exact_margin` of the threshold are decided by their exact shingle-set Jaccard, from the
   texts of just those documents (read by record batch from the shards' kept files). Only confirmed pairs
   are written. A partition holds 1/K of all records and of all candidate pairs, so memory is bounded
   by choosing K.
3. Once (`cluster`): union-find over duplicate edges only, never signatures or documents. Exact groups keep
   their smallest document; confirmed near pairs are moved onto those kept copies, joined as connected
   components, and each cluster keeps its smallest document. Smallest = first in source/file order, so the
   kept copy is deterministic and independent of task scheduling and of K.

Verifying before the exact-duplicate mapping (step 2) gives the same similarities as verifying after it
(what one global step did): exact duplicates have the same normalized text, normalization changes only
whitespace, and shingles are over code tokens, which never contain whitespace, so exact duplicates have
identical signatures.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from primer.minhash import MinHasher, hash64, splitmix64
from tasks.curate.text import normalize

EXACT_BAND = -1
SHARD_SHIFT = 32
# Every LSH candidate pair is verified (its Jaccard estimated, or computed near the threshold), so a false
# positive costs one check while a false negative is a duplicate kept. Weighing misses 9:1 picks 20 bands x 6
# rows at 0.7 with 128 permutations: a pair at exactly 0.7 becomes a candidate with probability 0.92, at 0.75
# 0.98 (datasketch's 1:1 default, 14 x 9, finds 0.44 and 0.66 of them), for 21 records per document
# instead of 15.
LSH_FALSE_NEGATIVE_WEIGHT = 0.9


def by_shard(docs: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(shard, positions in `docs`, rows in that shard) for each shard holding some of these global docs."""
    shard_of, rows = docs >> SHARD_SHIFT, docs & 0xFFFFFFFF
    for sh in np.unique(shard_of).tolist():
        where = np.nonzero(shard_of == sh)[0]
        yield sh, where, rows[where]


def curate_hasher(num_perm: int, shingle_size: int, threshold: float, seed: int) -> MinHasher:
    """The MinHasher of curate's dedup (recall-weighted LSH bands, see LSH_FALSE_NEGATIVE_WEIGHT)."""
    return MinHasher(num_perm, shingle_size, threshold, seed, LSH_FALSE_NEGATIVE_WEIGHT)


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


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted, distinct shingle-hash arrays (`MinHasher.shingles`)."""
    union = len(a) + len(b)
    if not union:
        return 1.0
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (union - common)


def verify_edges(edges: dict[str, np.ndarray], load_minhash, threshold: float, verify: bool,
                 load_shingles=None, margin: float = 0.0) -> dict[str, np.ndarray]:
    """One partition's edges with its near candidate pairs confirmed: only pairs whose Jaccard is at least
    `threshold` stay, with it in `near_sim` (1.0 each when `verify` is off); `candidates` counts the pairs
    checked and `exact_checked` those decided by their exact Jaccard.

    The Jaccard is the signatures' estimate (standard error ~sqrt(J(1-J)/num_perm): 0.04 at 0.7 with 128
    permutations), except for pairs whose estimate is within `margin` of the threshold: those get their exact
    shingle-set Jaccard, so a pair just over the threshold is not lost (nor one just under it kept) on the
    estimate's noise. `load_minhash(docs: sorted int64 array) -> uint32[len(docs), num_perm]` is called once,
    for this partition's candidate documents only; `load_shingles(docs) -> [sorted uint64 array]` once, for
    the documents of the pairs near the threshold only."""
    a, b = edges["near_a"], edges["near_b"]
    sims = np.ones(len(a))
    exact = np.zeros(len(a), dtype=bool)
    if verify and len(a):
        nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
        sigs = np.asarray(load_minhash(nodes))
        sims = (sigs[inverse[: len(a)]] == sigs[inverse[len(a):]]).mean(axis=1)
        del sigs
        if load_shingles is not None and margin > 0:
            exact = np.abs(sims - threshold) < margin
    if exact.any():
        ea, eb = a[exact], b[exact]
        nodes, inverse = np.unique(np.concatenate([ea, eb]), return_inverse=True)
        shingles = load_shingles(nodes)
        sims[exact] = [exact_jaccard(shingles[i], shingles[j])
                       for i, j in zip(inverse[: len(ea)].tolist(), inverse[len(ea):].tolist())]
        del shingles
    ok = sims >= threshold
    return {"exact_a": edges["exact_a"], "exact_b": edges["exact_b"], "near_a": a[ok], "near_b": b[ok],
            "near_sim": sims[ok], "candidates": np.array(len(a), dtype=np.int64),
            "exact_checked": np.array(int(exact.sum()), dtype=np.int64)}


@dataclass
class DedupResult:
    """Removed documents and the copy each duplicates (arrays, sorted by removed doc)."""

    exact_removed: np.ndarray                  # int64 docs with the same normalized text as ...
    exact_kept: np.ndarray                     # ... this (smaller) doc
    near_removed: np.ndarray                   # int64 docs in a near-duplicate cluster ...
    near_kept: np.ndarray                      # ... whose smallest doc is this
    near_sim: np.ndarray                       # best Jaccard of the removed doc to a neighbour (verify_edges)
    candidates: int = 0
    confirmed: int = 0
    exact_checked: int = 0

    @property
    def exact(self) -> dict[int, int]:
        return dict(zip(self.exact_removed.tolist(), self.exact_kept.tolist()))

    @property
    def near(self) -> dict[int, tuple[int, float]]:
        return {d: (k, s) for d, k, s in zip(self.near_removed.tolist(), self.near_kept.tolist(),
                                             self.near_sim.tolist())}


_EMPTY = np.zeros(0, np.int64)


def _exact_groups(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(removed, kept) for exact duplicates: each removed doc keeps the smallest doc of its group."""
    if not len(b):
        return _EMPTY, _EMPTY
    order = np.lexsort((a, b))          # by removed doc, smallest head first
    a, b = a[order], b[order]
    first = np.ones(len(b), dtype=bool)
    first[1:] = b[1:] != b[:-1]
    return b[first].astype(np.int64), a[first].astype(np.int64)


def _distinct(lo: np.ndarray, hi: np.ndarray, sim: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per distinct (lo, hi) pair, sorted (a pair's similarity is the same wherever it was confirmed)."""
    order = np.lexsort((hi, lo))
    lo, hi, sim = lo[order], hi[order], sim[order]
    first = np.ones(len(lo), dtype=bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    return lo[first], hi[first], sim[first]


class _PairSet:
    """Distinct (lo, hi, sim) rows, fed partition by partition: duplicates across partitions (a pair whose
    bands hashed to several partitions) are merged whenever the pending rows outgrow the merged ones, so
    memory follows the distinct pairs, not the pairs summed over partitions."""

    def __init__(self) -> None:
        self.merged = (_EMPTY, _EMPTY, np.zeros(0))
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.pending_rows = 0

    def add(self, lo: np.ndarray, hi: np.ndarray, sim: np.ndarray) -> None:
        self.pending.append((lo, hi, sim))
        self.pending_rows += len(lo)
        if self.pending_rows > max(1 << 16, len(self.merged[0])):
            self.merge()

    def merge(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = [self.merged, *self.pending]
        self.merged = _distinct(*(np.concatenate([p[i] for p in parts]) for i in range(3)))
        self.pending, self.pending_rows = [], 0
        return self.merged


def cluster(edges: Iterable[dict[str, np.ndarray]], threshold: float) -> DedupResult:
    """Resolve every partition's verified edges (`verify_edges`, an iterable read one partition at a time)
    into removed documents: union-find over duplicate pairs only (nothing per document, no signature).

    Memory: 16 B per exact duplicate and ~24 B per distinct confirmed near pair (pairs repeated across
    partitions are merged as they arrive), then the union-find arrays over the distinct pairs. Clusters are
    connected components of the confirmed pairs after moving each pair onto the kept copies of exact
    duplicates (scipy's union-find on a sparse graph); each keeps its smallest doc, the first copy in
    source/file order, so the result does not depend on how partitions were scheduled or how many there are.
    `candidates` sums the pairs each partition checked (`exact_checked` those decided by exact Jaccard);
    `confirmed` counts distinct confirmed pairs.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    exact_a, exact_b, pairs, candidates, exact_checked = [], [], _PairSet(), 0, 0
    for e in edges:
        exact_a.append(e["exact_a"])
        exact_b.append(e["exact_b"])
        pairs.add(e["near_a"], e["near_b"], e["near_sim"])   # a < b: the head of a group is its smallest doc
        candidates += int(e["candidates"])
        exact_checked += int(e["exact_checked"])
    ex_removed, ex_kept = _exact_groups(np.concatenate(exact_a) if exact_a else _EMPTY,
                                        np.concatenate(exact_b) if exact_b else _EMPTY)
    del exact_a, exact_b
    near_a, near_b, near_sim = pairs.merge()
    del pairs
    if len(near_a) and len(ex_removed):  # near edges between exact duplicates collapse onto their kept copies
        for arr in (near_a, near_b):
            pos = np.clip(np.searchsorted(ex_removed, arr), 0, len(ex_removed) - 1)
            hit = ex_removed[pos] == arr
            arr[hit] = ex_kept[pos[hit]]
    keep = near_a != near_b
    lo, hi = np.minimum(near_a[keep], near_b[keep]), np.maximum(near_a[keep], near_b[keep])
    lo, hi, sims = _distinct(lo, hi, near_sim[keep])
    del near_a, near_b, near_sim
    empty = DedupResult(ex_removed, ex_kept, _EMPTY, _EMPTY, np.zeros(0), candidates=candidates,
                        exact_checked=exact_checked)
    if not len(lo):
        return empty
    nodes, inverse = np.unique(np.stack([lo, hi], axis=1), return_inverse=True)
    inverse = inverse.reshape(-1, 2)
    ia, ib = inverse[:, 0], inverse[:, 1]
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
                       candidates=candidates, confirmed=len(lo), exact_checked=exact_checked)
