"""Helpers the training tests share: pack a source into a fresh store, as the pack stage would."""

from __future__ import annotations

import pytest

from primer.config import PackConfig, SourceSpec, StoreConfig
from primer.store import open_store
from tasks.pack import pack_documents
from tasks.sources import resolve_source


@pytest.fixture(scope="module")
def pack_into_store(tmp_path_factory, tiny_tokenizer):
    """pack_into_store(name, source, **pack settings) -> (store root, token-shard output URI, manifest)."""
    tok, ref = tiny_tokenizer

    def pack(name: str, source: SourceSpec, **settings):
        root = str(tmp_path_factory.mktemp(name))
        cfg = PackConfig(sources=[source], **settings)
        m = pack_documents(open_store(StoreConfig(root=root)), cfg, tok, ref, [resolve_source(source)])
        return root, m["uri"], m

    return pack
