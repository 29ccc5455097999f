"""The curate steps as they were before issue 13 (commit dc30e21), frozen as the same-run baseline of
bench/bench_curate.py: the syntax filter's `ast.parse` and the decontamination checker with its helpers.
Not used by the stage; kept only so every benchmark run measures old and new code on the same documents.
"""

from __future__ import annotations

import difflib
import keyword
import logging
from dataclasses import dataclass

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


log = logging.getLogger("primer.curate")
AST_GRAM = 6
SHAPE_GRAM = 8
PREFILTER_SHARE = 0.5
PREFILTER_MIN = 4
_KEYWORDS = frozenset(keyword.kwlist) | {"self", "print", "range", "len", "return"}


def blind_tokens(text: str, toks: list[str] | None = None) -> list[str]:
    """Code tokens with every identifier (not keywords) replaced by `N`."""
    toks = TOKEN_RE.findall(text) if toks is None else toks
    return [t if (t in _KEYWORDS or not (t[0].isalpha() or t[0] == "_")) else "N" for t in toks]
SNIPPET_CHARS = 400


@dataclass(frozen=True)
class BenchItem:
    benchmark: str
    task_id: str
    code: str


@dataclass
class Hit:
    benchmark: str
    task_id: str
    method: str       # ngram | ast
    score: float
    snippet: str


# ---------------------------------------------------------------------------------------- AST shapes


def _parse(code: str) -> ast.AST | None:
    try:
        return parse_python(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


_TYPE_IDS: dict[object, int] = {}
_CTX = (ast.Load, ast.Store, ast.Del)
_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)
_DOC_OWNERS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)


def _type_id(key: object) -> int:
    tid = _TYPE_IDS.get(key)
    if tid is None:
        name = key if isinstance(key, str) else f"Constant:{key[1].__name__}"  # type: ignore[index]
        tid = _TYPE_IDS[key] = hash64("ast:" + str(name)) & 0x7FFFFFFFFFFFFFFF
    return tid


def _is_docstring(stmt: ast.AST) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def shape(tree: ast.AST) -> tuple[list[int], list[tuple[ast.AST, int, int]]]:
    """One pre-order pass: node-type ids of the whole tree (no identifiers, literal values, contexts or
    docstrings) and, for every function, its (node, start, end) slice of that sequence."""
    out: list[int] = []
    spans: list[tuple[ast.AST, int, int]] = []
    append = out.append

    def visit(node: ast.AST) -> None:
        cls = type(node)
        if cls is ast.Constant:
            append(_type_id((cls, type(node.value))))
            return
        if cls in _CTX:
            return
        start = len(out)
        append(_type_id(cls.__name__))
        doc_owner = cls in _DOC_OWNERS
        for name in cls._fields:
            value = getattr(node, name, None)
            if type(value) is list:
                for i, item in enumerate(value):
                    if isinstance(item, ast.AST):
                        if doc_owner and i == 0 and name == "body" and _is_docstring(item):
                            continue
                        visit(item)
            elif isinstance(value, ast.AST):
                visit(value)
        if cls in _FUNCS:
            spans.append((node, start, len(out)))

    visit(tree)
    return out, spans


def node_sequence(fn: ast.AST) -> list[int]:
    """Pre-order node types of a function, without identifiers, literal values or docstrings."""
    return shape(fn)[0]


def _grams(seq: list[int]) -> np.ndarray:
    return np.unique(ngram_hashes(np.asarray(seq, dtype=np.uint64), AST_GRAM))


# ---------------------------------------------------------------------------------------- the checker


class Decontaminator:
    def __init__(self, items: list[BenchItem], ngram_size: int = 10, ngram_threshold: float = 0.5,
                 ast_threshold: float = 0.9, ast_min_nodes: int = 30, max_gram_share: float = 0.05):
        self.items = items
        self.ngram_size, self.ngram_threshold = ngram_size, ngram_threshold
        self.ast_threshold, self.ast_min_nodes = ast_threshold, ast_min_nodes
        # token n-gram index: sorted (hash, item) pairs
        hashes, owners, sizes = [], [], []
        for i, it in enumerate(items):
            grams = np.unique(ngram_hashes(token_hashes(TOKEN_RE.findall(it.code)), ngram_size))
            hashes.append(grams)
            owners.append(np.full(len(grams), i, dtype=np.int64))
            sizes.append(len(grams))
        self.item_sizes = np.array(sizes, dtype=np.int64)
        h = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        o = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        order = np.argsort(h, kind="stable")
        self.ng_hash, self.ng_owner = h[order], o[order]
        # prefilter for the AST check: identifier-blind token n-grams (renaming and layout do not change them)
        hashes, owners, sizes = [], [], []
        for i, it in enumerate(items):
            grams = np.unique(ngram_hashes(token_hashes(blind_tokens(it.code)), SHAPE_GRAM))
            hashes.append(grams)
            owners.append(np.full(len(grams), i, dtype=np.int64))
        h = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        o = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        uniq, counts = np.unique(h, return_counts=True)
        keep = ~np.isin(h, uniq[counts > max(3, max_gram_share * max(1, len(items)))])
        h, o = h[keep], o[keep]
        order = np.argsort(h, kind="stable")
        self.bg_hash, self.bg_owner = h[order], o[order]
        self.bg_sizes = np.bincount(o, minlength=len(items)) if len(items) else np.zeros(0, np.int64)
        # AST index over benchmark functions
        self.fn_item: list[int] = []
        self.fn_seq: list[list[int]] = []
        g_hash, g_owner = [], []
        for i, it in enumerate(items):
            tree = _parse(it.code)
            if tree is None:
                continue
            flat, spans = shape(tree)
            for fn, a, b in spans:
                seq = flat[a:b]
                if len(seq) < ast_min_nodes:
                    continue
                k = len(self.fn_seq)
                self.fn_item.append(i)
                self.fn_seq.append(seq)
                grams = _grams(seq)
                g_hash.append(grams)
                g_owner.append(np.full(len(grams), k, dtype=np.int64))
        # only items with a function big enough for the structural check can be AST suspects
        self.has_ast = np.zeros(len(items), dtype=bool)
        self.has_ast[np.asarray(self.fn_item, dtype=np.int64)] = True
        gh = np.concatenate(g_hash) if g_hash else np.zeros(0, np.uint64)
        go = np.concatenate(g_owner) if g_owner else np.zeros(0, np.int64)
        # drop structural "stop grams" shared by many benchmark functions: they select nothing
        uniq, counts = np.unique(gh, return_counts=True)
        common = uniq[counts > max(3, max_gram_share * max(1, len(self.fn_seq)))]
        keep = ~np.isin(gh, common)
        gh, go = gh[keep], go[keep]
        order = np.argsort(gh, kind="stable")
        self.ag_hash, self.ag_owner = gh[order], go[order]
        self.fn_gram_count = np.bincount(go, minlength=len(self.fn_seq)) if len(self.fn_seq) else np.zeros(0, np.int64)

    @staticmethod
    def _lookup(sorted_hash: np.ndarray, owner: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Owners of every query hash present in the index (with repetition)."""
        if not len(query) or not len(sorted_hash):
            return np.zeros(0, np.int64)
        lo = np.searchsorted(sorted_hash, query, "left")
        hi = np.searchsorted(sorted_hash, query, "right")
        n = hi - lo
        sel = n > 0
        lo, n = lo[sel], n[sel]
        if not len(lo):
            return np.zeros(0, np.int64)
        idx = np.repeat(lo - np.cumsum(np.r_[0, n[:-1]]), n) + np.arange(n.sum())
        return owner[idx]

    def check(self, text: str) -> list[Hit]:
        hits: dict[tuple[str, str], Hit] = {}
        # 1. token n-grams
        toks = TOKEN_RE.findall(text)
        spans: list[tuple[int, int]] = []
        grams = ngram_hashes(token_hashes(toks), self.ngram_size)
        uniq, first = np.unique(grams, return_index=True)
        owners = self._lookup(self.ng_hash, self.ng_owner, uniq)
        if len(owners):
            counts = np.bincount(owners, minlength=len(self.items))
            frac = counts / np.maximum(self.item_sizes, 1)
            for i in np.nonzero((frac >= self.ngram_threshold) & (counts >= 2))[0].tolist():
                it = self.items[i]
                own = set(np.unique(ngram_hashes(token_hashes(TOKEN_RE.findall(it.code)), self.ngram_size)).tolist())
                spans = spans or [m.span() for m in TOKEN_RE.finditer(text)]
                pos = sorted(first[j] for j, h in enumerate(uniq.tolist()) if h in own)
                a = spans[pos[0]][0]
                b = spans[min(len(spans) - 1, pos[-1] + self.ngram_size - 1)][1]
                hits[(it.benchmark, it.task_id)] = Hit(it.benchmark, it.task_id, "ngram", round(float(frac[i]), 4),
                                                       text[a:b][:SNIPPET_CHARS])
        # 2. AST structure, only for documents that share enough identifier-blind n-grams with an item
        if self.fn_seq:
            owners = self._lookup(self.bg_hash, self.bg_owner,
                                  np.unique(ngram_hashes(token_hashes(blind_tokens(text, toks)), SHAPE_GRAM)))
            if len(owners):
                shared = np.bincount(owners, minlength=len(self.items))
                share = shared / np.maximum(self.bg_sizes, 1)
                suspects = set(np.nonzero((share >= PREFILTER_SHARE) & (shared >= PREFILTER_MIN)
                                          & self.has_ast)[0].tolist())
                if suspects:
                    tree = _parse(text)
                    if tree is not None:
                        self._check_ast(tree, text, hits, suspects)
        return sorted(hits.values(), key=lambda h: (-h.score, h.benchmark, h.task_id))

    def _check_ast(self, tree: ast.AST, text: str, hits: dict[tuple[str, str], Hit], suspects: set[int]) -> None:
        lines = None
        flat, spans = shape(tree)
        for fn, a, b in spans:
            seq = flat[a:b]
            if len(seq) < self.ast_min_nodes:
                continue
            owners = self._lookup(self.ag_hash, self.ag_owner, _grams(seq))
            if not len(owners):
                continue
            counts = np.bincount(owners, minlength=len(self.fn_seq))
            share = counts / np.maximum(self.fn_gram_count, 1)
            for k in np.nonzero(share >= 0.5 * self.ast_threshold)[0].tolist():
                if self.fn_item[k] not in suspects:
                    continue
                ref = self.fn_seq[k]
                if 2 * min(len(seq), len(ref)) / (len(seq) + len(ref)) < self.ast_threshold:
                    continue
                sm = difflib.SequenceMatcher(None, seq, ref, autojunk=False)
                if sm.quick_ratio() < self.ast_threshold:
                    continue
                score = sm.ratio()
                if score < self.ast_threshold:
                    continue
                it = self.items[self.fn_item[k]]
                key = (it.benchmark, it.task_id)
                if key in hits and hits[key].score >= score:
                    continue
                lines = lines or text.splitlines()
                snippet = "\n".join(lines[fn.lineno - 1: (fn.end_lineno or fn.lineno)])[:SNIPPET_CHARS]
                hits[key] = Hit(it.benchmark, it.task_id, "ast", round(score, 4), snippet)


