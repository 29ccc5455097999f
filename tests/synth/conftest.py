"""Fixtures of the synthesize tests (the shared ones come from tests.support.fixtures via tests/conftest.py)."""

import pytest


@pytest.fixture
def scripted_server(openai_server, monkeypatch):
    """The loopback server answering like a teacher would (tests/synth/scripted.py)."""
    from tests.support.fixtures import TEST_KEY, TEST_KEY_ENV
    from tests.synth import scripted

    monkeypatch.setenv(TEST_KEY_ENV, TEST_KEY)
    monkeypatch.setattr(scripted, "BAD_TEXTBOOKS", {})
    monkeypatch.setattr(scripted, "BAD_EXERCISES", {})
    openai_server.responder = scripted.responder
    return openai_server
