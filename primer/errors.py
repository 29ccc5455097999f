"""Errors a user can act on.

Anything raised as a `PrimerError` is printed by the CLI as one clear line (what is wrong, where, how to
fix it) without a traceback. Everything else is a bug and keeps its traceback.
"""


class PrimerError(Exception):
    """An error caused by input or configuration, with a message that names the culprit and the fix."""


class ConfigError(PrimerError):
    """A configuration field has a bad value or does not exist."""


class InputError(PrimerError):
    """An input (file, dataset, URI) is missing, unreadable or malformed."""


class StoreError(PrimerError):
    """The artifact store cannot be reached or holds an incomplete/corrupt output."""


class TransientError(PrimerError):
    """A network failure that may pass when tried again (connection refused or reset, timeout, HTTP 429/5xx).
    The only kind of error Primer's tasks retry: an input error fails at once with its one line."""


def is_transient(exc: BaseException | None) -> bool:
    """A network failure that may pass when tried again: a `TransientError`, a connection error or timeout,
    a network library's "try again" error, HTTP 429/5xx; looked for along the exception's causes.
    Everything else (a missing file, a bad Parquet page, a wrong setting) is not: retrying it only delays
    the one-line message by the retry delays."""
    for _ in range(8):
        if exc is None:
            return False
        if isinstance(exc, TransientError):
            return True
        if isinstance(exc, PrimerError):
            return False
        if isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__name__ in TRANSIENT_NAMES:
            return True
        if getattr(getattr(exc, "response", None), "status_code", None) in (429, 500, 502, 503, 504):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# Errors of the network libraries under fsspec (botocore, aiohttp, urllib3, requests, httpx) that mean
# "try again later", matched by name so that none of them has to be installed.
TRANSIENT_NAMES = frozenset({
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ClientConnectorError", "ServerDisconnectedError", "ClientOSError", "ServerTimeoutError",
    "RemoteDisconnected", "ProtocolError", "ConnectError", "ReadTimeout", "ConnectTimeout",
})
