"""Bad input: each case is a counted drop or a clear error naming the file and the problem."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from primer.config import PackConfig, SourceSpec, StoreConfig
from primer.documents import DropCounter
from primer.errors import InputError
from primer.shards import read_split
from primer.store import open_store
from tasks.pack import pack_documents
from tasks.sources import read_documents, resolve_source


def _pack(tmp_path, tiny_tokenizer, specs, **knobs):
    tok, ref = tiny_tokenizer
    cfg = PackConfig(sources=specs, **{"seq_len": 32, "val_fraction": 0.0, **knobs})
    sources = [resolve_source(s, None, i) for i, s in enumerate(specs)]
    store = open_store(StoreConfig(root=str(tmp_path / "store")))
    return store, pack_documents(store, cfg, tok, ref, sources)


@pytest.fixture
def messy_dir(tmp_path, corpus_dir):
    d = tmp_path / "messy"
    shutil.copytree(corpus_dir / "json", d)
    (d / "latin1.py").write_bytes("# caf\xe9\nx = 1\n".encode("latin-1"))
    (d / "empty.py").write_text("   \n\n")
    (d / "binary.py").write_bytes(b"\x00\x01\x02ELF" * 100)
    (d / "eos_literal.py").write_text("s = '<|endoftext|>'  # the literal EOS string inside code\n")
    return d


def test_bad_documents_are_counted_drops(tmp_path, messy_dir, tiny_tokenizer):
    store, m = _pack(tmp_path, tiny_tokenizer, [SourceSpec(uri=str(messy_dir))])
    assert m["drops"] == {"binary": 1, "empty": 1, "invalid_utf8": 1}
    examples = m["drop_examples"]
    assert examples["invalid_utf8"][0]["id"] == "latin1.py"
    assert "latin1.py" in examples["invalid_utf8"][0]["detail"]
    assert m["sources"][0]["dropped"] == 3


def test_literal_eos_in_text_does_not_split_a_document(tmp_path, messy_dir, tiny_tokenizer):
    tok, ref = tiny_tokenizer
    store, m = _pack(tmp_path, tiny_tokenizer, [SourceSpec(uri=str(messy_dir))])
    stream = read_split(store, m["uri"]).reshape(-1)
    n_eos = int((stream == ref.eos_id).sum())
    # one EOS per complete document in the rows: never one extra from the literal string
    assert n_eos <= m["splits"]["train"]["documents"]
    assert n_eos >= m["splits"]["train"]["documents"] - m["splits"]["train"]["remainder_tokens"]


def test_long_document_spans_many_rows_and_too_long_is_dropped(tmp_path, tiny_tokenizer):
    d = tmp_path / "long"
    d.mkdir()
    body = "".join(f"def function_{i}(x):\n    return x * {i}\n\n" for i in range(400))
    (d / "long.py").write_text(body)
    (d / "short.py").write_text("".join(f"x_{i} = {i}\n" for i in range(40)))  # a few rows on its own
    tok, ref = tiny_tokenizer
    n_long = len(tok.encode(body).ids) + 1
    store, m = _pack(tmp_path, tiny_tokenizer, [SourceSpec(uri=str(d))])
    assert m["splits"]["train"]["rows"] >= n_long // 32 - 1 > 20  # one document, many rows
    assert m["drops"] == {}
    store2, m2 = _pack(tmp_path / "b", tiny_tokenizer, [SourceSpec(uri=str(d))], max_doc_tokens=n_long - 1)
    assert m2["drops"] == {"too_long": 1}
    assert "max_doc_tokens" in m2["drop_examples"]["too_long"][0]["detail"]


def test_jsonl_malformed_lines_are_counted(tmp_path, tiny_tokenizer):
    f = tmp_path / "docs.jsonl"
    lines = [json.dumps({"id": "a", "text": "def a():\n    return 1\n"}), "{not json", json.dumps({"body": "x"}),
             json.dumps({"text": 42}), json.dumps({"text": ""}), json.dumps({"id": "b", "text": "x = 2\n"})]
    f.write_bytes(("\n".join(lines) + "\n").encode() + b'{"text": "\xff\xfe"}\n')
    src = resolve_source(SourceSpec(uri=str(f)))
    drops = DropCounter()
    docs = list(read_documents(src, drops))
    assert [d.id for d in docs] == ["a", "b"]
    assert drops.as_dict() == {"empty": 1, "invalid_utf8": 1, "malformed_json": 1, "missing_text": 1, "not_text": 1}


def test_jsonl_unpaired_surrogates_are_counted_drops_not_tokenizer_errors(tmp_path, tiny_tokenizer):
    """A "\\ud800" escape decodes to a lone surrogate, which the tokenizer rejects with a TypeError naming
    nothing: the reader drops such a line (text or prompt), naming the file, line and character; a valid
    surrogate pair (an emoji written as two escapes) is ordinary text."""
    f = tmp_path / "docs.jsonl"
    good = [json.dumps({"id": f"g{i}", "text": f"def g{i}(x):\n    return x * {i}\n"}) for i in range(40)]
    bad_text = '{"id": "lone", "text": "s = \'ab\\ud800\'\\n"}'
    bad_prompt = '{"id": "p", "text": "def h():\\n    pass\\n", "prompt": "def h(\\uDC00"}'
    emoji = '{"id": "pair", "text": "smile = \'\\ud83d\\ude00\'\\n"}'
    f.write_text("\n".join(good + [bad_text, bad_prompt, emoji]) + "\n")
    spec = SourceSpec(uri=str(f), prompt_column="prompt")
    drops = DropCounter()
    docs = list(read_documents(resolve_source(spec), drops))
    assert [d.id for d in docs][-1] == "pair" and docs[-1].text == "smile = '\U0001F600'\n"
    assert drops.as_dict() == {"invalid_unicode": 2}
    details = sorted(d.detail for d in drops.examples["invalid_unicode"])
    assert details == [f"{f}:41: 'text' has an unpaired surrogate \\ud800 at character 7",
                       f"{f}:42: 'prompt' has an unpaired surrogate \\udc00 at character 6"]
    store, m = _pack(tmp_path, tiny_tokenizer, [spec])
    assert m["drops"] == {"invalid_unicode": 2}
    assert m["sources"][0]["documents"] == 41


def test_corrupt_parquet_names_the_file(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    pq.write_table(pa.table({"text": ["x = 1\n"]}), d / "good.parquet")
    (d / "bad.parquet").write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(InputError, match=r"bad\.parquet: not a readable Parquet file"):
        resolve_source(SourceSpec(uri=str(d)))


def test_missing_text_column_names_the_columns_and_fix(tmp_path):
    f = tmp_path / "code.parquet"
    pq.write_table(pa.table({"content": ["x = 1\n"], "repo": ["r"]}), f)
    with pytest.raises(InputError, match=r"code\.parquet: no column 'text' \(columns: content, repo\).*text_column"):
        resolve_source(SourceSpec(uri=str(f)))
    src = resolve_source(SourceSpec(uri=str(f), text_column="content"))
    assert [d.text for d in read_documents(src, DropCounter())] == ["x = 1\n"]


def test_unreachable_uris_are_clear_errors(tmp_path, s3_env):
    with pytest.raises(InputError, match=r"pack.sources\[0\] \(/no/such/place\): not found"):
        resolve_source(SourceSpec(uri="/no/such/place"))
    cfg = StoreConfig(root=f"s3://{s3_env['bucket']}", endpoint_url=s3_env["endpoint"])
    with pytest.raises(InputError, match="not found"):
        resolve_source(SourceSpec(uri=f"s3://{s3_env['bucket']}/missing/"), cfg)
    with pytest.raises(InputError, match="no files match"):
        resolve_source(SourceSpec(uri=str(tmp_path), glob="*.nothing"))


def test_parquet_source_on_s3(tmp_path, s3_env, tiny_tokenizer):
    import s3fs

    cfg = StoreConfig(root=f"s3://{s3_env['bucket']}/primer", endpoint_url=s3_env["endpoint"])
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_env["endpoint"]})
    local = tmp_path / "docs.parquet"
    texts = [f"def f{i}(x):\n    return x + {i}\n" for i in range(50)]
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(50)], "text": texts}), local)
    fs.put_file(str(local), f"{s3_env['bucket']}/data/docs.parquet")
    src = resolve_source(SourceSpec(uri=f"s3://{s3_env['bucket']}/data/"), cfg)
    assert src.format == "parquet" and len(src.files) == 1 and src.fingerprint
    docs = list(read_documents(src, DropCounter(), cfg))
    assert [d.text for d in docs] == texts and docs[3].id == "d3"
    tok, ref = tiny_tokenizer
    store = open_store(cfg)
    m = pack_documents(store, PackConfig(sources=[src.spec], seq_len=16, val_fraction=0.0), tok, ref, [src])
    assert m["uri"].startswith("s3://") and read_split(store, m["uri"]).shape[1] == 16


def test_keep_if_filters_rows_by_a_boolean_column(tmp_path):
    f = tmp_path / "exercises.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["x = 1\n", "y = 2\n", "z = 3\n"],
                             "verified": [True, False, True]}), f)
    src = resolve_source(SourceSpec(uri=str(f), keep_if="verified"))
    drops = DropCounter()
    assert [d.id for d in read_documents(src, drops)] == ["a", "c"]
    assert drops.as_dict() == {"not_verified": 1}
    assert src.fingerprint != resolve_source(SourceSpec(uri=str(f))).fingerprint
