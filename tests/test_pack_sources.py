"""Sources that are other stages' outputs are read from their manifests (the hand-off contract), and pack's
key and manifest do not depend on where anything lives."""

import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from primer.config import PackConfig, SourceSpec, StoreConfig
from primer.documents import DropCounter
from primer.errors import InputError
from primer.store import open_store
from primer.tokenizer import load_tokenizer
from tasks.pack import pack_documents, pack_key
from tasks.sources import read_documents, resolve_source


def _table(texts, **extra):
    return pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts, **extra})


@pytest.fixture
def synth_like(tmp_path):
    """A stage output with two datasets (as synthesize writes them), and a stray file no manifest lists."""
    store_cfg = StoreConfig(root=str(tmp_path / "store"))
    store = open_store(store_cfg)
    out = store.output("synthesize", "k1")
    books = [[f"def book{i}_{j}():\n    return {j}\n" for j in range(5)] for i in range(2)]
    for i, texts in enumerate(books):
        with out.open_local(f"textbooks/part-{i}.parquet") as local:
            pq.write_table(_table(texts), local)
    with out.open_local("exercises/part-0.parquet") as local:
        pq.write_table(_table(["x = 1\n", "y = 2\n"], verified=[True, False]), local)
    manifest = out.commit({"datasets": {
        "textbooks": {"files": ["textbooks/part-0.parquet", "textbooks/part-1.parquet"], "format": "parquet",
                      "text_column": "text"},
        "exercises": {"files": ["exercises/part-0.parquet"], "format": "parquet", "text_column": "text"},
    }})
    # a file beside them that no manifest lists: a glob would read it, the manifest reader never does
    pq.write_table(_table(["STRAY = True\n"]), tmp_path / "store" / "synthesize" / "k1" / "textbooks" / "stray.parquet")
    return store_cfg, manifest, [t for texts in books for t in texts]


def test_dataset_of_a_stage_output_reads_exactly_its_listed_files(synth_like):
    store_cfg, manifest, book_texts = synth_like
    src = resolve_source(SourceSpec(uri=manifest["uri"], dataset="textbooks"), store_cfg)
    assert src.format == "parquet" and len(src.files) == 2
    assert [d.text for d in read_documents(src, DropCounter(), store_cfg)] == book_texts
    ex = resolve_source(SourceSpec(uri=manifest["uri"], dataset="exercises", keep_if="verified"), store_cfg)
    assert [d.text for d in read_documents(ex, DropCounter(), store_cfg)] == ["x = 1\n"]
    # a store ref (what manifests record) reads the same
    by_ref = resolve_source(SourceSpec(uri="synthesize/k1", dataset="textbooks"), store_cfg)
    assert by_ref.files == src.files and by_ref.fingerprint == src.fingerprint


def test_dataset_choice_errors_name_the_setting_and_the_choices(synth_like, tmp_path):
    store_cfg, manifest, _ = synth_like
    with pytest.raises(InputError, match=r"pack.sources\[0\].*several datasets \(exercises, textbooks\).*\.dataset"):
        resolve_source(SourceSpec(uri=manifest["uri"]), store_cfg)
    with pytest.raises(InputError, match=r"no dataset 'books' \(it has exercises, textbooks\)"):
        resolve_source(SourceSpec(uri=manifest["uri"], dataset="books"), store_cfg)
    with pytest.raises(InputError, match=r"curate.sources\[2\].*several datasets"):
        resolve_source(SourceSpec(uri=manifest["uri"]), store_cfg, 2, setting="curate.sources")
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.py").write_text("x = 1\n")
    with pytest.raises(InputError, match=r"dataset is 'documents', but this is not a stage output"):
        resolve_source(SourceSpec(uri=str(raw), dataset="documents"), store_cfg)


def test_skipped_stage_output_is_a_clear_error(tmp_path):
    store_cfg = StoreConfig(root=str(tmp_path / "store"))
    out = open_store(store_cfg).output("synthesize", "none").commit_skipped("no teacher configured")
    with pytest.raises(InputError, match=r"was skipped \(no teacher configured\)"):
        resolve_source(SourceSpec(uri=out["uri"], dataset="textbooks"), store_cfg)


def test_fingerprint_and_pack_key_survive_a_copied_store(synth_like, tmp_path, tiny_tokenizer):
    store_cfg, manifest, _ = synth_like
    a = resolve_source(SourceSpec(uri=manifest["uri"], dataset="textbooks"), store_cfg)
    shutil.copytree(tmp_path / "store", tmp_path / "moved")
    moved_cfg = StoreConfig(root=str(tmp_path / "moved"))
    b = resolve_source(SourceSpec(uri="synthesize/k1", dataset="textbooks"), moved_cfg)
    assert a.fingerprint == b.fingerprint and a.files != b.files
    # the tokenizer is keyed by its content: the same tokenizer.json at another URI gives the same key
    tok, ref = tiny_tokenizer
    elsewhere = tmp_path / "elsewhere" / "tokenizer.json"
    elsewhere.parent.mkdir()
    elsewhere.write_text(tok.to_str())
    _, ref2 = load_tokenizer(open_store(moved_cfg), str(elsewhere), ref.eos_token)
    cfg = PackConfig(sources=[a.spec], seq_len=16, val_fraction=0.0)
    assert ref2.uri != ref.uri and pack_key(cfg, ref, [a]) == pack_key(cfg, ref2, [b])


def test_pack_manifest_records_store_refs(tmp_path, corpus_dir):
    from tasks.tokenizer import prepare_tokenizer

    store_cfg = StoreConfig(root=str(tmp_path / "store"))
    store = open_store(store_cfg)
    src = resolve_source(SourceSpec(uri=str(corpus_dir / "json")), store_cfg)
    texts = [d.text for d in read_documents(src, DropCounter())]
    from primer.config import TokenizerConfig

    tok, ref = prepare_tokenizer(store, TokenizerConfig(vocab_size=300), lambda: texts, [src.fingerprint], 0)
    m = pack_documents(store, PackConfig(sources=[src.spec], seq_len=16), tok, ref, [src])
    assert m["tokenizer"]["uri"].startswith("tokenizer/") and m["tokenizer"]["uri"].endswith("/tokenizer.json")
    assert store.resolve(m["tokenizer"]["uri"]) == ref.uri
    again = pack_documents(store, PackConfig(sources=[src.spec], seq_len=16), tok, ref, [src])
    assert again["reused"] and again["uri"] == m["uri"]
