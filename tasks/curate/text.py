"""Text helpers shared by the curate steps: code tokens, normalization, stable 64-bit hashes.

Everything here is deterministic across processes and machines (no Python `hash()`, which is salted).
"""

from __future__ import annotations

import ast
import hashlib
import re
import symtable
import threading
import warnings

import numpy as np

# Identifiers, numbers, string-quote runs and single punctuation characters: good enough for shingles and
# n-gram overlap, and ~50x faster than the `tokenize` module.
TOKEN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|\"\"\"|'''|\S")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_token_cache: dict[str, int] = {}
TOKEN_CACHE_MAX = 200_000   # ~30 MB: common tokens stay, a corpus's long tail of names does not pile up


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


_PARSE_LOCK = threading.Lock()


def parse_python(text: str) -> ast.Module:
    """`ast.parse` that is safe in threads (CPython 3.11/3.12 can raise "AST constructor recursion depth
    mismatch" when two threads build ASTs at once) and quiet about SyntaxWarnings of old code.
    Raises SyntaxError / ValueError / RecursionError / MemoryError like `ast.parse`."""
    with _PARSE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(text)


def check_syntax(text: str) -> None:
    """Raise SyntaxError (or ValueError/RecursionError/MemoryError) unless `text` is valid Python 3.

    Runs CPython's own parser and symbol-table pass in C without building Python AST objects, about twice
    as fast as `ast.parse` (bench/bench_curate.py), and stricter in the right direction: it also rejects
    what the compiler rejects after parsing (e.g. `nonlocal x` at module level, duplicate parameters).
    Steps that need the tree parse the few documents they look at with `parse_python`.
    """
    with _PARSE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        symtable.symtable(text, "<document>", "exec")
