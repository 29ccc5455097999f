import logging

from primer import secrets


def test_log_records_are_redacted(monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-abcdef123456")
    secrets.install_log_redaction()
    caplog.set_level(logging.INFO, logger="primer")
    logging.getLogger("primer").info("calling teacher with key %s", "sk-live-abcdef123456")
    assert "sk-live-abcdef123456" not in caplog.text
    assert "***" in caplog.text


def test_registered_values_are_redacted():
    secrets.register("block-secret-998877")
    assert secrets.redact("x block-secret-998877 y") == "x *** y"


def test_scrubbed_env_drops_secret_names(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    monkeypatch.setenv("MY_TOKEN", "tok-value")
    monkeypatch.setenv("HARMLESS", "1")
    env = secrets.scrubbed_env()
    assert "AWS_SECRET_ACCESS_KEY" not in env and "MY_TOKEN" not in env and env["HARMLESS"] == "1"
    assert secrets.scrubbed_env(keep=("MY_TOKEN",))["MY_TOKEN"] == "tok-value"
