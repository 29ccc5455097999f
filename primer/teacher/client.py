"""The one client Primer uses to talk to an OpenAI-compatible endpoint.

    teacher = Teacher(cfg.teacher, Ledger(store, "synthesize"))
    reqs = [teacher.request([{"role": "user", "content": p}], sample_index=i) for i, p in enumerate(prompts)]
    answers = teacher.run_sync(reqs)          # or: await teacher.run(reqs); order preserved
    teacher.publish_usage("synthesize")       # Prefect table artifact (no-op outside a run)

- HTTP through primer/teacher/transport.py (one aiohttp session per run; why not the openai SDK: there).
  Retries are ours: exponential
  backoff with jitter on 429, 5xx, 408/409, timeouts, connection errors and malformed answers; a 429's
  Retry-After pauses every sender until it has passed. 401/403 and 404 (unknown model) stop the run at
  once with a one-line `TeacherError` naming the key variable or the model; nothing retries those.
- At most `concurrency` requests in flight (requests are admitted in order), each with `timeout_s`.
- Each request's key is `request_key(model, messages, params, sample_index)`; it is sent as the
  `X-Primer-Key` header (harmless to real endpoints, lets test servers count per key). With a ledger, keys
  already answered are never sent again (`cached=True`) and new answers are committed as they arrive.
- Budget: `max_tokens_total` / `max_cost_usd` cover the whole ledger (all runs). A request is admitted only
  if what is spent plus the worst case of everything in flight (prompt chars / 2 + max_tokens each) stays
  within the cap, so the cap is not overrun; the first request that does not fit stops admission. The rest
  answer `error="budget_exhausted"` and `usage.stopped` says why.
- The API key is registered with `primer.secrets` (masked in every log record) and never logged.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import aiohttp

from primer import dashboard, secrets
from primer.documents import LONE_SURROGATE
from primer.errors import ConfigError, PrimerError
from primer.settings.synth import TeacherConfig
from primer.teacher.ledger import Ledger
from primer.teacher.transport import HTTPStatus, Transport

log = logging.getLogger("primer.teacher")
KEY_HEADER = "X-Primer-Key"
BUDGET_EXHAUSTED = "budget_exhausted"
RETRY_AFTER_CAP_S = 600.0   # a Retry-After longer than this is treated as this


class TeacherError(PrimerError):
    """The teacher endpoint refused us for a reason retries cannot fix (auth, missing secret, ...)."""


def request_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any], sample_index: int = 0) -> str:
    blob = json.dumps({"model": model, "messages": messages, "params": params, "sample": sample_index},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass
class TeacherRequest:
    key: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)   # sent as-is (over the config's sampling)
    meta: dict[str, Any] = field(default_factory=dict)     # caller's bookkeeping; neither sent nor hashed


@dataclass
class TeacherAnswer:
    key: str
    text: str | None
    error: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    finish_reason: str | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.text is not None and self.error is None


@dataclass
class TeacherUsage:
    """Counters of one `run` (or, on `Teacher.usage`, of every run of this Teacher)."""

    requests: int = 0            # answers asked for (unique keys)
    cached: int = 0              # answered from the ledger, not sent
    sent: int = 0                # HTTP attempts
    succeeded: int = 0
    failed: int = 0              # gave up after retries / non-retryable
    not_sent_budget: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    timeouts: int = 0
    connection_errors: int = 0
    malformed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    ledger_tokens: int = 0       # whole ledger after the run (what the budget is checked against)
    ledger_cost_usd: float | None = 0.0
    wall_s: float = 0.0
    stopped: str | None = None
    reserved_tokens: int = 0     # at a budget stop: worst case of the requests then in flight (since answered)
    reserved_cost_usd: float = 0.0
    spent_at_stop: int = 0       # at a budget stop: ledger tokens spent when admission stopped
    batches: int = 0             # batch mode: batches submitted by this run
    batches_resumed: int = 0     # batch mode: batches of an earlier (killed) run resumed by their id
    batch_errors: dict[str, int] = field(default_factory=dict)   # batch mode: failed lines per reason

    def add(self, other: "TeacherUsage") -> None:
        for k, v in asdict(other).items():
            if k == "stopped":
                self.stopped = v or self.stopped
            elif k in ("reserved_tokens", "reserved_cost_usd", "spent_at_stop"):   # of the latest stop
                if other.stopped:
                    setattr(self, k, v)
            elif k == "batch_errors":
                for reason, n in v.items():
                    self.batch_errors[reason] = self.batch_errors.get(reason, 0) + n
            elif k in ("ledger_tokens", "ledger_cost_usd"):   # snapshots of a growing ledger: the latest
                mine = getattr(self, k)                          # is the largest (a phase with no teacher
                setattr(self, k, v if mine is None or (v is not None and v > mine) else mine)  # reports 0)
            elif k == "cost_usd":
                self.cost_usd = None if (self.cost_usd is None or v is None) else self.cost_usd + v
            else:
                setattr(self, k, getattr(self, k) + v)

    def rows(self, model: str) -> list[dict[str, Any]]:
        d = asdict(self)
        d["cost_usd"] = "unknown price" if self.cost_usd is None else round(self.cost_usd, 6)
        d["ledger_cost_usd"] = "unknown price" if self.ledger_cost_usd is None else round(self.ledger_cost_usd, 6)
        d["wall_s"] = round(self.wall_s, 3)
        d["stopped"] = self.stopped or ""
        d["batch_errors"] = ", ".join(f"{r}: {n}" for r, n in sorted(self.batch_errors.items()))
        return [{"metric": "model", "value": model}] + [{"metric": k, "value": v} for k, v in d.items()]


@dataclass
class TeacherProgress:
    """What a `progress` callback of `Teacher.run` receives after each answer (and once at the start)."""

    phase: str
    done: int                    # answered so far (ledger hits included)
    total: int                   # answers asked for (unique keys)
    cached: int                  # answered from the ledger, not sent
    tokens: int                  # prompt + completion tokens paid by this run so far
    usd: float | None            # their cost at the configured price (None: unknown price)
    rate: float                  # new answers per second since the run started
    eta_s: float | None          # seconds left at that rate (None: no rate yet)
    log_due: bool = False        # a periodic log line is due (every teacher.progress_every_s, and at the end)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    def line(self) -> str:
        return (f"teacher{f' [{self.phase}]' if self.phase else ''}: {self.done}/{self.total} answered "
                f"({self.cached} from the ledger), {self.tokens:,} tokens, "
                f"{'unknown price' if self.usd is None else f'${self.usd:.4f}'}, {self.rate:.1f} req/s, "
                f"ETA {'-' if self.eta_s is None else f'{self.eta_s:.0f}s'}")


class _Retry(Exception):
    def __init__(self, kind: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.kind, self.detail, self.retry_after = kind, detail, retry_after


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def refusal_message(cfg: TeacherConfig, status: int, detail: str) -> str | None:
    """The one-line reason to stop at once for a 401/403 (credentials) or 404 (model); None otherwise."""
    where = cfg.resolved_base_url() or "the OpenAI API"
    if status in (401, 403):
        return (f"teacher: the endpoint refused our credentials ({detail}) at {where}; check "
                f"${cfg.api_key_env} or teacher.secret_block")
    if status == 404:
        return f"teacher: model {cfg.model!r} not found at {where} ({detail}); fix teacher.model (or teacher.base_url)"
    return None


def status_detail(e: Any) -> str:
    """`HTTP <status>: <message>` of a status error (transport.HTTPStatus, or the SDK's in batch mode),
    secrets masked, one line."""
    return f"HTTP {e.status_code}: {secrets.redact(str(getattr(e, 'message', e)))[:300]}".replace("\n", " ")


def parse_completion(data: Any, api: str, messages: list[dict[str, Any]]) -> tuple[str, int, int, str | None]:
    """(text, prompt_tokens, completion_tokens, finish_reason) of an OpenAI answer body; raises KeyError,
    IndexError, TypeError, AttributeError or ValueError on a malformed one. Usage is estimated (characters
    / 4) when the server omits it, so budgets still work. A lone surrogate in the text becomes U+FFFD, as
    a UTF-8 decoder does with a broken sequence: the answer was paid for, and it is kept."""
    choice = data["choices"][0]
    text = choice["message"]["content"] if api == "chat" else choice["text"]
    if text is not None and not isinstance(text, str):
        raise TypeError("content is not a string")
    finish = choice.get("finish_reason")
    usage = data.get("usage") or {}
    pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    text = text or ""
    if not text.isascii():
        text = LONE_SURROGATE.sub("\ufffd", text)  # from a server that cut a character in two
    if not usage:
        pt, ct = _prompt_chars(messages) // 4 + 1, len(text) // 4 + 1
    return text, pt, ct, finish


def _prompt_chars(messages: list[dict[str, Any]]) -> int:
    total = 0
    for m in messages:
        c = m.get("content", "")
        total += len(c) if isinstance(c, str) else len(json.dumps(c))
    return total


class Teacher:
    def __init__(self, cfg: TeacherConfig, ledger: Ledger | None = None):
        self.cfg = cfg
        self.ledger = ledger
        self.usage = TeacherUsage()
        self.last_run = TeacherUsage()
        self._api_key: str | None = None
        self._price = cfg.price()
        self.phase = ""                 # label in progress log lines (e.g. "textbooks")
        secrets.install_log_redaction()

    # ---- configuration -------------------------------------------------------------------------------
    def is_configured(self) -> bool:
        return self.cfg.is_configured()

    def skip_reason(self) -> str | None:
        return self.cfg.skip_reason()

    def api_key(self) -> str:
        """The key from $api_key_env, else the Prefect Secret block, else "EMPTY" (keyless local servers)."""
        if self._api_key is not None:
            return self._api_key
        import os

        key = os.environ.get(self.cfg.api_key_env, "")
        if not key and self.cfg.secret_block:
            try:
                from prefect.blocks.system import Secret

                value = Secret.load(self.cfg.secret_block).get()
            except Exception as e:  # never echo the value, only the block's name
                raise TeacherError(f"teacher.secret_block: cannot load Prefect Secret block "
                                   f"{self.cfg.secret_block!r} ({type(e).__name__}); create it with "
                                   f"`Secret(value='sk-...').save({self.cfg.secret_block!r})` or set "
                                   f"${self.cfg.api_key_env}") from None
            key = value if isinstance(value, str) else str(value.get("api_key") or value.get("key") or "")
        secrets.register(key)
        self._api_key = key or "EMPTY"
        return self._api_key

    def request(self, messages: list[dict[str, Any]], params: dict[str, Any] | None = None,
                sample_index: int = 0, meta: dict[str, Any] | None = None) -> TeacherRequest:
        """A request with the config's sampling parameters (overridden by `params`) and its ledger key."""
        full = {**self.cfg.sampling(), **(params or {})}
        return TeacherRequest(key=request_key(self.cfg.model, messages, full, sample_index), messages=messages,
                              params=full, meta=dict(meta or {}))

    def body(self, req: TeacherRequest) -> tuple[str, dict[str, Any]]:
        """(path under the base URL, JSON body) of one request; the batch mode sends the same bodies."""
        body: dict[str, Any] = {"model": self.cfg.model, **self.cfg.sampling(), **req.params}
        if self.cfg.api == "chat":
            return "/chat/completions", {**body, "messages": req.messages}
        return "/completions", {**body, "prompt": "\n\n".join(str(m.get("content", "")) for m in req.messages)}

    # ---- money -------------------------------------------------------------------------------------
    def cost(self, prompt_tokens: int, completion_tokens: int, mode: str | None = None) -> float | None:
        """USD at the price of `mode` (default: the configured teacher.mode); batch = x teacher.batch_discount."""
        if self._price is None:
            return None
        scale = self.cfg.batch_discount if (mode or self.cfg.mode) == "batch" else 1.0
        return scale * (prompt_tokens * self._price[0] + completion_tokens * self._price[1]) / 1e6

    def ledger_cost(self) -> float | None:
        """USD of every answer in the ledger, each at the price of the mode that paid for it (batch answers
        carry `"mode": "batch"`); without a ledger, what this Teacher spent."""
        if self.ledger is None:
            return self.cost(self.usage.prompt_tokens, self.usage.completion_tokens)
        by_mode = self.ledger.totals_by_mode()
        costs = [self.cost(p, c, mode) for mode, (p, c) in by_mode.items()]
        return None if self._price is None else sum(x or 0.0 for x in costs)

    def _worst_case(self, req: TeacherRequest) -> tuple[int, int]:
        prompt = _prompt_chars(req.messages) // 2 + 8 * len(req.messages) + 8
        return prompt, int(req.params.get("max_tokens", self.cfg.max_tokens))

    # ---- running -------------------------------------------------------------------------------------
    def run_sync(self, requests: list[TeacherRequest],
                 progress: Callable[[TeacherProgress], None] | None = None) -> list[TeacherAnswer]:
        """`run` for synchronous callers (also works when called from inside a running event loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.run(requests, progress))
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["out"] = asyncio.run(self.run(requests, progress))
            except BaseException as e:  # re-raised in the caller's thread
                box["err"] = e

        t = threading.Thread(target=target, name="teacher-run")
        t.start()
        t.join()
        if "err" in box:
            raise box["err"]
        return box["out"]

    async def run(self, requests: list[TeacherRequest],
                  progress: Callable[[TeacherProgress], None] | None = None) -> list[TeacherAnswer]:
        """Answer every request (order preserved). Ledger hits are not sent; new answers are committed.
        `progress` gets a `TeacherProgress` after each answer (see `_with_log_lines`)."""
        if self.cfg.mode == "batch":   # never pay online what was configured to go through the Batch API
            raise ConfigError("teacher.mode=batch: this Teacher sends online; build it with "
                              "primer.teacher.open_teacher(cfg, ledger), which picks the batch client")
        t0 = time.monotonic()
        usage = TeacherUsage()
        ledger = self.ledger
        if ledger is not None:
            await asyncio.to_thread(ledger.load)
        answers, todo = self.split_cached(requests, usage)
        total = usage.requests
        done = [len(answers)]
        progress = self._with_log_lines(progress, usage, total, len(answers))
        progress(done[0], total)

        state = await asyncio.to_thread(self.budget_state)

        if todo:
            client = self._client()
            sem = asyncio.Semaphore(self.cfg.concurrency)
            flusher = asyncio.create_task(self._flusher()) if ledger is not None else None
            tasks: list[asyncio.Task] = []
            try:
                for i, req in enumerate(todo):
                    await sem.acquire()
                    if state["fatal"] is not None:
                        sem.release()
                        break
                    wp, wc = self._worst_case(req)
                    wcost = self.cost(wp, wc) or 0.0
                    reason = self._over_budget(state, wp + wc, wcost)
                    if reason is not None:
                        sem.release()
                        usage.stopped = reason
                        usage.reserved_tokens, usage.reserved_cost_usd = state["reserved_tokens"], state["reserved_cost"]
                        usage.spent_at_stop = state["spent_tokens"]
                        for rest in todo[i:]:
                            answers[rest.key] = TeacherAnswer(key=rest.key, text=None, error=BUDGET_EXHAUSTED)
                            usage.not_sent_budget += 1
                        log.warning("teacher: %s; %d request(s) not sent", reason, len(todo) - i)
                        break
                    state["reserved_tokens"] += wp + wc
                    state["reserved_cost"] += wcost
                    tasks.append(asyncio.create_task(
                        self._one(client, req, sem, state, usage, answers, (wp + wc, wcost), done, total, progress)))
                if tasks:
                    await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    if not t.done():
                        t.cancel()
                if flusher is not None:
                    flusher.cancel()
                    try:
                        await flusher
                    except (asyncio.CancelledError, Exception):
                        pass
                if ledger is not None:
                    await asyncio.to_thread(ledger.flush)
                    await asyncio.to_thread(ledger.compact)
                await client.close()
            if state["fatal"] is not None:
                self._finish(usage, t0, ledger)
                raise TeacherError(state["fatal"])
            for req in todo:  # requests never started because of a fatal error elsewhere
                answers.setdefault(req.key, TeacherAnswer(key=req.key, text=None, error="not_sent"))
            progress(done[0], total, end=True)   # the last line: everything answered, or the budget stop
        self._finish(usage, t0, ledger)
        return [answers[r.key] for r in requests]

    def split_cached(self, requests: list[TeacherRequest],
                     usage: TeacherUsage) -> tuple[dict[str, TeacherAnswer], list[TeacherRequest]]:
        """(answers the ledger already holds, the other requests once each, in order); counts
        `usage.requests` (unique keys) and `usage.cached`."""
        answers: dict[str, TeacherAnswer] = {}
        todo: dict[str, TeacherRequest] = {}
        for req in requests:
            if req.key in answers or req.key in todo:
                continue
            rec = self.ledger.get(req.key) if self.ledger is not None else None
            if rec is None:
                todo[req.key] = req
                continue
            answers[req.key] = TeacherAnswer(key=req.key, text=rec.get("text"), error=None,
                                             prompt_tokens=int(rec.get("prompt_tokens") or 0),
                                             completion_tokens=int(rec.get("completion_tokens") or 0),
                                             cached=True, finish_reason=rec.get("finish_reason"))
            usage.cached += 1
        usage.requests = len(answers) + len(todo)
        return answers, list(todo.values())

    def budget_state(self) -> dict[str, Any]:
        """What the budget is checked against: spent (whole ledger, each answer at its mode's price) and
        reserved (worst case of requests in flight) tokens and USD."""
        if self.ledger is not None:
            spent_p, spent_c = self.ledger.totals()
        else:
            spent_p, spent_c = self.usage.prompt_tokens, self.usage.completion_tokens
        return {"spent_tokens": spent_p + spent_c, "spent_cost": self.ledger_cost() or 0.0,
                "reserved_tokens": 0, "reserved_cost": 0.0, "pause_until": 0.0, "fatal": None}

    def _with_log_lines(self, progress: Callable[[TeacherProgress], None] | None, usage: TeacherUsage,
                        total: int, cached: int) -> Callable[[int, int], None]:
        """`report(done, total)` for the run loops: hands `progress` a `TeacherProgress` after each answer
        and logs its line every `teacher.progress_every_s` (and at the end): done/total, tokens, $, req/s, ETA."""
        every = getattr(self.cfg, "progress_every_s", 10.0)
        t0 = time.monotonic()
        last = [t0]

        def report(n: int, of: int, end: bool = False) -> None:
            now = time.monotonic()
            due = of > 0 and (end or n >= of or (now - last[0] >= every and n > cached))
            rate = (n - cached) / max(now - t0, 1e-9)
            snap = TeacherProgress(phase=self.phase, done=n, total=of, cached=cached,
                                   tokens=usage.prompt_tokens + usage.completion_tokens,
                                   usd=self.cost(usage.prompt_tokens, usage.completion_tokens), rate=rate,
                                   eta_s=(of - n) / rate if rate > 0 else None, log_due=due)
            if due:
                last[0] = now
                log.info("%s", snap.line())
            if progress:
                progress(snap)

        return report

    def _finish(self, usage: TeacherUsage, t0: float, ledger: Ledger | None) -> None:
        usage.wall_s = time.monotonic() - t0
        usage.cost_usd = self.cost(usage.prompt_tokens, usage.completion_tokens)
        if ledger is not None:
            p, c = ledger.totals()
        else:
            p = self.usage.prompt_tokens + usage.prompt_tokens
            c = self.usage.completion_tokens + usage.completion_tokens
        usage.ledger_tokens = p + c
        usage.ledger_cost_usd = self.ledger_cost() if ledger is not None else self.cost(p, c)
        self.last_run = usage
        self.usage.add(usage)

    def _over_budget(self, state: dict[str, Any], tokens: int, cost: float) -> str | None:
        cap_t, cap_c = self.cfg.max_tokens_total, self.cfg.max_cost_usd
        spent, reserved = state["spent_tokens"], state["reserved_tokens"]
        if cap_t and spent + reserved + tokens > cap_t:
            return (f"budget reached: teacher.max_tokens_total={cap_t:,} tokens: {spent:,} spent + {reserved:,} "
                    f"reserved for requests in flight (worst case) = {cap_t - spent - reserved:,} remaining, "
                    f"and the next request could need up to {tokens:,}")
        spent_c, reserved_c = state["spent_cost"], state["reserved_cost"]
        if cap_c and spent_c + reserved_c + cost > cap_c:
            return (f"budget reached: teacher.max_cost_usd=${cap_c:g}: ${spent_c:.4f} spent + ${reserved_c:.4f} "
                    f"reserved for requests in flight (worst case) = ${cap_c - spent_c - reserved_c:.4f} "
                    f"remaining, and the next request could cost up to ${cost:.4f}")
        return None

    async def _flusher(self) -> None:
        assert self.ledger is not None
        interval = max(0.01, min(self.ledger.commit_interval_s, 1.0) / 2)
        while True:
            await asyncio.sleep(interval)
            if self.ledger.flush_due():
                try:
                    await asyncio.to_thread(self.ledger.flush)
                except Exception as e:  # the next flush retries; the final one raises
                    log.warning("teacher: ledger commit failed (%s); will retry", secrets.redact(str(e))[:200])

    def _client(self) -> Transport:
        return Transport(self.cfg.resolved_base_url(), self.api_key(), self.cfg.concurrency, self.cfg.timeout_s)

    async def _send(self, client: Transport, req: TeacherRequest) -> tuple[str, int, int, str | None]:
        """One HTTP attempt. Retryable failures raise `_Retry`; any other non-2xx answer raises
        `HTTPStatus` (the caller stops the run on 401/403/404)."""
        path, body = self.body(req)
        try:
            data = await client.post(path, body, headers={KEY_HEADER: req.key})
        except HTTPStatus as e:
            status = e.status_code
            if status == 429:
                raise _Retry("rate_limited", "429 rate limited", _retry_after(e.headers)) from None
            if status >= 500 or status in (408, 409):
                raise _Retry("server_errors", f"HTTP {status}", _retry_after(e.headers)) from None
            raise
        except asyncio.TimeoutError:
            raise _Retry("timeouts", f"timed out after {self.cfg.timeout_s:g}s") from None
        except aiohttp.ClientError as e:
            raise _Retry("connection_errors", f"connection error: {type(e).__name__}") from None
        except ValueError as e:
            raise _Retry("malformed", f"malformed answer: {type(e).__name__}") from None
        try:
            return parse_completion(data, self.cfg.api, req.messages)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
            raise _Retry("malformed", f"malformed answer: {type(e).__name__}") from None

    def _backoff(self, attempt: int) -> float:
        cap = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * (2 ** attempt))
        return cap / 2 + random.uniform(0, cap / 2)

    async def _one(self, client: Any, req: TeacherRequest, sem: asyncio.Semaphore, state: dict[str, Any],
                   usage: TeacherUsage, answers: dict[str, TeacherAnswer], reservation: tuple[int, float],
                   done: list[int], total: int, progress: Callable[..., None]) -> None:
        answer: TeacherAnswer | None = None
        attempt = 0
        try:
            while True:
                wait = state["pause_until"] - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if state["fatal"] is not None:
                    answer = TeacherAnswer(key=req.key, text=None, error="not_sent", attempts=attempt)
                    return
                usage.sent += 1
                attempt += 1
                try:
                    text, pt, ct, finish = await asyncio.wait_for(self._send(client, req),
                                                                  timeout=self.cfg.timeout_s + 5)
                except asyncio.TimeoutError:
                    err: _Retry | None = _Retry("timeouts", f"timed out after {self.cfg.timeout_s:g}s")
                except _Retry as e:
                    err = e
                except HTTPStatus as e:
                    detail = status_detail(e)
                    state["fatal"] = refusal_message(self.cfg, e.status_code, detail) or state["fatal"]
                    answer = TeacherAnswer(key=req.key, text=None, error=detail, attempts=attempt)
                    usage.failed += 1
                    return
                else:
                    err = None
                if err is None:
                    answer = TeacherAnswer(key=req.key, text=text, error=None, prompt_tokens=pt,
                                           completion_tokens=ct, finish_reason=finish, attempts=attempt)
                    usage.succeeded += 1
                    usage.prompt_tokens += pt
                    usage.completion_tokens += ct
                    state["spent_tokens"] += pt + ct
                    state["spent_cost"] += self.cost(pt, ct) or 0.0
                    if self.ledger is not None:
                        rec = {"key": req.key, "text": text, "finish_reason": finish, "prompt_tokens": pt,
                               "completion_tokens": ct, "model": self.cfg.model}
                        if self.ledger.add(rec):
                            await asyncio.to_thread(self.ledger.flush)
                    return
                setattr(usage, err.kind, getattr(usage, err.kind) + 1)
                if attempt > self.cfg.max_retries:
                    answer = TeacherAnswer(key=req.key, text=None, error=f"{err.detail} (gave up after "
                                           f"{attempt} attempts)", attempts=attempt)
                    usage.failed += 1
                    log.warning("teacher: request %s failed: %s", req.key[:12], answer.error)
                    return
                usage.retries += 1
                delay = self._backoff(attempt - 1)
                if err.retry_after is not None:
                    delay = max(min(err.retry_after, RETRY_AFTER_CAP_S), 0.0)
                    if err.kind == "rate_limited":  # everyone waits: the endpoint asked for it
                        state["pause_until"] = max(state["pause_until"], time.monotonic() + delay)
                log.debug("teacher: %s on %s, retry %d in %.2fs", err.detail, req.key[:12], attempt, delay)
                await asyncio.sleep(delay)
        finally:
            state["reserved_tokens"] -= reservation[0]
            state["reserved_cost"] -= reservation[1]
            if answer is None:
                answer = TeacherAnswer(key=req.key, text=None, error="cancelled", attempts=attempt)
            answers[req.key] = answer
            done[0] += 1
            if done[0] < total:   # the last report is run()'s, after the answers are in
                progress(done[0], total)
            sem.release()

    # ---- reporting -----------------------------------------------------------------------------------
    def publish_usage(self, key: str = "teacher-usage", usage: TeacherUsage | None = None) -> None:
        """Usage and cost as a Prefect table artifact (no-op outside a flow/task run)."""
        u = usage or self.usage
        dashboard.table(f"{key}-teacher-usage", u.rows(self.cfg.model),
                        description=f"Teacher usage and cost ({self.cfg.model})"
                                    + (f" — stopped: {u.stopped}" if u.stopped else ""))
