"""Keep secrets out of logs, artifacts and child processes.

Keys come from the environment or Prefect Secret blocks, never from configuration. Every secret value the
process knows of (environment variables with secret-like names, values loaded from blocks) is registered
here; a logging filter replaces them with `***` in every record, and `scrubbed_env()` gives child
processes an environment without them.
"""

from __future__ import annotations

import logging
import os
import re

SECRET_NAME = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|SESSION)", re.IGNORECASE)
_known: set[str] = set()


def register(value: str | None) -> None:
    """Remember a secret value so it is masked wherever it would be logged."""
    if value and len(value) >= 4:
        _known.add(value)


def secret_values() -> set[str]:
    env = {v for k, v in os.environ.items() if SECRET_NAME.search(k) and v and len(v) >= 4}
    return _known | env


def redact(text: str) -> str:
    for value in sorted(secret_values(), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


class RedactingFilter(logging.Filter):
    """Masks known secret values in log messages and their arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Attach the filter to the root logger's handlers and to Prefect's loggers (idempotent)."""
    for name in ("", "prefect", "primer", "botocore", "s3fs", "httpx", "openai"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


def scrubbed_env(extra: dict[str, str] | None = None, keep: tuple[str, ...] = ()) -> dict[str, str]:
    """A copy of the environment without any secret-looking variable (for subprocesses we launch)."""
    env = {k: v for k, v in os.environ.items() if k in keep or not SECRET_NAME.search(k)}
    env.update(extra or {})
    return env
