"""Shard invariants on real text (standard-library files), on a local folder and on S3 (moto)."""

from collections import Counter

import numpy as np
import pytest

from primer.config import PackConfig, SourceSpec, StoreConfig
from primer.documents import DropCounter
from primer.shards import read_shard_bytes, read_split
from primer.store import open_store
from tasks.pack import pack_documents
from tasks.sources import read_documents, resolve_source


def _pack(store_cfg, corpus_dir, tiny_tokenizer, **knobs):
    tok, ref = tiny_tokenizer
    cfg = PackConfig(sources=[SourceSpec(uri=str(corpus_dir))], **{"seq_len": 64, "rows_per_shard": 500, **knobs})
    store = open_store(store_cfg)
    sources = [resolve_source(s, store_cfg, i) for i, s in enumerate(cfg.sources)]
    return store, cfg, pack_documents(store, cfg, tok, ref, sources)


def _split_on_eos(stream: np.ndarray, eos: int) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
    """Complete documents (each ended by EOS) and the unfinished tail."""
    ends = np.flatnonzero(stream == eos)
    docs, start = [], 0
    for end in ends:
        docs.append(tuple(stream[start:end].tolist()))
        start = end + 1
    return docs, tuple(stream[start:].tolist())


def test_rows_are_exact_and_give_back_the_documents(store_cfg, corpus_dir, tiny_tokenizer):
    tok, ref = tiny_tokenizer
    store, cfg, manifest = _pack(store_cfg, corpus_dir, tiny_tokenizer, val_fraction=0.1)
    texts = [d.text for d in read_documents(resolve_source(SourceSpec(uri=str(corpus_dir))), DropCounter())]
    tok.encode_special_tokens = True
    expected = Counter(tuple(tok.encode(t).ids) for t in texts)  # each document encoded on its own

    got: Counter = Counter()
    cut_tokens = 0
    for split in ("train", "val"):
        rows = read_split(store, manifest["uri"], split)
        info = manifest["splits"][split]
        assert rows.dtype == np.int32 and rows.shape == (info["rows"], cfg.seq_len)
        assert info["rows"] > 0
        docs, tail = _split_on_eos(rows.reshape(-1), ref.eos_id)
        got.update(docs)
        # the tail starts the first document cut off by the remainder the manifest reports
        cut_tokens += len(tail) + info["remainder_tokens"]
        assert info["tokens"] + info["remainder_tokens"] == sum(s["tokens_weighted"][split] for s in manifest["sources"])
        assert not np.any((rows.reshape(-1)[1:] == ref.eos_id) & (rows.reshape(-1)[:-1] == ref.eos_id))
    # every complete document appears exactly as encoded alone; the cut-off ones are the missing ones
    assert not (got - expected), "a row holds a sequence that is not a document"
    # no padding, nothing lost: the documents not found whole are exactly the ones the remainders cut off
    missing = expected - got
    assert sum((len(d) + 1) * n for d, n in missing.items()) == cut_tokens
    assert manifest["splits"]["train"]["documents"] + manifest["splits"]["val"]["documents"] == len(texts)
    assert manifest["sources"][0]["tokens"] == sum(len(d) + 1 for d in expected.elements())
    assert manifest["tokenizer"]["sha256"] == ref.sha256
    assert manifest["seq_len"] == 64 and manifest["mixture_weights"] == {SourceSpec(uri=str(corpus_dir)).display_name(): 1.0}


def test_rerun_reuses_and_same_seed_gives_identical_bytes(tmp_path, corpus_dir, tiny_tokenizer):
    a_store, _, a = _pack(StoreConfig(root=str(tmp_path / "a")), corpus_dir, tiny_tokenizer)
    assert not a["reused"]
    again = _pack(StoreConfig(root=str(tmp_path / "a")), corpus_dir, tiny_tokenizer)[2]
    assert again["reused"] and again["uri"] == a["uri"]
    b = _pack(StoreConfig(root=str(tmp_path / "b")), corpus_dir, tiny_tokenizer)[2]
    assert [(f["name"], f["sha256"]) for f in a["files"]] == [(f["name"], f["sha256"]) for f in b["files"]]
    c = _pack(StoreConfig(root=str(tmp_path / "c")), corpus_dir, tiny_tokenizer, seed=99)[2]
    assert c["key"] != a["key"]
    assert [f["sha256"] for f in c["files"]] != [f["sha256"] for f in a["files"]]


def test_changed_knob_never_overwrites(tmp_path, corpus_dir, tiny_tokenizer):
    cfg = StoreConfig(root=str(tmp_path))
    a = _pack(cfg, corpus_dir, tiny_tokenizer)[2]
    b = _pack(cfg, corpus_dir, tiny_tokenizer, seq_len=128)[2]
    assert a["uri"] != b["uri"]
    assert open_store(cfg).output("pack", a["key"]).is_complete()


def test_mixture_weights_repeat_and_subsample(tmp_path, corpus_dir, tiny_tokenizer):
    tok, ref = tiny_tokenizer
    store = open_store(StoreConfig(root=str(tmp_path)))
    specs = [SourceSpec(uri=str(corpus_dir / "json"), name="json", weight=2.0),
             SourceSpec(uri=str(corpus_dir / "email"), name="email", weight=0.5)]
    cfg = PackConfig(sources=specs, seq_len=64, val_fraction=0.0)
    sources = [resolve_source(s) for s in specs]
    m = pack_documents(store, cfg, tok, ref, sources)
    by_name = {s["name"]: s for s in m["sources"]}
    assert by_name["json"]["tokens_weighted"]["train"] == 2 * by_name["json"]["tokens"]
    email = by_name["email"]
    assert 0 < email["tokens_weighted"]["train"] < email["tokens"]
    assert m["mixture_weights"] == {"json": 2.0, "email": 0.5}
    email_kept = m["splits"]["train"]["documents"] - 2 * by_name["json"]["documents"]
    assert 0 < email_kept < email["documents"]


def test_shard_files_are_parquet_with_fixed_size_rows(tmp_path, corpus_dir, tiny_tokenizer):
    import pyarrow.parquet as pq

    store, cfg, m = _pack(StoreConfig(root=str(tmp_path)), corpus_dir, tiny_tokenizer, rows_per_shard=100)
    first = tmp_path / "pack" / m["key"] / m["splits"]["train"]["shards"][0]
    schema = pq.read_schema(first)
    column_type = schema.field("input_ids").type
    assert column_type.list_size == 64 and str(column_type.value_type) == "int32"
    assert read_shard_bytes(first.read_bytes()).shape == (100, 64)
    assert len(m["splits"]["train"]["shards"]) == -(-m["splits"]["train"]["rows"] // 100)


@pytest.mark.parametrize("seq_len", [8, 1000])
def test_extreme_row_lengths(tmp_path, corpus_dir, tiny_tokenizer, seq_len):
    store, cfg, m = _pack(StoreConfig(root=str(tmp_path)), corpus_dir, tiny_tokenizer, seq_len=seq_len)
    rows = read_split(store, m["uri"], "train")
    assert rows.shape[1] == seq_len and rows.shape[0] == m["splits"]["train"]["rows"] > 0


def test_rows_carry_a_difficulty_and_curriculum_orders_by_it(tmp_path, corpus_dir, tiny_tokenizer):
    from primer.training.data import RowOrder, ShardRows

    store, cfg, m = _pack(StoreConfig(root=str(tmp_path)), corpus_dir, tiny_tokenizer, rows_per_shard=100)
    rows = ShardRows(store, m["uri"], "train")
    difficulty = rows.difficulty()
    assert difficulty.shape == (m["splits"]["train"]["rows"],)
    assert np.all(difficulty > 0) and difficulty.std() > 0  # bits per token, varies between rows
    order = RowOrder(rows, seed=0, mode="curriculum").order(0)
    assert sorted(order.tolist()) == list(range(len(rows)))
    assert np.all(np.diff(difficulty[order]) >= 0)  # easiest first
    shuffled = RowOrder(rows, seed=0, mode="shuffle")
    assert sorted(shuffled.order(0).tolist()) == list(range(len(rows)))
    assert not np.array_equal(shuffled.order(0), shuffled.order(1))  # a new permutation each epoch


def test_same_bytes_whatever_the_sharding_threads_and_word_cache(tmp_path, corpus_dir, tiny_tokenizer):
    """shard_bytes, the number of threads and pack.word_cache change how the work is done, never the output
    (nor its key)."""
    tok, ref = tiny_tokenizer
    src = resolve_source(SourceSpec(uri=str(corpus_dir)))
    outputs = []
    for i, (shard_bytes, threads, word_cache) in enumerate([(100_000_000, 1, "off"), (40_000, 3, "on")]):
        cfg = PackConfig(sources=[src.spec], seq_len=64, rows_per_shard=200, shard_bytes=shard_bytes,
                         word_cache=word_cache)
        from tasks.pack.encode import plan_shards

        n_shards = len(plan_shards([src], cfg))
        assert (n_shards == 1) if i == 0 else (n_shards > 5)
        m = pack_documents(open_store(StoreConfig(root=str(tmp_path / str(i)))), cfg, tok, ref, [src], threads=threads)
        outputs.append((m["key"], m["content_hash"], m["drops"], m["sources"][0]["tokens"]))
    assert outputs[0] == outputs[1]


def test_batches_keep_each_documents_own_tokens_and_drop_only_the_too_long(corpus_dir, tiny_tokenizer):
    """Batches mixing kept and too-long documents: every kept document's tokens are its own encoding + EOS,
    at its offsets, its entropy that of its own tokens; exactly the documents over the limit are dropped."""
    from collections import Counter

    from tasks.pack.encode import ShardPlan, tokenize_shard

    tok, ref = tiny_tokenizer
    src = resolve_source(SourceSpec(uri=str(corpus_dir)))
    docs = list(read_documents(src, DropCounter()))
    tok.encode_special_tokens = True
    own = {d.id: tok.encode(d.text).ids + [ref.eos_id] for d in docs}
    limit = int(np.median([len(ids) for ids in own.values()]))
    cfg = PackConfig(sources=[src.spec], batch_docs=7, max_doc_tokens=limit)
    out = tokenize_shard(ShardPlan(0, 0, src), ref, cfg, StoreConfig(root="unused"), tok)
    assert out.ids == [d.id for d in docs if len(own[d.id]) <= limit]
    too_long = [d.id for d in out.drops.all if d.reason == "too_long"]
    assert sorted(too_long) == sorted(i for i, ids in own.items() if len(ids) > limit)
    assert len(too_long) == len(docs) - len(out.ids) and 0 < len(out.ids) < len(docs)
    for j, doc_id in enumerate(out.ids):
        ids = out.tokens[out.offsets[j]:out.offsets[j + 1]].tolist()
        assert ids == own[doc_id]
        p = np.array(list(Counter(ids).values())) / len(ids)
        assert np.isclose(out.difficulty[j], -(p * np.log2(p)).sum(), rtol=1e-6)


def test_token_entropy_is_the_same_whatever_the_grouping():
    from tasks.pack.encode import token_entropy

    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 400, 60)
    tokens = (rng.zipf(1.3, lengths.sum()) % 5000).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    one_group = token_entropy(tokens, offsets, max_bins=1 << 30)
    for max_bins in (1, 4999, 5001, 100_000):  # one document per group, ..., many per group
        assert np.array_equal(token_entropy(tokens, offsets, max_bins=max_bins), one_group)
    assert token_entropy(np.zeros(0, np.int32), np.zeros(1, np.int64)).shape == (0,)
