"""The online teacher's HTTP (primer/teacher/transport.py): what the openai SDK gave the online path and
aiohttp does not do on its own — a proxy from the environment, organisation/project headers, the error
body's message — checked against real loopback HTTP."""

from __future__ import annotations

import dataclasses
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from primer.errors import ConfigError
from primer.teacher import Teacher
from primer.teacher.transport import Transport, env_proxy, error_message


class _ForwardProxy(BaseHTTPRequestHandler):
    """A plain HTTP forward proxy: the request line carries the absolute URL; counts what it forwarded."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(self.path)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "host")}
        conn.request("POST", url.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def forward_proxy():
    _ForwardProxy.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ForwardProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _ForwardProxy.seen
    finally:
        server.shutdown()


def test_requests_go_through_the_proxy_the_environment_names(openai_server, teacher_config, forward_proxy,
                                                            monkeypatch):
    proxy, seen = forward_proxy
    openai_server.responder = lambda req: "via proxy: " + req["messages"][-1]["content"]
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    teacher = Teacher(teacher_config)
    answers = teacher.run_sync([teacher.request([{"role": "user", "content": f"q{i}"}]) for i in range(5)])
    assert [a.text for a in answers] == [f"via proxy: q{i}" for i in range(5)]
    assert len(seen) == 5 and all(p.startswith(openai_server.url) for p in seen)

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")   # ... unless NO_PROXY covers the endpoint's host
    teacher = Teacher(teacher_config)
    assert all(a.ok for a in teacher.run_sync([teacher.request([{"role": "user", "content": "direct"}])]))
    assert len(seen) == 5


def test_env_proxy_picks_by_scheme_and_honours_no_proxy(monkeypatch):
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(k, raising=False)
    assert env_proxy("https://api.openai.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    assert env_proxy("https://api.openai.com/v1") == "http://proxy.corp:3128"
    assert env_proxy("http://vllm.local:8000/v1") is None
    monkeypatch.setenv("NO_PROXY", "api.openai.com")
    assert env_proxy("https://api.openai.com/v1") is None


def test_organisation_and_project_headers_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_ORG_ID", "org-123")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-456")
    t = Transport("", "sk-x", 4, 5.0)
    assert t.base == "https://api.openai.com/v1"
    assert t.headers["OpenAI-Organization"] == "org-123" and t.headers["OpenAI-Project"] == "proj-456"
    assert t.headers["Authorization"] == "Bearer sk-x"


@pytest.mark.parametrize("url", ["localhost:8000/v1", "ftp://host/v1", "http:///v1"])
def test_a_base_url_that_is_not_http_fails_at_once_naming_the_setting(teacher_config, url):
    """Raised before any attempt (aiohttp's InvalidURL would otherwise be retried as a connection error
    and end as failed answers, not an error)."""
    teacher = Teacher(dataclasses.replace(teacher_config, base_url=url))
    with pytest.raises(ConfigError, match=r"teacher.base_url .*is not an http\(s\) URL"):
        teacher.run_sync([teacher.request([{"role": "user", "content": "q"}])])


def test_error_message_is_the_error_bodys_message():
    assert error_message(b'{"error": {"message": "Incorrect API key provided", "code": "x"}}') == \
        "Incorrect API key provided"
    assert error_message(b'{"error": "model overloaded"}') == "model overloaded"
    assert error_message(b"<html>Bad Gateway</html>") == "<html>Bad Gateway</html>"
    assert error_message(b"") == "(empty body)"
