"""A loopback OpenAI-compatible HTTP server for tests and benchmarks (stdlib only, real HTTP/1.1).

    with OpenAIServer(responder=lambda req: "hello") as server:
        client = openai.OpenAI(base_url=server.url, api_key="test")

Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models. Answers are proper OpenAI JSON
with `usage` (tokens estimated as characters / 4 unless a `Reply` says otherwise).

Scripting, in the order the server consults them for each request:
1. `hold_after(n)`: once `n` successful answers were delivered, further requests are held (not answered)
   until `release()`; used to SIGKILL a client at a point where every delivered answer is known.
2. `queue(reply, key=None)`: replies served first-in first-out, for one request key or for any request.
3. `faults`: a `FaultPlan` of deterministic per-(key, attempt) faults: 429 with Retry-After, 500,
   malformed bodies, refusals, hangs; at most `max_per_key` faults per key so every key can succeed.
4. `responder(request_json) -> str | Reply`: the answer (default: a deterministic echo).
Every answer waits `delay` seconds first (fixed latency, for throughput benchmarks).

The request key is the `X-Primer-Key` header that `primer.teacher` sends (else a hash of model + prompt).
`stats` counts requests: total, successful (a well-formed 200 delivered to a client still connected),
per key and per prompt hash, by status, held, and `client_gone` (the client hung up before the answer).
Run standalone: `python -m tests.support.openai_server --port 0 --delay 0.05` prints `PORT <n>`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import select
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

KEY_HEADER = "X-Primer-Key"
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."


@dataclass
class Reply:
    """One scripted answer. `text` for a normal 200; other fields inject faults."""

    text: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0                     # extra seconds before answering
    raw: bytes | None = None               # body sent as-is (malformed JSON, wrong shape, ...)
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    hang: bool = False                     # never answer; wait until the client hangs up (timeouts)
    kind: str = "answer"                   # label in stats: answer | rate_limit | server_error | ...


def rate_limited(retry_after: float = 0.05) -> Reply:
    body = json.dumps({"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded",
                                 "code": "rate_limit_exceeded"}}).encode()
    return Reply(status=429, raw=body, headers={"Retry-After": f"{retry_after:g}",
                                                "retry-after-ms": str(int(retry_after * 1000))},
                 kind="rate_limit")


def server_error(status: int = 500) -> Reply:
    body = json.dumps({"error": {"message": "The server had an error", "type": "server_error"}}).encode()
    return Reply(status=status, raw=body, kind="server_error")


def malformed() -> Reply:
    return Reply(status=200, raw=b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess', kind="malformed")


def refusal(text: str = REFUSAL_TEXT) -> Reply:
    return Reply(text=text, kind="refusal")


def hang() -> Reply:
    return Reply(hang=True, kind="hang")


@dataclass
class FaultPlan:
    """Deterministic faults: for each (key, attempt) one uniform draw picks at most one fault."""

    rate_limit: float = 0.0
    server_error: float = 0.0
    malformed: float = 0.0
    refusal: float = 0.0          # a refusal is a *successful* answer (the client paid for it)
    hang: float = 0.0
    retry_after: float = 0.05
    max_per_key: int = 2          # after this many faults for a key, answer normally
    seed: int = 0

    def pick(self, key: str, attempt: int, faults_so_far: int) -> Reply | None:
        if faults_so_far >= self.max_per_key:
            return None
        draw = random.Random(f"{self.seed}:{key}:{attempt}").random()
        for prob, make in ((self.rate_limit, lambda: rate_limited(self.retry_after)),
                           (self.server_error, server_error), (self.malformed, malformed),
                           (self.refusal, refusal), (self.hang, hang)):
            if draw < prob:
                return make()
            draw -= prob
        return None


def prompt_hash(req: dict[str, Any]) -> str:
    prompt = req.get("messages", req.get("prompt"))
    return hashlib.sha256(json.dumps([req.get("model"), prompt], sort_keys=True).encode()).hexdigest()[:16]


def prompt_text(req: dict[str, Any]) -> str:
    if "messages" in req:
        return "\n".join(str(m.get("content", "")) for m in req["messages"])
    p = req.get("prompt", "")
    return "\n".join(p) if isinstance(p, list) else str(p)


def default_responder(req: dict[str, Any]) -> str:
    return f"Echo: {prompt_text(req)[-200:]}"


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.total = 0
        self.successful = 0
        self.held = 0
        self.client_gone = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.by_status: Counter[int] = Counter()
        self.by_kind: Counter[str] = Counter()
        self.per_key: Counter[str] = Counter()
        self.per_key_success: Counter[str] = Counter()
        self.per_key_faults: Counter[str] = Counter()
        self.per_prompt_success: Counter[str] = Counter()
        self.log: list[dict[str, Any]] = []

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"total": self.total, "successful": self.successful, "held": self.held,
                    "client_gone": self.client_gone, "by_status": dict(self.by_status),
                    "by_kind": dict(self.by_kind), "max_in_flight": self.max_in_flight}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm on, the second waits for the client's
    # delayed ACK (~40 ms on Linux) — a latency no real server has. TCP_NODELAY sends both at once.
    disable_nagle_algorithm = True
    server: "_HTTPServer"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # ---- plumbing -----------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _client_gone(self) -> bool:
        """True when the client closed its end (EOF readable) before we answered."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _wait(self, seconds: float) -> bool:
        """Sleep, but return False early if the client hangs up. True if still connected."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return not self._client_gone()
            if self._client_gone():
                return False
            time.sleep(min(left, 0.02))

    # ---- endpoints ----------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            body = {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "loopback"}
                                               for m in self.server.owner.models]}
            self._send(200, json.dumps(body).encode())
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:
        owner: OpenAIServer = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        chat = self.path.rstrip("/").endswith("/chat/completions")
        if not chat and not self.path.rstrip("/").endswith("/completions"):
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        try:
            req = json.loads(raw)
        except ValueError:
            self._send(400, b'{"error": {"message": "invalid JSON body"}}')
            return
        key = self.headers.get(KEY_HEADER) or prompt_hash(req)
        st = owner.stats
        with st.lock:
            st.total += 1
            attempt = st.per_key[key]
            st.per_key[key] += 1
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            self._answer(owner, req, key, attempt, chat)
        finally:
            with st.lock:
                st.in_flight -= 1

    def _answer(self, owner: "OpenAIServer", req: dict[str, Any], key: str, attempt: int, chat: bool) -> None:
        st = owner.stats
        # 1. gate
        if owner._gate_after is not None:
            with st.lock:
                must_hold = st.successful >= owner._gate_after
                if must_hold:
                    st.held += 1
            if must_hold:
                while not owner._gate_open.wait(0.02):
                    pass
                if self._client_gone():
                    with st.lock:
                        st.client_gone += 1
                        st.log.append({"key": key, "outcome": "client_gone"})
                    self.close_connection = True
                    return
        # 2. queue, 3. faults, 4. responder
        reply = owner._next_queued(key)
        if reply is None and owner.faults is not None:
            with st.lock:
                faults = st.per_key_faults[key]
            reply = owner.faults.pick(key, attempt, faults)
        if reply is None:
            try:
                out = owner.responder(req)
            except Exception as e:  # a broken responder is a 500, visibly
                out = Reply(status=500, raw=json.dumps({"error": {"message": f"responder: {e!r}"}}).encode(),
                            kind="responder_error")
            reply = out if isinstance(out, Reply) else Reply(text=str(out))
        if reply.kind != "answer" and reply.kind != "refusal":
            with st.lock:
                st.per_key_faults[key] += 1
        if reply.hang:
            while not self._client_gone() and not owner._stopping.is_set():
                time.sleep(0.02)
            with st.lock:
                st.client_gone += 1
                st.by_kind["hang"] += 1
                st.log.append({"key": key, "outcome": "hang"})
            self.close_connection = True
            return
        if not self._wait(owner.delay + reply.delay):
            with st.lock:
                st.client_gone += 1
                st.log.append({"key": key, "outcome": "client_gone"})
            self.close_connection = True
            return
        model = req.get("model", "loopback")
        if reply.raw is not None:
            body = reply.raw
        else:
            text = reply.text or ""
            pt = reply.prompt_tokens if reply.prompt_tokens is not None else len(prompt_text(req)) // 4 + 1
            ct = reply.completion_tokens if reply.completion_tokens is not None else len(text) // 4 + 1
            usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
            now = int(time.time())
            if chat:
                body_obj = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                            "created": now, "model": model, "system_fingerprint": "fp_loopback",
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                         "logprobs": None, "finish_reason": reply.finish_reason}],
                            "usage": usage}
            else:
                body_obj = {"id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion", "created": now,
                            "model": model, "choices": [{"index": 0, "text": text, "logprobs": None,
                                                         "finish_reason": reply.finish_reason}],
                            "usage": usage}
            body = json.dumps(body_obj).encode()
        success = reply.status == 200 and reply.raw is None
        try:
            # count before sending: once the bytes leave, the client may act (and be killed) at once
            if success:
                with st.lock:
                    st.successful += 1
                    st.per_key_success[key] += 1
                    st.per_prompt_success[prompt_hash(req)] += 1
            with st.lock:
                st.by_status[reply.status] += 1
                st.by_kind[reply.kind] += 1
                st.log.append({"key": key, "status": reply.status, "outcome": reply.kind})
            self._send(reply.status, body, reply.headers)
        except OSError:
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    owner: "OpenAIServer"


class OpenAIServer:
    """Start with `.start()` (or as a context manager); `.url` is the base URL ending in /v1."""

    def __init__(self, responder: Callable[[dict[str, Any]], str | Reply] | None = None, delay: float = 0.0,
                 faults: FaultPlan | None = None, host: str = "127.0.0.1", port: int = 0,
                 models: tuple[str, ...] = ("loopback-model",)):
        self.responder = responder or default_responder
        self.delay = delay
        self.faults = faults
        self.models = models
        self.stats = Stats()
        self._host, self._port = host, port
        self._queue: list[tuple[str | None, Reply]] = []
        self._queue_lock = threading.Lock()
        self._gate_after: int | None = None
        self._gate_open = threading.Event()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> "OpenAIServer":
        self._httpd = _HTTPServer((self._host, self._port), _Handler)
        self._httpd.owner = self
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-loopback", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._gate_open.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "OpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}/v1"

    # ---- scripting ----------------------------------------------------------------------------------
    def queue(self, reply: Reply | str, key: str | None = None) -> None:
        """Serve `reply` to the next request (for `key`, or any request when key is None)."""
        with self._queue_lock:
            self._queue.append((key, reply if isinstance(reply, Reply) else Reply(text=reply)))

    def _next_queued(self, key: str) -> Reply | None:
        with self._queue_lock:
            for i, (k, reply) in enumerate(self._queue):
                if k is None or k == key:
                    del self._queue[i]
                    return reply
        return None

    def hold_after(self, n: int) -> None:
        """Hold every request that arrives once `n` successful answers were delivered."""
        self._gate_open.clear()
        self._gate_after = n

    def release(self) -> None:
        """Let held requests go (each checks whether its client is still there first)."""
        self._gate_open.set()
        self._gate_after = None

    def reset_stats(self) -> None:
        with self.stats.lock:
            self.stats.reset()

    def wait_for(self, predicate: Callable[[Stats], bool], timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.stats.lock:
                if predicate(self.stats):
                    return True
            time.sleep(0.01)
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args()
    server = OpenAIServer(delay=args.delay, port=args.port).start()
    print(f"PORT {server.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
