"""Text helpers shared by the curate steps: code tokens, normalization, stable 64-bit hashes.

Everything here is deterministic across processes and machines (no Python `hash()`, which is salted).
"""

from __future__ import annotations

import ast
import hashlib
import re
import threading
import warnings

import numpy as np

# Identifiers, numbers, string-quote runs and single punctuation characters: good enough for shingles and
# n-gram overlap, and ~50x faster than the `tokenize` module.
TOKEN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\"\"\"|'''|\S")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_token_cache: dict[str, int] = {}


def normalize(text: str) -> str:
    """Text for exact dedup: LF line ends, no trailing whitespace, no blank first/last lines."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def hash64(data: str | bytes) -> int:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def tokens(text: str) -> list[str]:
    return TOKEN_RE.findall(text)


def token_hashes(toks: list[str]) -> np.ndarray:
    """uint64 hash per token (memoized; the cache is bounded)."""
    cache = _token_cache
    if len(cache) > 2_000_000:
        cache.clear()
    vals = list(map(cache.get, toks))
    if None in vals:
        for t in set(toks):
            if t not in cache:
                cache[t] = hash64(t)
        vals = list(map(cache.__getitem__, toks))
    return np.array(vals, dtype=np.uint64)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """Avalanche a uint64 array (splitmix64 finalizer); wraps modulo 2**64 by design."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def ngram_hashes(tok_hashes: np.ndarray, n: int) -> np.ndarray:
    """uint64 hash of every window of `n` consecutive tokens (order-sensitive), vectorized."""
    count = len(tok_hashes) - n + 1
    if count <= 0:
        if len(tok_hashes) == 0:
            return np.zeros(0, dtype=np.uint64)
        count, n = 1, len(tok_hashes)  # a short document is one shingle
    with np.errstate(over="ignore"):
        acc = tok_hashes[:count].copy()
        for j in range(1, n):
            acc = splitmix64(acc) ^ tok_hashes[j:j + count]
    return splitmix64(acc)


_PARSE_LOCK = threading.Lock()


def parse_python(text: str) -> ast.Module:
    """`ast.parse` that is safe in threads (CPython 3.11/3.12 can raise "AST constructor recursion depth
    mismatch" when two threads build ASTs at once) and quiet about SyntaxWarnings of old code.
    Raises SyntaxError / ValueError / RecursionError / MemoryError like `ast.parse`."""
    with _PARSE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(text)
