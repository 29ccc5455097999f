"""MinHash signatures and the stable 64-bit hashes under them, shared by the stages that measure or remove
near-duplicates (curate's global dedup, synthesize's near-duplicate rate of generated textbooks).

Code tokens -> per-token 64-bit hashes (blake2b, memoized) -> order-sensitive n-gram shingle hashes ->
one-permutation MinHash with optimal densification -> LSH band hashes. Everything here is deterministic
across processes and machines (no Python `hash()`, which is salted). Moved unchanged from tasks/curate
(text.py, dedup.py), which import it from here.
"""

from __future__ import annotations

import functools
import hashlib
import re

import numpy as np

# Identifiers, numbers, string-quote runs and single punctuation characters: good enough for shingles and
# n-gram overlap, and ~50x faster than the `tokenize` module.
TOKEN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\"\"\"|'''|\S")
_token_cache: dict[str, int] = {}
TOKEN_CACHE_MAX = 200_000   # ~30 MB: common tokens stay, a corpus's long tail of names does not pile up


def hash64(data: str | bytes) -> int:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def tokens(text: str) -> list[str]:
    return TOKEN_RE.findall(text)


def token_hashes(toks: list[str]) -> np.ndarray:
    """uint64 hash per token (memoized; the cache is bounded)."""
    cache = _token_cache
    try:
        return np.fromiter(map(cache.__getitem__, toks), dtype=np.uint64, count=len(toks))
    except KeyError:  # new tokens: hash them once, then look up again
        if len(cache) > TOKEN_CACHE_MAX:  # bounded: distinct tokens grow with the corpus, memory must not
            cache.clear()
        for t in set(toks):
            if t not in cache:
                cache[t] = hash64(t)
        return np.fromiter(map(cache.__getitem__, toks), dtype=np.uint64, count=len(toks))


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Avalanche a uint64 array (splitmix64 finalizer); wraps modulo 2**64 by design."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


_NGRAM_MULT = np.uint64(0x9E3779B97F4A7C15 | 1)


def ngram_hashes(tok_hashes: np.ndarray, n: int) -> np.ndarray:
    """uint64 hash of every window of `n` consecutive tokens (order-sensitive), vectorized.

    A polynomial (multiply-add, mod 2**64) over the tokens' random 64-bit hashes, then one avalanche:
    two array operations per position instead of a full mix, and just as good for non-adversarial text."""
    count = len(tok_hashes) - n + 1
    if count <= 0:
        if len(tok_hashes) == 0:
            return np.zeros(0, dtype=np.uint64)
        count, n = 1, len(tok_hashes)  # a short document is one shingle
    with np.errstate(over="ignore"):
        acc = tok_hashes[:count].copy()
        for j in range(1, n):
            acc *= _NGRAM_MULT
            acc += tok_hashes[j:j + count]
    return splitmix64(acc)


@functools.lru_cache(maxsize=None)
def optimal_bands(threshold: float, num_perm: int, false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimizing the weighted false positive + false negative mass at `threshold` (as datasketch
    does; its default weighs both 0.5). Memoized: a numerical search of ~0.1 s, and every shard and dedup
    partition task builds a MinHasher."""
    fp, fn = 1.0 - false_negative_weight, false_negative_weight
    try:
        from datasketch.lsh import _optimal_param

        return tuple(_optimal_param(threshold, num_perm, fp, fn))  # type: ignore[return-value]
    except Exception:  # private helper moved: a coarse fallback
        best, best_err = (1, num_perm), float("inf")
        for b in range(1, num_perm + 1):
            r = num_perm // b
            xs = np.linspace(0, 1, 201)
            p = 1 - (1 - xs ** r) ** b
            err = np.trapz(np.where(xs < threshold, fp * p, fn * (1 - p)), xs)
            if err < best_err:
                best, best_err = (b, r), err
        return best


class MinHasher:
    """MinHash signatures by one-permutation hashing with optimal densification (Shrivastava 2017).

    Classic MinHash applies `num_perm` hash functions to every shingle (n x num_perm work, what datasketch
    does). One-permutation hashing hashes each shingle once, uses part of the hash to pick one of
    `num_perm` bins and keeps the minimum of the rest per bin: O(n) work, and for documents with more
    shingles than bins (almost every source file) the same Jaccard estimate (fraction of equal bins).
    Bins a short document leaves empty are filled from other bins chosen by a hash of (bin, attempt)
    that does not depend on the document, so equal documents stay equal and similar ones similar.
    """

    def __init__(self, num_perm: int = 128, shingle_size: int = 5, threshold: float = 0.7, seed: int = 1,
                 false_negative_weight: float = 0.5):
        self.num_perm, self.shingle_size, self.threshold = num_perm, shingle_size, threshold
        self.seed = np.uint64(hash64(f"minhash:{seed}"))
        self.bands, self.rows = optimal_bands(threshold, num_perm, false_negative_weight)
        # densification probes: for empty bin i, attempt t looks at bin probe[t, i] (document-independent)
        attempts = 64
        grid = (np.arange(attempts, dtype=np.uint64)[:, None] << np.uint64(32)) | np.arange(num_perm, dtype=np.uint64)
        self._probe = (splitmix64(grid ^ self.seed) % np.uint64(num_perm)).astype(np.int64)

    def shingles(self, text: str) -> np.ndarray:
        return np.unique(ngram_hashes(token_hashes(tokens(text)), self.shingle_size))

    def signature(self, text: str) -> np.ndarray:
        """uint32[num_perm]; the empty document gets all-max. (Repeated shingles need no `unique`: a
        per-bin minimum is the same with or without them.)"""
        return self.signature_of(ngram_hashes(token_hashes(tokens(text)), self.shingle_size))

    def signature_of(self, shingles: np.ndarray) -> np.ndarray:
        k = self.num_perm
        sig = np.full(k, np.iinfo(np.uint32).max, dtype=np.uint32)
        if not len(shingles):
            return sig
        h = splitmix64(shingles ^ self.seed)
        np.minimum.at(sig, ((h >> np.uint64(32)) % np.uint64(k)).astype(np.int64),
                      (h & np.uint64(0xFFFFFFFF)).astype(np.uint32))
        filled = np.zeros(k, dtype=bool)
        filled[((h >> np.uint64(32)) % np.uint64(k)).astype(np.int64)] = True
        if filled.all():
            return sig
        out = sig.copy()
        empty = np.nonzero(~filled)[0]
        for probe in self._probe:  # optimal densification: copy from the first filled bin probed
            src = probe[empty]
            hit = filled[src]
            out[empty[hit]] = sig[src[hit]]
            empty = empty[~hit]
            if not len(empty):
                break
        else:  # (vanishingly rare) still empty after every probe: take the nearest filled bin to the right
            idx = np.nonzero(filled)[0]
            out[empty] = sig[idx[np.searchsorted(idx, empty) % len(idx)]]
        return out

    def band_hashes(self, sig: np.ndarray) -> np.ndarray:
        """uint64[bands] for one signature, or uint64[n, bands] for a stack: one hash per band of `rows`."""
        sig = np.asarray(sig)
        m = sig[..., : self.bands * self.rows].astype(np.uint64).reshape(*sig.shape[:-1], self.bands, self.rows)
        acc = m[..., 0].copy()
        with np.errstate(over="ignore"):
            for j in range(1, self.rows):
                acc = splitmix64(acc) ^ m[..., j]
        return splitmix64(acc)
