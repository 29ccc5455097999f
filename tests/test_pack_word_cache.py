"""The word cache gives the tokenizer's own ids: its split is ByteLevel's, its ids are `encode`'s.

Each check compares against `tokenizers` itself (`ByteLevel.pre_tokenize_str`, `Tokenizer.encode`), never
against a copy of our own logic.
"""

import logging
import random

import numpy as np
import pytest
from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers

from primer.documents import DropCounter
from primer.config import SourceSpec
from tasks.pack.word_cache import (ASCII_PIECES, WordCache, clear_word_caches, encode_documents, segments,
                                   supports, wanted)
from tasks.sources import read_documents, resolve_source

EOS = "<|endoftext|>"
BYTE_LEVEL = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
# Characters where the pattern's classes meet: quotes of contractions, every ASCII space and control
# character, letters, digits, punctuation; and the contractions themselves, runs of spaces, indentation.
TRICKY = list(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x00\x7f'sStrevmld1_0.(){}#\"<|>") + ["'s", "'ll", "'re", "  ",
                                                                                       "\n    ", "é", "€", "😀"]


def spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in ASCII_PIECES.finditer(text)]


def byte_level_spans(text: str) -> list[tuple[int, int]]:
    return [offsets for _, offsets in BYTE_LEVEL.pre_tokenize_str(text)]


def own_ids(tok: Tokenizer, texts: list[str]) -> np.ndarray:
    """What pack wrote before the cache: each text encoded alone, EOS after each."""
    tok.encode_special_tokens = True
    eos = tok.token_to_id(EOS)
    return np.array([i for e in tok.encode_batch_fast(texts) for i in e.ids + [eos]], dtype=np.int32)


@pytest.mark.parametrize("context", ["x{}y", "{}", " {} ", "{}{}", "a {}", "{}\n", "'{}", "{} x", "1{}2", "\n{}\n  z"])
def test_split_is_byte_levels_for_every_ascii_character(context):
    for code in range(128):
        text = context.replace("{}", chr(code))
        assert spans(text) == byte_level_spans(text), repr(text)


def test_split_is_byte_levels_on_random_ascii_strings():
    rng = random.Random(0)
    alphabet = [c for c in TRICKY if c.isascii()]
    for _ in range(30_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 14)))
        assert spans(text) == byte_level_spans(text), repr(text)


def test_segments_cut_only_where_the_split_is_the_same():
    """Non-ASCII text is cut out at safe newlines; the pieces of the parts are the pieces of the whole."""
    rng = random.Random(1)
    lines = ["x = 1", "    return 'é'", "", "  ", "€", "# naïve", "y=2 ", "\tz", "'s", "print('😀')", "a\x0b"]
    for _ in range(3_000):
        text = "\n".join(rng.choice(lines) for _ in range(rng.randint(1, 12))) + rng.choice(["", "\n"])
        parts = segments(text)
        assert "".join(p for _, p in parts) == text
        assert all(is_ascii == part.isascii() for is_ascii, part in parts)
        pieces, at = [], 0
        for _, part in parts:
            pieces += [(a + at, b + at) for a, b in byte_level_spans(part)]
            at += len(part)
        assert pieces == byte_level_spans(text), repr(text)


@pytest.fixture
def real_texts(corpus_dir):
    texts = [d.text for d in read_documents(resolve_source(SourceSpec(uri=str(corpus_dir))), DropCounter())]
    rng = random.Random(2)
    extra = ["", EOS, f"x{EOS}y", " ", "\n", "a <|endoftext", "|>b", "é€😀 x", "  \n  ", "it's   'll\t\x0b\x1c",
             "s = 'naïve'\nt = 1\n" * 3, "".join(rng.choice(TRICKY) for _ in range(500))]
    return texts + extra


def test_ids_are_the_tokenizers_own_on_real_code(real_texts, tiny_tokenizer):
    tok, ref = tiny_tokenizer
    assert supports(tok, EOS)
    clear_word_caches()
    expected = own_ids(tok, real_texts)
    for batch_docs in (1, 7, 1000):  # cold, then warm caches; batches of one text up to all of them
        got = [encode_documents(tok, real_texts[i:i + batch_docs], EOS, ref.eos_id)
               for i in range(0, len(real_texts), batch_docs)]
        tokens = np.concatenate([t for t, _ in got])
        lengths = np.concatenate([n for _, n in got])
        assert np.array_equal(tokens, expected)
        assert lengths.tolist() == [len(tok.encode(t).ids) + 1 for t in real_texts]


def test_a_full_cache_still_gives_the_same_ids(real_texts, tiny_tokenizer):
    tok, ref = tiny_tokenizer
    cache = WordCache(tok, EOS, ref.eos_id, max_pieces=50)
    out = cache.encode(real_texts[:40]) + cache.encode(real_texts[40:])
    assert len(cache.ids) <= 50
    eos = np.array([ref.eos_id], np.int32).tobytes()
    assert np.array_equal(np.frombuffer(eos.join(out) + eos, np.int32), own_ids(tok, real_texts))


def test_a_difference_from_the_tokenizer_turns_the_cache_off(real_texts, tiny_tokenizer, caplog):
    """The guard: a wrong cached piece is caught by the batch's check, the batch is encoded whole, the cache
    is not used again, and the log says so."""
    tok, ref = tiny_tokenizer
    cache = WordCache(tok, EOS, ref.eos_id)
    cache.encode(real_texts[:5])
    piece = ASCII_PIECES.findall(real_texts[5])[0]
    cache.ids[piece] = np.array([3, 1, 4], np.int32).tobytes()
    with caplog.at_level(logging.WARNING, logger="primer.pack"):
        out = cache.encode(real_texts[5:20])
    assert not cache.enabled and "differ from the tokenizer's" in caplog.text
    expected = [np.array(tok.encode(t).ids, np.int32).tobytes() for t in real_texts[5:20]]
    assert out == expected
    assert cache.encode(real_texts[20:30]) == [np.array(tok.encode(t).ids, np.int32).tobytes()
                                               for t in real_texts[20:30]]


def test_tokenizers_where_pieces_are_not_independent_are_encoded_whole(real_texts, tiny_tokenizer):
    tok, ref = tiny_tokenizer
    variants = {}
    for name, change in [
        ("prefix space", lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.ByteLevel(add_prefix_space=True))),
        ("normalizer", lambda t: setattr(t, "normalizer", normalizers.Lowercase())),
        ("a non-special added token", lambda t: t.add_tokens([AddedToken("    ", special=False)])),
    ]:
        other = Tokenizer.from_str(tok.to_str())
        change(other)
        variants[name] = other
    assert not supports(variants["prefix space"], EOS)
    assert not supports(variants["normalizer"], EOS)
    assert not supports(variants["a non-special added token"], EOS)
    assert not supports(tok, "</s>")  # EOS is not one of its tokens
    for name, other in variants.items():
        tokens, _ = encode_documents(other, real_texts[:30], EOS, ref.eos_id)
        assert np.array_equal(tokens, own_ids(other, real_texts[:30])), name


def test_auto_uses_the_cache_only_on_few_cores(monkeypatch):
    import os

    assert wanted("on") and not wanted("off")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)), raising=False)
    assert wanted("auto")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert not wanted("auto")
