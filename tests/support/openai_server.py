"""A loopback OpenAI-compatible HTTP server for tests and benchmarks (stdlib only, real HTTP/1.1).

    with OpenAIServer(responder=lambda req: "hello") as server:
        client = openai.OpenAI(base_url=server.url, api_key="test")

Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models. Answers are proper OpenAI JSON
with `usage` (tokens estimated as characters / 4 unless a `Reply` says otherwise).

Batch API (what `teacher.mode=batch` uses): POST /v1/files (multipart upload, purpose "batch"), GET
/v1/files/{id} and /v1/files/{id}/content, POST /v1/batches, GET /v1/batches (list, cursor `after`),
GET /v1/batches/{id}, POST /v1/batches/{id}/cancel. A batch is `validating` when created; each retrieve
moves it on: validate the JSONL (bad lines fail the batch), then `in_progress`, answering `batch_step`
lines per retrieve (default: a third of them) through the same `responder`, then `completed` with an
`output_file_id` (200 lines) and an `error_file_id` (a non-200 `Reply` -> a line with that status and
body; `batch_line_error(line) -> {"code", "message"}` -> a line with that error object). `hold_batches()`
(after `n` lines: `hold_batches(n)`) keeps batches `in_progress` without answering more until
`release_batches()`; `batch_api.expire_after = n` expires them once `n` lines were answered (the rest of
the lines error with `batch_expired`); `batch_api.enabled = False` makes the endpoint one without a Batch API (404). Each answered line counts as a
successful answer for its `custom_id` (`stats.per_key_success`), exactly like an online answer, so tests
count what was paid per key whichever mode sent it; `stats.batch_calls` counts the Batch API calls by
kind (files.create, batches.create, batches.retrieve, batches.list, files.content, ...).
`auth_key`: when set, every request without `Authorization: Bearer <auth_key>` gets a 401.

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
per key and per prompt hash, by status, held, `client_gone` (the client hung up before the answer), and
the `prompt_tokens` / `completion_tokens` of every successful answer (what a provider would bill).
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


def completion_body(req: dict[str, Any], reply: Reply, chat: bool) -> dict[str, Any]:
    """The OpenAI JSON of a successful answer (chat.completion or text_completion) with `usage`."""
    model = req.get("model", "loopback")
    text = reply.text or ""
    pt = reply.prompt_tokens if reply.prompt_tokens is not None else len(prompt_text(req)) // 4 + 1
    ct = reply.completion_tokens if reply.completion_tokens is not None else len(text) // 4 + 1
    usage = {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}
    now = int(time.time())
    if chat:
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": now,
                "model": model, "system_fingerprint": "fp_loopback",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                             "finish_reason": reply.finish_reason}], "usage": usage}
    return {"id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion", "created": now, "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": reply.finish_reason}],
            "usage": usage}


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
        self.prompt_tokens = 0        # usage of every successful answer (online and batch): what was billed
        self.completion_tokens = 0
        self.batch_calls: Counter[str] = Counter()
        self.batch_lines_failed = 0
        self.log: list[dict[str, Any]] = []

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"total": self.total, "successful": self.successful, "held": self.held,
                    "client_gone": self.client_gone, "by_status": dict(self.by_status),
                    "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                    "by_kind": dict(self.by_kind), "max_in_flight": self.max_in_flight,
                    "batch_calls": dict(self.batch_calls), "batch_lines_failed": self.batch_lines_failed}


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
    def _authorized(self) -> bool:
        """False (after answering 401) when the server has an `auth_key` and the request lacks it."""
        owner: OpenAIServer = self.server.owner
        if owner.auth_key is None or self.headers.get("Authorization") == f"Bearer {owner.auth_key}":
            return True
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with owner.stats.lock:
            owner.stats.total += 1
            owner.stats.by_status[401] += 1
        self._send(401, json.dumps({"error": {"message": "Incorrect API key provided", "type":
                                              "invalid_request_error", "code": "invalid_api_key"}}).encode())
        return False

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, obj if isinstance(obj, bytes) else json.dumps(obj).encode())

    def do_GET(self) -> None:
        if not self._authorized():
            return
        route = self.path.split("?", 1)[0].rstrip("/")
        if "/files" in route or "/batches" in route:
            self._json(*self.server.owner.batch_api.get(route, self.path))
        elif route.endswith("/models"):
            body = {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "loopback"}
                                               for m in self.server.owner.models]}
            self._send(200, json.dumps(body).encode())
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:
        owner: OpenAIServer = self.server.owner
        if not self._authorized():
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        route = self.path.split("?", 1)[0].rstrip("/")
        if route.endswith("/files") or "/batches" in route:
            self._json(*owner.batch_api.post(route, raw, self.headers.get("Content-Type", "")))
            return
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
        data = completion_body(req, reply, chat) if reply.raw is None else None
        body = reply.raw if data is None else json.dumps(data).encode()
        success = reply.status == 200 and data is not None
        try:
            # count before sending: once the bytes leave, the client may act (and be killed) at once
            if success:
                with st.lock:
                    st.successful += 1
                    st.per_key_success[key] += 1
                    st.per_prompt_success[prompt_hash(req)] += 1
                    st.prompt_tokens += data["usage"]["prompt_tokens"]
                    st.completion_tokens += data["usage"]["completion_tokens"]
            with st.lock:
                st.by_status[reply.status] += 1
                st.by_kind[reply.kind] += 1
                st.log.append({"key": key, "status": reply.status, "outcome": reply.kind})
            self._send(reply.status, body, reply.headers)
        except OSError:
            self.close_connection = True


def _multipart(raw: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, bytes)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    if not msg.is_multipart():
        return {}
    return {part.get_param("name", header="content-disposition"): (part.get_filename(),
                                                                   part.get_payload(decode=True) or b"")
            for part in msg.iter_parts()}


def _api_error(status: int, message: str, code: str | None = None) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


class BatchAPI:
    """Files and batches behind the handler's /v1/files and /v1/batches routes (see the module docs)."""

    TERMINAL = ("completed", "failed", "expired", "cancelled")
    ENDPOINTS = ("/v1/chat/completions", "/v1/completions")

    def __init__(self, owner: "OpenAIServer"):
        self.owner = owner
        self.lock = threading.Lock()
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}   # id -> {"obj", "lines", "done", "out", "err"}
        self.hold_after: int | None = None   # see OpenAIServer.hold_batches
        self.answered = 0                     # batch lines answered, all batches
        self.enabled = True                   # False: /files and /batches answer 404 (no Batch API here)
        self.expire_after: int | None = None   # in-progress batches expire once this many lines were answered

    def _count(self, what: str) -> None:
        with self.owner.stats.lock:
            self.owner.stats.batch_calls[what] += 1

    def _new_file(self, data: bytes, purpose: str, filename: str) -> dict[str, Any]:
        fid = f"file-{uuid.uuid4().hex[:24]}"
        obj = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
               "filename": filename, "purpose": purpose, "status": "processed"}
        self.files[fid] = {"obj": obj, "data": data}
        return obj

    # ---- routes -------------------------------------------------------------------------------------
    def post(self, route: str, raw: bytes, content_type: str) -> tuple[int, Any]:
        if not self.enabled:
            self._count("not_found")
            return _api_error(404, f"no route {route}")
        segs = route.strip("/").split("/")
        if segs[-1] == "files":
            self._count("files.create")
            fields = _multipart(raw, content_type)
            if "file" not in fields:
                return _api_error(400, "a multipart field 'file' is required")
            purpose = fields.get("purpose", (None, b""))[1].decode()
            with self.lock:
                return 200, self._new_file(fields["file"][1], purpose, fields["file"][0] or "upload.jsonl")
        rest = segs[segs.index("batches") + 1:]
        if not rest:
            self._count("batches.create")
            return self._create(raw)
        if len(rest) == 2 and rest[1] == "cancel":
            self._count("batches.cancel")
            with self.lock:
                b = self.batches.get(rest[0])
                if b is None:
                    return _api_error(404, f"No batch found with id '{rest[0]}'.")
                if b["obj"]["status"] not in self.TERMINAL:
                    self._finish(b, "cancelled")
                return 200, dict(b["obj"])
        return _api_error(404, f"no route {route}")

    def get(self, route: str, full_path: str) -> tuple[int, Any]:
        if not self.enabled:
            self._count("not_found")
            return _api_error(404, f"no route {route}")
        segs = route.strip("/").split("/")
        if "files" in segs:
            rest = segs[segs.index("files") + 1:]
            with self.lock:
                f = self.files.get(rest[0]) if rest else None
                if f is None:
                    return _api_error(404, f"No such File object: {rest[0] if rest else ''}")
                if rest[1:] == ["content"]:
                    self._count("files.content")
                    return 200, f["data"]
                self._count("files.retrieve")
                return 200, dict(f["obj"])
        rest = segs[segs.index("batches") + 1:]
        if not rest:
            self._count("batches.list")
            return 200, self._list(full_path)
        self._count("batches.retrieve")
        with self.lock:
            b = self.batches.get(rest[0])
            if b is None:
                return _api_error(404, f"No batch found with id '{rest[0]}'.")
            self._advance(b)
            return 200, dict(b["obj"])

    # ---- batches ------------------------------------------------------------------------------------
    def _create(self, raw: bytes) -> tuple[int, Any]:
        try:
            req = json.loads(raw)
        except ValueError:
            return _api_error(400, "invalid JSON body")
        fid, endpoint = req.get("input_file_id"), req.get("endpoint")
        if endpoint not in self.ENDPOINTS:
            return _api_error(400, f"endpoint {endpoint!r} is not supported")
        with self.lock:
            if fid not in self.files:
                return _api_error(404, f"No such File object: {fid}")
            now = int(time.time())
            bid = f"batch_{uuid.uuid4().hex[:24]}"
            obj = {"id": bid, "object": "batch", "endpoint": endpoint, "errors": None, "input_file_id": fid,
                   "completion_window": req.get("completion_window", "24h"), "status": "validating",
                   "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
                   "expires_at": now + 86400, "finalizing_at": None, "completed_at": None, "failed_at": None,
                   "expired_at": None, "cancelling_at": None, "cancelled_at": None,
                   "request_counts": {"total": 0, "completed": 0, "failed": 0},
                   "metadata": req.get("metadata") or None}
            self.batches[bid] = {"obj": obj, "lines": [], "done": 0, "out": [], "err": []}
            return 200, dict(obj)

    def _list(self, full_path: str) -> dict[str, Any]:
        from urllib.parse import parse_qs, urlsplit

        q = parse_qs(urlsplit(full_path).query)
        limit = int(q.get("limit", ["20"])[0])
        after = q.get("after", [None])[0]
        with self.lock:
            ids = list(reversed(list(self.batches)))          # newest first, as the real API lists them
            start = ids.index(after) + 1 if after in ids else 0
            page = [dict(self.batches[i]["obj"]) for i in ids[start:start + limit]]
            more = start + limit < len(ids)
        return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None, "has_more": more}

    def _advance(self, b: dict[str, Any]) -> None:
        """One retrieve's worth of progress: validate, then answer `batch_step` lines, then complete."""
        obj, now = b["obj"], int(time.time())
        if obj["status"] == "validating":
            lines, errors = [], []
            for n, text in enumerate(self.files[obj["input_file_id"]]["data"].decode().splitlines(), 1):
                if not text.strip():
                    continue
                try:
                    line = json.loads(text)
                    assert isinstance(line.get("custom_id"), str) and isinstance(line.get("body"), dict)
                    assert line.get("url") == obj["endpoint"] and line.get("method") == "POST"
                except (ValueError, AssertionError, AttributeError):
                    errors.append({"code": "invalid_request", "line": n, "param": None,
                                   "message": "each line needs custom_id, method POST, the batch's url and a body"})
                    continue
                lines.append(line)
            if len({ln["custom_id"] for ln in lines}) != len(lines):
                errors.append({"code": "duplicate_custom_id", "line": None, "param": None,
                               "message": "custom_id values must be unique within a batch"})
            if errors or not lines:
                obj.update(status="failed", failed_at=now, errors={"object": "list", "data": errors or [
                    {"code": "empty_file", "line": None, "param": None, "message": "the input file is empty"}]})
                return
            b["lines"] = lines
            obj.update(status="in_progress", in_progress_at=now,
                       request_counts={"total": len(lines), "completed": 0, "failed": 0})
            return
        if obj["status"] != "in_progress":
            return
        if self.expire_after is not None and self.answered >= self.expire_after:
            for line in b["lines"][b["done"]:]:
                b["err"].append({"id": f"batch_req_{uuid.uuid4().hex[:16]}", "custom_id": line["custom_id"],
                                 "response": None, "error": {"code": "batch_expired", "message": "This request "
                                 "could not be executed before the completion window expired."}})
            b["done"] = len(b["lines"])
            self._finish(b, "expired")
            return
        step = self.owner.batch_step or max(1, -(-len(b["lines"]) // 3))
        if self.hold_after is not None:
            step = min(step, max(0, self.hold_after - self.answered))
        for line in b["lines"][b["done"]:b["done"] + step]:
            self._answer_line(b, line)
            b["done"] += 1
            self.answered += 1
        obj["request_counts"] = {"total": len(b["lines"]), "completed": len(b["out"]), "failed": len(b["err"])}
        if b["done"] == len(b["lines"]):
            self._finish(b, "completed")

    def _answer_line(self, b: dict[str, Any], line: dict[str, Any]) -> None:
        owner, st = self.owner, self.owner.stats
        cid, body = line["custom_id"], line["body"]
        rid = f"batch_req_{uuid.uuid4().hex[:16]}"
        err = owner.batch_line_error(line) if owner.batch_line_error else None
        if err is not None:
            b["err"].append({"id": rid, "custom_id": cid, "response": None, "error": err})
            with st.lock:
                st.batch_lines_failed += 1
            return
        try:
            out = owner.responder(body)
        except Exception as e:  # a broken responder is a 500 line, visibly
            out = Reply(status=500, raw=json.dumps({"error": {"message": f"responder: {e!r}"}}).encode())
        reply = out if isinstance(out, Reply) else Reply(text=str(out))
        if reply.status != 200 or reply.raw is not None:
            try:
                rbody = json.loads(reply.raw) if reply.raw else {}
            except ValueError:
                rbody = {"error": {"message": "malformed body", "code": "malformed"}}
            b["err"].append({"id": rid, "custom_id": cid, "error": None,
                             "response": {"status_code": reply.status, "request_id": rid, "body": rbody}})
            with st.lock:
                st.batch_lines_failed += 1
            return
        chat = line["url"].endswith("/chat/completions")
        data = completion_body(body, reply, chat)
        b["out"].append({"id": rid, "custom_id": cid, "error": None, "response": {
            "status_code": 200, "request_id": rid, "body": data}})
        with st.lock:   # paid: counted like an online answer
            st.successful += 1
            st.prompt_tokens += data["usage"]["prompt_tokens"]
            st.completion_tokens += data["usage"]["completion_tokens"]
            st.per_key_success[cid] += 1
            st.per_prompt_success[prompt_hash(body)] += 1

    def _finish(self, b: dict[str, Any], status: str) -> None:
        obj, now = b["obj"], int(time.time())
        for kind, field_name in (("out", "output_file_id"), ("err", "error_file_id")):
            if b[kind]:
                data = "".join(json.dumps(x) + "\n" for x in b[kind]).encode()
                obj[field_name] = self._new_file(data, "batch_output", f"{obj['id']}_{kind}.jsonl")["id"]
        obj["request_counts"] = {"total": len(b["lines"]), "completed": len(b["out"]), "failed": len(b["err"])}
        obj.update({"status": status, f"{status}_at": now, "finalizing_at": now})


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
        self.auth_key: str | None = None
        self.batch_step = 0                 # lines answered per retrieve of an in-progress batch; 0 = a third
        self.batch_line_error: Callable[[dict[str, Any]], dict[str, str] | None] | None = None
        self.batch_api = BatchAPI(self)

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

    def hold_batches(self, after_lines: int = 0) -> None:
        """Once `after_lines` batch lines were answered (over all batches), keep every batch `in_progress`
        without answering more until `release_batches()`."""
        self.batch_api.hold_after = after_lines

    def release_batches(self) -> None:
        self.batch_api.hold_after = None

    @property
    def batches(self) -> dict[str, dict[str, Any]]:
        """The batches created so far, by id (the public batch objects)."""
        with self.batch_api.lock:
            return {k: dict(v["obj"]) for k, v in self.batch_api.batches.items()}

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
