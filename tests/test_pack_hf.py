"""`hf://datasets/...` sources read like any Parquet/JSONL source (text_column included), without network.

The product resolves `hf://` through fsspec, which maps the protocol to huggingface_hub's `HfFileSystem`
(checked first). The test then registers, under the same protocol, a filesystem that serves a local folder
laid out like the hub (`datasets/<org>/<name>/...`) and reports each file's LFS sha256 as the hub does, so
everything of ours — listing, globbing, fingerprinting, reading rows — runs on its real path.
"""

import hashlib

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from primer.config import PackConfig, SourceSpec, StoreConfig
from primer.documents import DropCounter
from primer.store import open_store
from tasks.pack import pack_documents
from tasks.sources import read_documents, resolve_source


def test_hf_protocol_is_huggingface_hub():
    from huggingface_hub import HfFileSystem

    assert fsspec.get_filesystem_class("hf") is HfFileSystem


@pytest.fixture
def hub(tmp_path, monkeypatch):
    root = tmp_path / "hub"
    repo = root / "datasets" / "primer-org" / "tiny-stack" / "data"
    repo.mkdir(parents=True)
    rows = [{"content": f"def f{i}(x):\n    return x * {i}\n", "lang": "python"} for i in range(40)]
    pq.write_table(pa.Table.from_pylist(rows[:20]), repo / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[20:]), repo / "train-00001-of-00002.parquet")
    (repo.parent / "README.md").write_text("# tiny stack\n")

    class LocalHub(DirFileSystem):
        protocol = "hf"

        def __init__(self, *args, **kwargs):
            super().__init__(path=str(root), fs=LocalFileSystem())

        def info(self, path, **kwargs):
            info = super().info(path, **kwargs)
            if info["type"] == "file":  # the hub reports LFS files' sha256
                info["lfs"] = {"sha256": hashlib.sha256(self.cat_file(path)).hexdigest(), "size": info["size"]}
            return info

    original = fsspec.get_filesystem_class("hf")
    fsspec.register_implementation("hf", LocalHub, clobber=True)
    yield {"repo": repo, "texts": [r["content"] for r in rows]}
    fsspec.register_implementation("hf", original, clobber=True)


def test_hf_dataset_glob_with_text_column(hub, tmp_path, tiny_tokenizer):
    spec = SourceSpec(uri="hf://datasets/primer-org/tiny-stack/data/*.parquet", text_column="content")
    src = resolve_source(spec)
    assert src.format == "parquet" and src.protocol == "hf" and len(src.files) == 2
    docs = list(read_documents(src, DropCounter()))
    assert [d.text for d in docs] == hub["texts"]
    assert docs[0].id == "train-00000-of-00002.parquet#0"
    # the folder form finds the same files (not README.md); fingerprints follow content, not the listing
    folder = resolve_source(SourceSpec(uri="hf://datasets/primer-org/tiny-stack", text_column="content"))
    assert [f.rsplit("/", 1)[1] for f in folder.files] == [f.rsplit("/", 1)[1] for f in src.files]
    before = src.fingerprint
    path = hub["repo"] / "train-00001-of-00002.parquet"
    table = pq.read_table(path)
    pq.write_table(table.set_column(0, "content", pa.array([t.replace("x", "y") for t in table.column(0).to_pylist()])), path)
    assert resolve_source(spec).fingerprint != before
    tok, ref = tiny_tokenizer
    m = pack_documents(open_store(StoreConfig(root=str(tmp_path / "s"))),
                       PackConfig(sources=[spec], seq_len=16, val_fraction=0.0), tok, ref, [resolve_source(spec)])
    assert m["sources"][0]["documents"] == 40 and m["splits"]["train"]["rows"] > 0


def test_hf_missing_column_names_the_file_and_the_fix(hub):
    from primer.errors import InputError

    with pytest.raises(InputError, match=r"train-00000-of-00002\.parquet: no column 'text' \(columns: content, lang\)"):
        resolve_source(SourceSpec(uri="hf://datasets/primer-org/tiny-stack/data/*.parquet"))
