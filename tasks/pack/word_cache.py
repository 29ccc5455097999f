"""Encode documents through a cache of their pre-tokens' ids: the tokenizer's own ids, at a fraction of its CPU.

A byte-level BPE tokenizer (ours, tasks/tokenizer.py, or GPT-2's) splits a text with GPT-2's pattern and runs
BPE on each piece alone, so a text's ids are its pieces' ids in order and a piece's ids never depend on its
neighbours. Code repeats its pieces (`self`, `    `, `return`, `):`) millions of times, and `tokenizers`
runs its whole per-piece pipeline for each again: a normalized string with per-byte alignments, the byte
mapping, a BPE cache lookup, a `Token` with its own string per id. That pipeline, not BPE, is where its time
goes (about 40% of its instructions are malloc/free; BPE merging 2%), and the only way to spend less is to
run it less often.

`WordCache` splits ASCII documents itself, with the same pattern written for ASCII: `\\p{L}` is `[A-Za-z]`,
`\\p{N}` is `[0-9]` and `\\s` is `[\\t\\n\\v\\f\\r ]` there (the other control characters are neither, as in
oniguruma, which `tokenizers` uses). It looks each piece up in a dict and sends only the pieces it has not
seen to the tokenizer, a batch's new pieces as a few inputs joined by EOS (added tokens are split off
before pre-tokenization, so each piece is encoded as alone). Non-ASCII text is cut out at newlines where
the pattern splits anyway (`segments`) and encoded by the tokenizer; the ASCII text around it still goes
through the cache. bench/bench_pack.py measures the result; tests/test_pack_word_cache.py checks the
split against `ByteLevel.pre_tokenize_str` for every ASCII character in context and for random strings,
the cuts the same way, and the ids against `encode` on real code.

Only for tokenizers where this is exact (`supports`): no normalizer; a ByteLevel pre-tokenizer with the
regex and without a prefix space; a BPE model without dropout; no post-processor that adds tokens; no
truncation or padding; every added token special (pack encodes with `encode_special_tokens` on, so none is
matched inside a text) and EOS among them, stripping nothing. Any other tokenizer encodes documents whole.
As a guard against a `tokenizers` release that splits differently, each batch also encodes one of its
documents with the tokenizer: on any difference the batch is encoded whole and the cache is switched off
for that tokenizer, with a warning.

Its work holds the GIL, so it pays where a process has few cores (`pack.word_cache`, `wanted`).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import ChainMap
from itertools import compress
from operator import not_

import numpy as np
from tokenizers import Tokenizer

log = logging.getLogger("primer.pack")

_WS = "\\t\\n\\x0b\\x0c\\r "
# GPT-2's pattern ('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+) for ASCII,
# its common prefixes factored out (the same first match at every position; ~5% faster in `re`).
ASCII_PIECES = re.compile(rf"'(?:s|t|re|ve|m|ll|d)| ?(?:[A-Za-z]+|[0-9]+|[^{_WS}A-Za-z0-9]+)"
                          rf"|[{_WS}]+(?![^{_WS}])|[{_WS}]+")

# Pieces kept per tokenizer and process (~120 bytes each: the string, its ids as int32 bytes). Past it, new
# pieces are still encoded (a batch at a time) but not kept. The standard library has ~86k distinct pieces.
MAX_PIECES = 1 << 20
# The cache's work holds the GIL: one process gets about three cores' worth of the tokenizer's own encoding
# from it (bench/bench_pack.py, 2 cores: 1.5x in half the CPU), while the tokenizer alone runs on every
# core. So `pack.word_cache=auto` uses it up to this many cores per process (a task runner with one worker
# process per core: `pack.word_cache=on`).
AUTO_MAX_CORES = 3
# The guard's document per batch: the first this short (a few ms of the tokenizer), so the check stays
# a small share of a batch whatever its first document's size.
_CHECK_CHARS = 100_000
# Pieces per tokenizer input when encoding a batch's new pieces: several inputs per core for its threads.
_PIECES_PER_INPUT = 4096


def supports(tokenizer: Tokenizer, eos_token: str) -> bool:
    """Whether a text's ids are exactly its ASCII pieces' ids, each piece encoded alone (module doc)."""
    pre = tokenizer.pre_tokenizer
    if (tokenizer.normalizer is not None or tokenizer.truncation is not None or tokenizer.padding is not None
            or type(pre).__name__ != "ByteLevel" or pre.add_prefix_space or not pre.use_regex):
        return False
    if type(tokenizer.model).__name__ != "BPE" or tokenizer.model.dropout:
        return False
    if tokenizer.post_processor is not None and type(tokenizer.post_processor).__name__ != "ByteLevel":
        return False
    added = tokenizer.get_added_tokens_decoder().values()
    return (all(a.special for a in added) and any(a.content == eos_token for a in added)
            and not any(a.lstrip or a.rstrip or a.single_word for a in added))


_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def _safe_cut(text: str, j: int) -> bool:
    """Whether the pattern splits `text` at `j` whatever stands on either side: a newline between two
    printable, non-space ASCII characters ("x\\ny"). Every piece before it ends at or before the newline,
    the newline is a piece of its own (`\\s+` followed by non-space), and the pattern looks at nothing
    behind it, so the pieces of text[:j] + text[j:] are those of text."""
    return 2 <= j < len(text) and text[j - 1] == "\n" and "!" <= text[j - 2] <= "~" and "!" <= text[j] <= "~"


def segments(text: str) -> list[tuple[bool, str]]:
    """`text` cut at safe points (`_safe_cut`) into (is_ascii, segment) in order: each run of non-ASCII
    characters in the smallest segment around it, the ASCII text between them as it is."""
    if text.isascii():
        return [(True, text)]
    out: list[tuple[bool, str]] = []
    done = 0  # text[:done] is in `out`
    for run in _NON_ASCII.finditer(text):
        if run.start() < done:  # inside the previous non-ASCII segment
            continue
        lo = text.rfind("\n", done, run.start()) + 1
        while lo > done and not _safe_cut(text, lo):
            lo = text.rfind("\n", done, lo - 1) + 1
        lo = max(lo, done)
        hi = text.find("\n", run.end())
        while hi != -1 and not _safe_cut(text, hi + 1):
            hi = text.find("\n", hi + 1)
        hi = len(text) if hi == -1 else hi + 1
        if lo > done:
            out.append((True, text[done:lo]))
        out.append((False, text[lo:hi]))
        done = hi
    if done < len(text):
        out.append((True, text[done:]))
    return out


class WordCache:
    """Pieces' ids (int32 bytes) for one tokenizer, shared by the threads of a process: dict reads and
    writes are atomic under the GIL, and two threads encoding the same new piece store the same ids."""

    def __init__(self, tokenizer: Tokenizer, eos_token: str, eos_id: int, max_pieces: int = MAX_PIECES):
        self.tokenizer = tokenizer
        self.eos_token = eos_token
        self.eos_id = eos_id
        self.max_pieces = max_pieces
        self.ids: dict[str, bytes] = {}
        self.enabled = True
        # A copy that reads EOS's text as EOS, to join new pieces into one input (the shared tokenizer keeps
        # encode_special_tokens on, so EOS's text inside a document stays text).
        self._joiner = Tokenizer.from_str(tokenizer.to_str())
        self._joiner.encode_special_tokens = False

    def encode(self, texts: list[str]) -> list[bytes]:
        """Each text's ids (no EOS appended) as int32 bytes: the tokenizer's own ids, with
        `encode_special_tokens` on. ASCII segments (`segments`) go piece by piece through the cache, the
        others to the tokenizer."""
        self.tokenizer.encode_special_tokens = True
        if not self.enabled:
            return encode_whole(self.tokenizer, texts)
        get = self.ids.get
        parts: list[list[bytes | None]] = [[] for _ in texts]  # per text, its pieces' / segments' ids
        misses: list[tuple[int, int, list[str]]] = []  # (text, first slot, its pieces): some not cached yet
        new: set[str] = set()
        whole: list[tuple[int, int]] = []  # (text, slot) of each non-ASCII segment
        whole_texts: list[str] = []
        for i, text in enumerate(texts):
            for is_ascii, segment in segments(text):
                if not is_ascii:
                    whole.append((i, len(parts[i])))
                    whole_texts.append(segment)
                    parts[i].append(None)
                    continue
                words = ASCII_PIECES.findall(segment)
                got = list(map(get, words))
                if None in got:
                    misses.append((i, len(parts[i]), words))
                    new.update(compress(words, map(not_, got)))  # the pieces whose lookup gave None
                parts[i].extend(got)
        if new:
            fresh, kept = self._encode_pieces(sorted(new))
            look = get if kept else ChainMap(fresh, self.ids).__getitem__
            for i, first, words in misses:
                parts[i][first:first + len(words)] = map(look, words)
        if whole_texts:
            for (i, slot), ids in zip(whole, encode_whole(self.tokenizer, whole_texts)):
                parts[i][slot] = ids
        out = [b"".join(p) for p in parts]  # type: ignore[arg-type]
        self._check(texts, out)
        return out

    def _encode_pieces(self, words: list[str]) -> tuple[dict[str, bytes], bool]:
        """New pieces' ids, a few large inputs of EOS-joined pieces at a time, and whether the cache kept
        them (while it has room)."""
        eos = self.eos_token
        groups = [words[i:i + _PIECES_PER_INPUT] for i in range(0, len(words), _PIECES_PER_INPUT)]
        fresh: dict[str, bytes] = {}
        for group, enc in zip(groups, self._joiner.encode_batch_fast([eos.join(g) + eos for g in groups])):
            ids = np.array(enc.ids, dtype=np.int32)
            ends = np.flatnonzero(ids == self.eos_id)
            if ends.size != len(group):  # a piece that holds EOS's text (never from the pattern): one by one
                fresh.update(zip(group, encode_whole(self.tokenizer, group)))
                continue
            data = ids.tobytes()
            starts = np.concatenate([[0], ends[:-1] + 1]) * 4
            fresh.update((w, data[a:b]) for w, a, b in zip(group, starts.tolist(), (ends * 4).tolist()))
        kept = len(self.ids) + len(fresh) <= self.max_pieces
        if kept:
            self.ids.update(fresh)
        return fresh, kept

    def _check(self, texts: list[str], out: list[bytes]) -> None:
        """The batch's first text of at most `_CHECK_CHARS` characters (else its first) against the tokenizer;
        on a difference, encode the batch whole and stop using the cache."""
        if not texts:
            return
        i = next((i for i, t in enumerate(texts) if len(t) <= _CHECK_CHARS), 0)
        if encode_whole(self.tokenizer, texts[i:i + 1])[0] == out[i]:
            return
        self.enabled = False
        log.warning("pack: the word cache's ids differ from the tokenizer's on a document; encoding whole "
                    "documents from now on (tokenizers %s). Please report this.", _tokenizers_version())
        out[:] = encode_whole(self.tokenizer, texts)


def int32_bytes(ids: list[int]) -> bytes:
    return np.array(ids, dtype=np.int32).tobytes()


def encode_whole(tokenizer: Tokenizer, texts: list[str]) -> list[bytes]:
    """Each text encoded by the tokenizer itself (as its `encode_special_tokens` says), as int32 bytes."""
    return [int32_bytes(enc.ids) for enc in tokenizer.encode_batch_fast(texts)]


def _tokenizers_version() -> str:
    import tokenizers

    return tokenizers.__version__


_CACHES: dict[int, tuple[Tokenizer, WordCache | None]] = {}
_CACHES_LOCK = threading.Lock()


def word_cache_for(tokenizer: Tokenizer, eos_token: str, eos_id: int) -> WordCache | None:
    """This process's cache for `tokenizer` (None where `supports` says it is not exact). Keyed by the
    object, which the registry holds, so its id is not reused while cached."""
    with _CACHES_LOCK:
        hit = _CACHES.get(id(tokenizer))
        if hit is not None and hit[0] is tokenizer:
            return hit[1]
        cache = WordCache(tokenizer, eos_token, eos_id) if supports(tokenizer, eos_token) else None
        if len(_CACHES) >= 4:
            _CACHES.clear()
        _CACHES[id(tokenizer)] = (tokenizer, cache)
        return cache


def clear_word_caches() -> None:
    """Forget every cached piece (benchmarks start each run cold, as a new process does)."""
    with _CACHES_LOCK:
        _CACHES.clear()


def wanted(setting: str) -> bool:
    """`pack.word_cache`: on, off, or auto — on with at most `AUTO_MAX_CORES` cores for this process."""
    if setting != "auto":
        return setting == "on"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores <= AUTO_MAX_CORES


def encode_documents(tokenizer: Tokenizer, texts: list[str], eos_token: str, eos_id: int, use_cache: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Every document's ids followed by EOS, as one int32 array, and each document's length (EOS included):
    the ids of `tokenizer.encode_batch_fast(texts)` with `encode_special_tokens` on, through the cache when
    `use_cache` and `supports` allow."""
    cache = word_cache_for(tokenizer, eos_token, eos_id) if use_cache else None
    if cache is not None:
        docs = cache.encode(texts)
    else:
        tokenizer.encode_special_tokens = True
        docs = encode_whole(tokenizer, texts)
    eos = int32_bytes([eos_id])
    n = np.fromiter(map(len, docs), np.int64, len(docs)) // 4 + 1  # + EOS
    stream = bytearray(eos).join(docs)
    if docs:
        stream += eos
    return np.frombuffer(stream, np.int32), n
