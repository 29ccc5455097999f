"""Shared pytest fixtures. Load with `pytest_plugins = ["tests.support.fixtures"]` in tests/conftest.py.

- `openai_server`: a started loopback `OpenAIServer` (tests/support/openai_server.py), stopped afterwards.
  Script it in the test: `openai_server.responder = ...`, `.faults = FaultPlan(...)`, `.queue(...)`,
  `.delay = ...`; assert on `openai_server.stats`.
- `teacher_config`: a `TeacherConfig` pointing at that server, with a test key in $PRIMER_TEST_OPENAI_KEY,
  fast retries and short timeouts.
- `local_store`: an `ArtifactStore` on a temporary folder.
- `scripted_server`: `openai_server` answering as a teacher (tests/synth/scripted.py).
"""

from __future__ import annotations

import pytest

from tests.support.openai_server import OpenAIServer

TEST_KEY_ENV = "PRIMER_TEST_OPENAI_KEY"
TEST_KEY = "sk-loopback-test-0123456789abcdef"


@pytest.fixture
def openai_server():
    server = OpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def teacher_config(openai_server, monkeypatch):
    from primer.settings.synth import TeacherConfig

    monkeypatch.setenv(TEST_KEY_ENV, TEST_KEY)
    return TeacherConfig(base_url=openai_server.url, model="loopback-model", api_key_env=TEST_KEY_ENV,
                         concurrency=8, timeout_s=5.0, max_retries=4, backoff_base_s=0.01, backoff_max_s=0.2,
                         max_tokens=512, ledger_commit_every=4, ledger_commit_interval_s=0.05)


@pytest.fixture
def local_store(tmp_path):
    from primer.config import StoreConfig
    from primer.store import open_store

    return open_store(StoreConfig(root=str(tmp_path / "artifacts")))


@pytest.fixture
def scripted_server(openai_server, monkeypatch):
    """The loopback server answering like a teacher would (tests/synth/scripted.py): textbooks, exercises,
    annotations, with the scripted bad answers switched off."""
    from tests.synth import scripted

    monkeypatch.setenv(TEST_KEY_ENV, TEST_KEY)
    monkeypatch.setattr(scripted, "BAD_TEXTBOOKS", {})
    monkeypatch.setattr(scripted, "BAD_EXERCISES", {})
    openai_server.responder = scripted.responder
    return openai_server
