"""Fixtures for scoring tests: a store holding a tiny training run (two checkpoints, written in the real
checkpoint layout by tests/scoring/helpers.py) and its release, and a way to make MBPP unfindable. MBPP's
format comes from tests/conftest.py (`mbpp_format_path`); only test_reference_solutions.py reads the real file."""

from __future__ import annotations

import pytest

from .helpers import write_run


@pytest.fixture(scope="session")
def scoring_store(tiny_tokenizer, tmp_path_factory):
    """(store, run manifest, release manifest): checkpoints at steps 10 (val loss 3.2) and 20 (3.1)."""
    from primer.config import StoreConfig
    from primer.export import export_checkpoint
    from primer.store import open_store

    tok, _ = tiny_tokenizer
    store = open_store(StoreConfig(root=str(tmp_path_factory.mktemp("scoring") / "store")))
    run = write_run(store, tok, steps=(10, 20), val_losses=(3.2, 3.1))
    release = export_checkpoint(store, run["checkpoints"][1]["uri"], name="tiny-test")
    return store, run, release


@pytest.fixture
def no_mbpp(monkeypatch, tmp_path):
    """No MBPP anywhere: no variable, no ../shared copy, an empty cache, and a download that cannot connect."""
    monkeypatch.delenv("PRIMER_MBPP_PATH", raising=False)
    monkeypatch.setattr("primer.scoring.data_files.MBPP_BESIDE_CHECKOUT", tmp_path / "no-shared" / "mbpp.jsonl")
    monkeypatch.setenv("PRIMER_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("PRIMER_MBPP_URL", "http://127.0.0.1:9/mbpp.jsonl")  # nothing listens on port 9
