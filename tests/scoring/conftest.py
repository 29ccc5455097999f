"""Fixtures for scoring tests: a store holding a tiny training run (two checkpoints, written in the real
checkpoint layout by tests/scoring/helpers.py) and its release, a warm sandbox, MBPP data."""

from __future__ import annotations

import pytest

from tests.conftest import MBPP_PATH  # noqa: F401  (../shared/data/mbpp/mbpp.jsonl; never committed)

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
