"""`primer serve`: an OpenAI-compatible HTTP server over a release (stdlib http.server + threads).

    server = ModelServer.from_release("artifacts/release/<key>", port=8000).start()
    client = openai.OpenAI(base_url=server.url, api_key="unused")
    client.completions.create(model=server.model_name, prompt="def fib(n):", max_tokens=64, temperature=0)

Endpoints:
- `GET  /v1/models`                -> the one served model
- `POST /v1/completions`           -> prompt (string or list of strings), max_tokens (default 16), temperature
                                     (default 1), top_p, n, stop (string or list), seed; `usage` counts tokens
- `POST /v1/chat/completions`      -> messages; a base model has no chat template, so the prompt is the
                                     messages' contents joined by blank lines (what `primer.teacher` sends to a
                                     completions endpoint), then a newline
- `GET  /health`

Generation is Primer's batched KV-cache `model.generate` (via `PrimerBackend`). Requests are queued; a
single worker thread takes the oldest and, for `batch_wait_ms`, gathers later requests with the same
sampling settings (greedy ones always batch; a request with a `seed` runs alone so its samples do not
depend on its neighbours) up to `max_batch` sequences, and generates them together. Greedy completions equal
`PrimerBackend.generate` on the same release (batched and solo generation give the same tokens).

Not supported (answered with a 400 naming the field): stream, logprobs, echo, best_of > 1, token-id prompts.
A prompt longer than the context minus max_tokens keeps its last tokens (as the scoring backend does).
With `api_key` set, requests need `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("primer.serve")
MAX_N = 64
MAX_BODY = 8 << 20


class RequestError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class _Job:
    prompts: list[str]
    params: dict[str, Any]          # max_new_tokens, temperature, top_p, stop (tuple), n, seed
    future: Future = field(default_factory=Future)

    @property
    def batch_key(self) -> tuple | None:
        p = self.params
        if p["seed"] is not None:
            return None             # seeded sampling runs alone
        greedy = p["temperature"] <= 0
        return (p["max_new_tokens"], tuple(p["stop"]), greedy, None if greedy else (p["temperature"], p["top_p"], p["n"]))

    @property
    def sequences(self) -> int:
        return len(self.prompts) * (1 if self.params["temperature"] <= 0 else self.params["n"])


class Batcher:
    """One worker thread running the backend; compatible queued jobs are generated together."""

    def __init__(self, backend, max_batch: int = 16, wait_s: float = 0.005):
        self.backend, self.max_batch, self.wait_s = backend, max_batch, wait_s
        self.queue: queue.Queue[_Job | None] = queue.Queue()
        self.stats = {"batches": 0, "jobs": 0, "sequences": 0, "max_jobs_in_batch": 0}
        self._pending: list[_Job] = []
        self._thread = threading.Thread(target=self._loop, name="primer-serve-batcher", daemon=True)
        self._thread.start()

    def submit(self, prompts: list[str], **params) -> Future:
        job = _Job(prompts, params)
        self.queue.put(job)
        return job.future

    def close(self) -> None:
        self.queue.put(None)
        self._thread.join(timeout=10)

    def _next(self, timeout: float | None) -> _Job | None | bool:
        if self._pending:
            return self._pending.pop(0)
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return False

    def _loop(self) -> None:
        while True:
            first = self._next(None)
            if first is None:
                return
            batch, total = [first], first.sequences
            key = first.batch_key
            if key is not None:
                deadline = time.monotonic() + self.wait_s
                held: list[_Job] = []
                while total < self.max_batch:
                    left = deadline - time.monotonic()
                    nxt = self._next(max(0.0, left)) if left > 0 or self._pending else False
                    if nxt is False:
                        break
                    if nxt is None:
                        self.queue.put(None)
                        break
                    if nxt.batch_key == key and total + nxt.sequences <= self.max_batch:
                        batch.append(nxt)
                        total += nxt.sequences
                    else:
                        held.append(nxt)
                self._pending = held + self._pending
            self._run(batch)

    def _run(self, batch: list[_Job]) -> None:
        p = batch[0].params
        prompts = [x for job in batch for x in job.prompts]
        try:
            out = self.backend.complete(prompts, max_new_tokens=p["max_new_tokens"], stop=list(p["stop"]),
                                        temperature=p["temperature"], top_p=p["top_p"], n=p["n"], seed=p["seed"])
        except Exception as e:  # a bad batch fails its requests, never the server
            log.exception("generation failed")
            for job in batch:
                job.future.set_exception(e)
            return
        self.stats["batches"] += 1
        self.stats["jobs"] += len(batch)
        self.stats["sequences"] += sum(j.sequences for j in batch)
        self.stats["max_jobs_in_batch"] = max(self.stats["max_jobs_in_batch"], len(batch))
        i = 0
        for job in batch:
            job.future.set_result(out[i:i + len(job.prompts)])
            i += len(job.prompts)


def _num(body: dict[str, Any], name: str, default: float, lo: float, hi: float, integer: bool = False) -> Any:
    v = body.get(name, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and int(v) != v):
        raise RequestError(400, f"'{name}' must be {'an integer' if integer else 'a number'}, got {v!r}", name)
    if not lo <= v <= hi:
        raise RequestError(400, f"'{name}' must be in [{lo}, {hi}], got {v!r}", name)
    return int(v) if integer else float(v)


class ModelServer:
    """The HTTP front end. `start()` serves in a background thread; `serve_forever()` in this one."""

    def __init__(self, backend, model_name: str, *, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 16,
                 batch_wait_ms: float = 5.0, api_key: str | None = None, max_tokens_cap: int = 1024):
        self.backend, self.model_name = backend, model_name
        self.max_tokens_cap = min(max_tokens_cap, backend.model.cfg.max_seq_len - 1)
        self.api_key = api_key or None
        self.created = int(time.time())
        self.usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._usage_lock = threading.Lock()
        self.batcher = Batcher(backend, max_batch, batch_wait_ms / 1000)
        self.httpd = ThreadingHTTPServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @classmethod
    def from_release(cls, release: str, store=None, *, model_name: str = "", device: str = "auto", dtype: str = "fp32",
                     max_batch: int = 16, **kw) -> "ModelServer":
        from primer.export import release_backend

        backend = release_backend(release, store, backend="primer", device=device, dtype=dtype, batch_size=max_batch)
        return cls(backend, model_name or backend.name, max_batch=max_batch, **kw)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}/v1"

    def start(self) -> "ModelServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="primer-serve", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.httpd.server_close()
        self.batcher.close()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ API
    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": self.created,
                                            "owned_by": "primer"}]}

    def _params(self, body: dict[str, Any], default_max_tokens: int) -> dict[str, Any]:
        for name in ("stream", "echo"):
            if body.get(name):
                raise RequestError(400, f"'{name}' is not supported by primer serve", name)
        if body.get("logprobs") not in (None, False, 0) or body.get("top_logprobs"):
            raise RequestError(400, "'logprobs' is not supported by primer serve", "logprobs")
        if body.get("best_of") not in (None, 1):
            raise RequestError(400, "'best_of' > 1 is not supported by primer serve", "best_of")
        model = body.get("model")
        if model != self.model_name:
            raise RequestError(404, f"The model '{model}' does not exist; this server serves '{self.model_name}'",
                               "model", "model_not_found")
        stop = body.get("stop")
        if stop is None:
            stop = []
        elif isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise RequestError(400, "'stop' must be a string or a list of strings", "stop")
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise RequestError(400, "'seed' must be an integer", "seed")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        return {"max_new_tokens": _num({"max_tokens": max_tokens}, "max_tokens", default_max_tokens, 1,
                                       self.max_tokens_cap, integer=True),
                "temperature": _num(body, "temperature", 1.0, 0.0, 2.0),
                "top_p": _num(body, "top_p", 1.0, 0.0, 1.0) or 1.0,
                "n": _num(body, "n", 1, 1, MAX_N, integer=True),
                "stop": tuple(s for s in stop if s), "seed": seed}

    def _generate(self, prompts: list[str], params: dict[str, Any]):
        out = self.batcher.submit(prompts, **params).result()
        pt = sum(row[0].prompt_tokens for row in out if row)
        ct = sum(c.completion_tokens for row in out for c in row)
        with self._usage_lock:
            self.usage["requests"] += 1
            self.usage["prompt_tokens"] += pt
            self.usage["completion_tokens"] += ct
        return out, {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}

    def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise RequestError(400, "'prompt' must be a string or a non-empty list of strings (token ids are not "
                                    "supported)", "prompt")
        params = self._params(body, 16)
        out, usage = self._generate(prompts, params)
        choices = [{"index": i * params["n"] + j, "text": c.text, "logprobs": None, "finish_reason": c.finish_reason}
                   for i, row in enumerate(out) for j, c in enumerate(row)]
        return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                "model": self.model_name, "choices": choices, "usage": usage}

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "'messages' must be a non-empty list", "messages")
        parts = []
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):  # [{"type": "text", "text": ...}]
                content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
            if not isinstance(content, str):
                raise RequestError(400, "each message needs a string 'content'", "messages")
            parts.append(content)
        params = self._params(body, min(256, self.max_tokens_cap))
        out, usage = self._generate(["\n\n".join(parts) + "\n"], params)
        choices = [{"index": j, "message": {"role": "assistant", "content": c.text}, "logprobs": None,
                    "finish_reason": c.finish_reason} for j, c in enumerate(out[0])]
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model_name, "choices": choices, "usage": usage}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "primer-serve"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    @property
    def owner(self) -> ModelServer:
        return self.server.owner  # type: ignore[attr-defined]

    def _send(self, status: int, obj: dict[str, Any]) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        key = self.owner.api_key
        if not key:
            return True
        got = self.headers.get("Authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {key}".encode())

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            if path == "/health" and method == "GET":
                return self._send(200, {"status": "ok"})
            if not self._authorized():
                raise RequestError(401, "Incorrect API key provided", None, "invalid_api_key")
            if method == "GET" and path == "/v1/models":
                return self._send(200, self.owner.models())
            if method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    raise RequestError(413, "request body too large")
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    raise RequestError(400, "request body is not valid JSON") from None
                if not isinstance(body, dict):
                    raise RequestError(400, "request body must be a JSON object")
                fn = self.owner.completions if path.endswith("/v1/completions") else self.owner.chat
                return self._send(200, fn(body))
            raise RequestError(404, f"no route {method} {path}", code="not_found")
        except RequestError as e:
            self._send(e.status, e.body())
        except ValueError as e:  # e.g. max_tokens beyond the context
            self._send(400, RequestError(400, str(e)).body())
        except Exception as e:
            log.exception("request failed")
            self._send(500, RequestError(500, f"internal error: {type(e).__name__}", kind="server_error").body())

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")
