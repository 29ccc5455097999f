"""The online teacher's HTTP: one aiohttp session per run, POSTing OpenAI-compatible JSON bodies.

Why not the openai SDK here: at the concurrency a teacher runs at, its request machinery (option models
copied per call, URL and header building, httpx's per-request pool bookkeeping) cost ~2.3 ms of CPU per
request on these machines against ~0.4 ms for aiohttp (the HTTP library s3fs already brings), and one
event loop's CPU is what bounds a process's request rate (`bench/bench_teacher.py`). What the SDK gave
the online path is kept: `Authorization: Bearer`, `OpenAI-Organization` / `OpenAI-Project` from
$OPENAI_ORG_ID / $OPENAI_PROJECT_ID, a proxy from the environment (HTTP(S)_PROXY, NO_PROXY: looked up
once per run, not per request as aiohttp's `trust_env` does, in a thread each time), certifi's CA bundle,
a total timeout per request. The Batch API client (primer/teacher/batch.py) still uses the SDK:
it makes a handful of calls per batch.

Errors: a non-2xx answer raises `HTTPStatus` (status, one-line detail from the error body, headers);
timeouts raise `asyncio.TimeoutError` and network failures `aiohttp.ClientError`; a body that is not JSON
raises `ValueError`. The caller decides what is retried.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from primer.errors import ConfigError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
ORG_HEADERS = {"OPENAI_ORG_ID": "OpenAI-Organization", "OPENAI_PROJECT_ID": "OpenAI-Project"}


class HTTPStatus(Exception):
    """A non-2xx answer. `status_code` and `message` as the SDK's status errors have them."""

    def __init__(self, status: int, message: str, headers: Any):
        super().__init__(message)
        self.status_code, self.message, self.headers = status, message, headers


def error_message(raw: bytes) -> str:
    """The `error.message` of an OpenAI error body, else the body's first 300 characters."""
    text = raw.decode("utf-8", "replace")
    try:
        err = json.loads(text).get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    except (ValueError, AttributeError):
        pass
    return text[:300] or "(empty body)"


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` ($HTTPS_PROXY / $HTTP_PROXY, unless $NO_PROXY covers its
    host), or None."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme) or None


class Transport:
    """POST JSON to `<base_url><path>`; at most `connections` open connections (the run's concurrency)."""

    def __init__(self, base_url: str, api_key: str, connections: int, timeout_s: float):
        self.base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        parts = urlsplit(self.base)
        if parts.scheme not in ("http", "https") or not parts.hostname:   # fail now, not after retries
            raise ConfigError(f"teacher.base_url (or $OPENAI_BASE_URL): {base_url!r} is not an http(s) URL; "
                              "expected e.g. http://127.0.0.1:8000/v1")
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                        "Accept": "application/json", "User-Agent": "primer-teacher"}
        for env, header in ORG_HEADERS.items():
            if os.environ.get(env):
                self.headers[header] = os.environ[env]
        self.connections, self.timeout_s = connections, timeout_s
        self.proxy = env_proxy(self.base)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:   # inside the run's event loop: aiohttp binds the session to it
            import certifi

            connector = aiohttp.TCPConnector(limit=self.connections,
                                             ssl=ssl.create_default_context(cafile=certifi.where()))
            self._session = aiohttp.ClientSession(connector=connector, headers=self.headers,
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        """The answer's JSON; raises HTTPStatus, asyncio.TimeoutError, aiohttp.ClientError or ValueError."""
        data = json.dumps(body, ensure_ascii=False).encode()
        async with self._open().post(self.base + path, data=data, headers=headers, proxy=self.proxy,
                                     allow_redirects=False) as resp:
            raw = await resp.read()
            if resp.status >= 300:
                raise HTTPStatus(resp.status, error_message(raw), resp.headers)
        return json.loads(raw)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
