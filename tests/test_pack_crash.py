"""A pack killed while writing shards, then re-run, ends with the same shards as an uninterrupted run,
and readers never see the half-written output."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from primer.config import PackConfig, SourceSpec, StoreConfig
from primer.errors import StoreError
from primer.shards import read_split
from primer.store import open_store
from tasks.pack import pack_documents
from tasks.sources import resolve_source

REPO = Path(__file__).resolve().parents[1]

PACK_SCRIPT = textwrap.dedent("""
    import sys
    from primer.config import PackConfig, SourceSpec, StoreConfig
    from primer.store import open_store
    from tasks.pack import pack_documents
    from tasks.sources import resolve_source
    from primer.tokenizer import load_tokenizer
    corpus, root, tok_uri = sys.argv[1:4]
    store = open_store(StoreConfig(root=root))
    tok, ref = load_tokenizer(store, tok_uri, "<|endoftext|>")
    cfg = PackConfig(sources=[SourceSpec(uri=corpus)], seq_len=16, rows_per_shard=20)
    pack_documents(store, cfg, tok, ref, [resolve_source(cfg.sources[0])])
""")


def _cfg(corpus_dir):
    return PackConfig(sources=[SourceSpec(uri=str(corpus_dir))], seq_len=16, rows_per_shard=20)


def test_sigkill_mid_write_then_rerun(tmp_path, corpus_dir, tiny_tokenizer):
    tok, ref = tiny_tokenizer
    root = tmp_path / "crashed"
    proc = subprocess.Popen([sys.executable, "-c", PACK_SCRIPT, str(corpus_dir), str(root), ref.uri],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 120
    shards = []
    while time.time() < deadline and proc.poll() is None:
        shards = list(root.glob("pack/*/train-*.parquet"))
        if len(shards) >= 3:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the pack finished before it could be killed; make the test corpus bigger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    out_dir = shards[0].parent
    assert not (out_dir / "manifest.json").exists()

    store = open_store(StoreConfig(root=str(root)))
    with pytest.raises(StoreError, match="incomplete"):
        read_split(store, str(out_dir))

    source = resolve_source(SourceSpec(uri=str(corpus_dir)))
    resumed = pack_documents(store, _cfg(corpus_dir), tok, ref, [source])
    assert not resumed["reused"] and resumed["uri"] == str(out_dir)
    clean = pack_documents(open_store(StoreConfig(root=str(tmp_path / "clean"))), _cfg(corpus_dir), tok, ref, [source])
    assert [(f["name"], f["sha256"]) for f in resumed["files"]] == [(f["name"], f["sha256"]) for f in clean["files"]]
    # nothing stray: exactly the manifest's files and the manifest itself
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([f["name"] for f in resumed["files"]] + ["manifest.json"])
