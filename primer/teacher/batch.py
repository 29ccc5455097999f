"""The teacher's batch mode (`teacher.mode=batch`): the OpenAI Batch API (`/v1/files` + `/v1/batches`),
about half the online price. `primer.teacher.open_teacher(cfg, ledger)` returns a `BatchTeacher` in that
mode: the same `Teacher` API (`request`, `run`, `run_sync`, `usage`, `last_run`), so every caller (each
synthesize phase) gets the same answers, in order, through the same ledger as online.

One `run_batch(teacher, requests)`:
1. Requests whose answers the ledger holds are not sent (`cached`), as online.
2. Open batch records of earlier runs (`ledgers/<name>/batches/<submission>.json`, on the store) claim
   their keys: those batches are resumed by their id, never submitted again. A record written before its
   batch id was known (a kill between "create" and "record") is matched to the server's batch by
   `metadata.primer_submission` (GET /batches); if the server has no such batch, nothing was submitted and
   the record's keys are free again.
3. The other requests, within the budget (worst case at the batch price, like online), go out in batches
   of at most `teacher.batch_max_requests` lines: record written (state `submitting`) -> JSONL uploaded
   (POST /files, purpose `batch`) -> batch created (POST /batches, with `metadata.primer_submission`) ->
   record updated with the batch id (state `submitted`). All of it before the first poll.
4. Each open batch is polled every `teacher.batch_poll_s`, with a log line on each change of status or
   count and every `teacher.progress_every_s`, until it is completed, failed, expired or cancelled; after
   `teacher.batch_timeout_s` the run stops with one line (a re-run resumes the batch by its id).
5. The output file (and the error file) are downloaded, every 200 line is folded into the ledger
   (`"mode": "batch"`, priced at the batch price: `teacher.batch_discount` x online), the ledger is
   flushed, and only then is the record marked `folded`. Failed lines (error objects, non-200 responses,
   lines missing after an expiry or a cancel) are counted per reason (`usage.batch_errors`, a warning line)
   and answered with an error, so the stage drops them as teacher errors and a re-run submits them again.

HTTP: 401/403 stop at once with the online client's one line (`refusal_message`); a 404 from the files or
batches endpoints says the endpoint has no Batch API; every line failing with `model_not_found` stops with
the online 404-model line. 429, 5xx, timeouts and connection errors are retried with the online backoff
(at most `teacher.max_retries` per call, Retry-After honoured); a retried "create" first looks for the
batch by its submission id, so a lost answer never creates a second batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

from primer.errors import ConfigError
from primer.teacher.client import (BUDGET_EXHAUSTED, RETRY_AFTER_CAP_S, Teacher, TeacherAnswer, TeacherError,
                                   TeacherProgress, TeacherRequest, TeacherUsage, _retry_after, parse_completion,
                                   refusal_message, status_detail)

if TYPE_CHECKING:
    from primer.teacher.ledger import Ledger

log = logging.getLogger("primer.teacher")
TERMINAL = ("completed", "failed", "expired", "cancelled")
ENDPOINTS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
SUBMISSION = "primer_submission"      # batch metadata key naming the record that submitted it


class BatchRecords:
    """The batch records of one ledger: `ledgers/<name>/batches/<submission>.json` on its store."""

    def __init__(self, ledger: "Ledger"):
        self.store, self.name = ledger.store, ledger.name
        self.dir_uri = self.store.uri("ledgers", self.name, "batches")

    def uri(self, sid: str) -> str:
        return self.store.uri("ledgers", self.name, "batches", f"{sid}.json")

    def write(self, rec: dict[str, Any]) -> None:
        """Atomic (temp file + rename locally, one PUT on S3): a reader sees the old or the new record."""
        self.store.write_bytes(self.uri(rec["id"]), json.dumps(rec, sort_keys=True).encode())

    def all(self) -> list[dict[str, Any]]:
        try:
            names = self.store.fs.ls(self.store.path("ledgers", self.name, "batches"), detail=False)
        except FileNotFoundError:
            return []
        out = []
        for path in sorted(names):
            if path.endswith(".json") and not path.rsplit("/", 1)[-1].startswith(".tmp-"):
                try:
                    out.append(json.loads(self.store.fs.cat_file(path)))
                except FileNotFoundError:
                    continue
        return out

    def open(self) -> list[dict[str, Any]]:
        """Records whose batch may still hold answers not yet in the ledger."""
        return [r for r in self.all() if r.get("state") in ("submitting", "submitted")]


class _Api:
    """The openai SDK's Batch API calls with Primer's error mapping and retries."""

    def __init__(self, teacher: "Teacher"):
        import openai

        self.teacher, self.cfg = teacher, teacher.cfg
        self.where = self.cfg.resolved_base_url() or "the OpenAI API"
        self.client = openai.OpenAI(api_key=teacher.api_key(), base_url=self.cfg.resolved_base_url() or None,
                                    max_retries=0, timeout=self.cfg.timeout_s)

    def close(self) -> None:
        self.client.close()

    def call(self, what: str, fn: Callable[[int], Any], on_404: str | None = None) -> Any:
        """`fn(attempt)`, retrying transient failures; 4xx become one-line `TeacherError`s."""
        import openai

        attempt = 0
        while True:
            try:
                return fn(attempt)
            except openai.APIStatusError as e:
                status = e.status_code
                if not (status >= 500 or status in (408, 409, 429)):
                    detail = status_detail(e)
                    if status in (401, 403):
                        raise TeacherError(refusal_message(self.cfg, status, detail)) from None
                    if status == 404:
                        raise TeacherError(on_404 or (
                            f"teacher.mode=batch: {what} answered {detail} at {self.where}: this endpoint has "
                            "no Batch API (/files + /batches); use teacher.mode=online")) from None
                    raise TeacherError(f"teacher.mode=batch: {what} was refused at {self.where} ({detail})") from None
                retry_after = _retry_after(e.response.headers)
                reason = f"HTTP {status}"
            except openai.APIConnectionError as e:   # includes APITimeoutError
                retry_after, reason = None, type(e).__name__
            attempt += 1
            if attempt > self.cfg.max_retries:
                raise
            delay = self.teacher._backoff(attempt - 1)
            if retry_after is not None:
                delay = max(min(retry_after, RETRY_AFTER_CAP_S), 0.0)
            log.info("teacher: batch API %s: %s, retry %d in %.2fs", what, reason, attempt, delay)
            time.sleep(delay)

    def find(self, sid: str, since: float) -> str | None:
        """The id of the batch submitted with `metadata.primer_submission == sid`, if the server has one."""
        def scan(_: int) -> str | None:
            for b in self.client.batches.list(limit=100):
                if (b.metadata or {}).get(SUBMISSION) == sid:
                    return b.id
                if b.created_at and b.created_at < since - 3600:   # listed newest first: older ones cannot be it
                    return None
            return None
        return self.call("list batches (GET /batches)", scan)

    def content(self, file_id: str) -> str:
        return self.call(f"download file {file_id}", lambda _: self.client.files.content(
            file_id, timeout=max(self.cfg.timeout_s, 600.0)).text)


def _line_result(line: dict[str, Any], api: str, messages: list[dict[str, Any]]) -> tuple[str, Any]:
    """("ok", (text, pt, ct, finish)) or ("error", (reason, message)) for one output/error file line."""
    err, resp = line.get("error"), line.get("response") or {}
    if err:
        return "error", (str(err.get("code") or "error"), str(err.get("message") or ""))
    status, body = resp.get("status_code"), resp.get("body")
    if status != 200:
        e = body.get("error") if isinstance(body, dict) else None
        e = e if isinstance(e, dict) else {}
        return "error", (str(e.get("code") or e.get("type") or f"http_{status}"), str(e.get("message") or ""))
    try:
        return "ok", parse_completion(body, api, messages)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as ex:
        return "error", ("malformed", type(ex).__name__)


class _Run:
    def __init__(self, teacher: "Teacher", todo: dict[str, TeacherRequest], usage: TeacherUsage,
                 answers: dict[str, TeacherAnswer], report: Callable[[int, int], None], total: int):
        self.teacher, self.cfg, self.ledger = teacher, teacher.cfg, teacher.ledger
        self.todo, self.usage, self.answers, self.report, self.total = todo, usage, answers, report, total
        self.records = BatchRecords(teacher.ledger)
        self.api = _Api(teacher)
        self.tag = f" [{teacher.phase}]" if teacher.phase else ""

    # ---- 2. resume --------------------------------------------------------------------------------------
    def resume(self) -> list[dict[str, Any]]:
        resumed = []
        for rec in self.records.open():
            keys = rec.get("keys") or []
            if not any(k in self.todo for k in keys):
                if keys and all(k in self.ledger for k in keys):   # folded, killed before the record said so
                    self.records.write({**rec, "state": "folded", "status": "folded_before"})
                continue   # another phase's batch: that phase resumes it
            if not rec.get("batch_id"):
                found = self.api.find(rec["id"], rec.get("created") or 0)
                if found is None:
                    log.info("teacher%s: submission %s never reached the server; its %d request(s) are "
                             "submitted again", self.tag, rec["id"], len(keys))
                    self.records.write({**rec, "state": "abandoned"})
                    continue
                rec = {**rec, "batch_id": found, "state": "submitted"}
                self.records.write(rec)
            log.info("teacher%s: resuming batch %s (%d request(s)) by its id, recorded at %s", self.tag,
                     rec["batch_id"], len(keys), self.records.uri(rec["id"]))
            self.usage.batches_resumed += 1
            resumed.append(rec)
        return resumed

    # ---- 3. submit --------------------------------------------------------------------------------------
    def admit(self, fresh: list[TeacherRequest], resumed: list[dict[str, Any]]) -> list[TeacherRequest]:
        """The requests the budget allows (worst case at the batch price, over resumed batches too)."""
        t = self.teacher
        state = t.budget_state()
        for rec in resumed:
            for k in rec["keys"]:
                if k in self.todo:
                    wp, wc = t._worst_case(self.todo[k])
                    state["reserved_tokens"] += wp + wc
                    state["reserved_cost"] += t.cost(wp, wc) or 0.0
        for i, req in enumerate(fresh):
            wp, wc = t._worst_case(req)
            wcost = t.cost(wp, wc) or 0.0
            reason = t._over_budget(state, wp + wc, wcost)
            if reason is not None:
                # as the online loop does: the worst case of what is already submitted or admitted (answered
                # later, so in the ledger by the end), and what was spent when the budget said stop
                u = self.usage
                u.stopped, u.spent_at_stop = reason, state["spent_tokens"]
                u.reserved_tokens, u.reserved_cost_usd = state["reserved_tokens"], state["reserved_cost"]
                for rest in fresh[i:]:
                    self.answers[rest.key] = TeacherAnswer(key=rest.key, text=None, error=BUDGET_EXHAUSTED)
                    self.usage.not_sent_budget += 1
                log.warning("teacher%s: %s; %d request(s) not submitted", self.tag, reason, len(fresh) - i)
                return fresh[:i]
            state["reserved_tokens"] += wp + wc
            state["reserved_cost"] += wcost
        return fresh

    def submit(self, chunk: list[TeacherRequest]) -> dict[str, Any]:
        cfg, endpoint = self.cfg, ENDPOINTS[self.cfg.api]
        sid = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        rec: dict[str, Any] = {"id": sid, "state": "submitting", "keys": [r.key for r in chunk],
                               "created": time.time(), "model": cfg.model, "endpoint": endpoint,
                               "phase": self.teacher.phase, "batch_id": None}
        self.records.write(rec)   # before anything reaches the server: a kill from here on is recoverable
        data = "".join(json.dumps({"custom_id": r.key, "method": "POST", "url": endpoint,
                                   "body": self.teacher.body(r)[1]}, ensure_ascii=False) + "\n"
                       for r in chunk).encode()
        f = self.api.call("upload the batch file (POST /files)", lambda _: self.api.client.files.create(
            file=(f"primer-{sid}.jsonl", data), purpose="batch"))

        def create(attempt: int) -> str:
            if attempt:   # the last try may have created it before its answer was lost
                found = self.api.find(sid, rec["created"])
                if found:
                    return found
            return self.api.client.batches.create(input_file_id=f.id, endpoint=endpoint, completion_window="24h",
                                                  metadata={SUBMISSION: sid, "primer_ledger": self.ledger.name}).id

        rec.update(state="submitted", input_file_id=f.id,
                   batch_id=self.api.call("create the batch (POST /batches)", create))
        self.records.write(rec)
        log.info("teacher%s: submitted batch %s: %d request(s), %s bytes, recorded at %s", self.tag,
                 rec["batch_id"], len(chunk), f"{len(data):,}", self.records.uri(sid))
        self.usage.batches += 1
        self.usage.sent += len(chunk)
        return rec

    # ---- 4. poll ----------------------------------------------------------------------------------------
    def poll(self, open_recs: list[dict[str, Any]]) -> None:
        cfg = self.cfg
        t0 = time.monotonic()
        pending = {r["batch_id"]: r for r in open_recs}
        seen: dict[str, tuple[Any, ...]] = {}
        last_log = 0.0
        while True:
            now = time.monotonic()
            log_all = now - last_log >= cfg.progress_every_s
            for bid, rec in list(pending.items()):
                b = self.api.call(f"retrieve batch {bid}", lambda _, bid=bid: self.api.client.batches.retrieve(bid),
                                  on_404=f"teacher.mode=batch: batch {bid} (recorded at {self.records.uri(rec['id'])}) "
                                         f"is unknown at {self.api.where}: another endpoint or account? Point "
                                         "teacher.base_url back at it, or delete the record to submit again")
                rc = b.request_counts
                state = (b.status, rc.completed if rc else 0, rc.failed if rc else 0, rc.total if rc else 0)
                if log_all or seen.get(bid) != state:
                    log.info("teacher%s: batch %s %s: %d/%d done, %d failed, %.0fs", self.tag, bid, state[0],
                             state[1], state[3] or len(rec["keys"]), state[2], now - t0)
                seen[bid] = state
                if b.status in TERMINAL:
                    self.fold(rec, b)
                    del pending[bid]
                    self.report(len(self.answers), self.total)
            if log_all:
                last_log = now
            if not pending:
                return
            if time.monotonic() - t0 > cfg.batch_timeout_s:
                raise TeacherError(f"teacher.mode=batch: batch(es) {', '.join(pending)} not done after "
                                   f"teacher.batch_timeout_s={cfg.batch_timeout_s:g}s; a re-run resumes them by "
                                   f"their ids (recorded under {self.records.dir_uri})")
            time.sleep(cfg.batch_poll_s)

    # ---- 5. fold ----------------------------------------------------------------------------------------
    def fold(self, rec: dict[str, Any], b: Any) -> None:
        cfg, ledger, bid = self.cfg, self.ledger, rec["batch_id"]
        results: dict[str, tuple[str, Any]] = {}
        for fid in (b.output_file_id, b.error_file_id):
            for text in (self.api.content(fid) if fid else "").splitlines():
                if not text.strip():
                    continue
                try:
                    line = json.loads(text)
                    cid = line["custom_id"]
                except (ValueError, KeyError, TypeError):
                    log.warning("teacher%s: batch %s: skipping an unreadable output line", self.tag, bid)
                    continue
                req = self.todo.get(cid)
                results.setdefault(cid, _line_result(line, cfg.api, req.messages if req else []))
        missing = f"batch_{b.status}"
        if b.status == "failed" and b.errors and b.errors.data:
            first = b.errors.data[0]
            missing = f"batch_failed:{first.code or 'error'}"
            log.warning("teacher%s: batch %s failed validation: %s", self.tag, bid,
                        "; ".join(f"{e.code}: {e.message}" for e in b.errors.data[:5]))
        errors: Counter[str] = Counter()
        for key in rec["keys"]:
            kind, value = results.get(key, ("error", (missing, f"no line for this request in batch {bid}")))
            req = self.todo.get(key)
            if kind == "ok":
                text, pt, ct, finish = value
                if key not in ledger:
                    ledger.add({"key": key, "text": text, "finish_reason": finish, "prompt_tokens": pt,
                                "completion_tokens": ct, "model": cfg.model, "mode": "batch", "batch_id": bid})
                    self.usage.succeeded += 1
                    self.usage.prompt_tokens += pt
                    self.usage.completion_tokens += ct
                if req is not None:
                    self.answers[key] = TeacherAnswer(key=key, text=text, error=None, prompt_tokens=pt,
                                                      completion_tokens=ct, finish_reason=finish, attempts=1)
            else:
                reason, message = value
                errors[reason] += 1
                self.usage.failed += 1
                if req is not None:
                    self.answers[key] = TeacherAnswer(key=key, text=None, error=f"batch {bid}: {reason}: "
                                                      f"{message[:300]}", attempts=1)
        ledger.flush()   # the answers are on the store before the record says "folded"
        for reason, n in errors.items():
            self.usage.batch_errors[reason] = self.usage.batch_errors.get(reason, 0) + n
        self.records.write({**rec, "state": "folded", "status": b.status,
                            "summary": {"succeeded": len(rec["keys"]) - sum(errors.values()),
                                        "failed": dict(errors)}})
        if errors:
            log.warning("teacher%s: batch %s %s: %d of %d line(s) failed: %s", self.tag, bid, b.status,
                        sum(errors.values()), len(rec["keys"]), ", ".join(f"{r}: {n}" for r, n in errors.most_common()))
        if errors.get("model_not_found") == len(rec["keys"]):
            raise TeacherError(refusal_message(cfg, 404, f"batch {bid}: every line model_not_found"))


def run_batch(teacher: "Teacher", requests: list[TeacherRequest],
              progress: Callable[[TeacherProgress], None] | None = None) -> list[TeacherAnswer]:
    """`Teacher.run` in batch mode (see the module docs): answers in request order."""
    ledger = teacher.ledger
    if ledger is None:
        raise ConfigError("teacher.mode=batch needs a ledger: the batch ids are recorded beside it so a "
                          "restarted run resumes them (build the Teacher with a Ledger)")
    t0 = time.monotonic()
    usage = TeacherUsage()
    ledger.load()
    answers, pending = teacher.split_cached(requests, usage)
    todo = {r.key: r for r in pending}
    total = usage.requests
    report = teacher._with_log_lines(progress, usage, total, len(answers))
    report(len(answers), total)
    if todo:
        run = _Run(teacher, todo, usage, answers, report, total)
        try:
            resumed = run.resume()
            claimed = {k for rec in resumed for k in rec["keys"]}
            admitted = run.admit([r for k, r in todo.items() if k not in claimed], resumed)
            size = teacher.cfg.batch_max_requests
            submitted = [run.submit(admitted[i:i + size]) for i in range(0, len(admitted), size)]
            run.poll(resumed + submitted)
        finally:
            run.api.close()
            teacher._finish(usage, t0, ledger)
        for key in todo:   # keys of a resumed batch it did not hold: cannot happen unless a record was edited
            answers.setdefault(key, TeacherAnswer(key=key, text=None, error="not_sent"))
    else:
        teacher._finish(usage, t0, ledger)
    return [answers[r.key] for r in requests]


class BatchTeacher(Teacher):
    """A `Teacher` whose `run` goes through the Batch API (`run_batch`); everything else is the online one's."""

    async def run(self, requests: list[TeacherRequest],
                  progress: Callable[[TeacherProgress], None] | None = None) -> list[TeacherAnswer]:
        return await asyncio.to_thread(run_batch, self, requests, progress)
