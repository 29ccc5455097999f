import asyncio
import logging
import time

import pytest

from primer.config import load_config
from primer.errors import ConfigError
from primer.settings.synth import TeacherConfig
from primer.teacher import BUDGET_EXHAUSTED, Ledger, Teacher, TeacherError, request_key
from tests.support.fixtures import TEST_KEY
from tests.support.openai_server import (REFUSAL_TEXT, FaultPlan, Reply, hang, malformed, rate_limited,
                                         refusal, server_error)


def _reqs(teacher, n, tag="q"):
    return [teacher.request([{"role": "user", "content": f"{tag} {i}"}]) for i in range(n)]


def test_request_key_is_stable_and_sensitive():
    m = [{"role": "user", "content": "hi"}]
    k = request_key("a", m, {"temperature": 1.0}, 0)
    assert k == request_key("a", [dict(m[0])], {"temperature": 1.0}, 0)
    assert len({k, request_key("b", m, {"temperature": 1.0}, 0), request_key("a", m, {"temperature": 0.5}, 0),
                request_key("a", m, {"temperature": 1.0}, 1)}) == 4


def test_answers_in_order_through_faults(openai_server, teacher_config):
    openai_server.responder = lambda req: "answer to " + req["messages"][-1]["content"]
    openai_server.faults = FaultPlan(rate_limit=0.15, server_error=0.15, malformed=0.15, refusal=0.1,
                                     retry_after=0.01, seed=3)
    teacher = Teacher(teacher_config)
    reqs = _reqs(teacher, 40)
    answers = teacher.run_sync(reqs)
    assert [a.key for a in answers] == [r.key for r in reqs]
    assert all(a.ok for a in answers)
    for i, a in enumerate(answers):
        assert a.text in (f"answer to q {i}", REFUSAL_TEXT)
    assert any(a.text == REFUSAL_TEXT for a in answers)  # a refusal is an answer; the caller judges it
    u = teacher.last_run
    assert u.succeeded == 40 and u.rate_limited and u.server_errors and u.malformed and u.retries
    assert u.sent == openai_server.stats.total
    assert set(openai_server.stats.per_key_success.values()) == {1}
    assert u.prompt_tokens > 0 and u.completion_tokens > 0


def test_duplicate_keys_sent_once(openai_server, teacher_config):
    teacher = Teacher(teacher_config)
    r = teacher.request([{"role": "user", "content": "same"}])
    answers = teacher.run_sync([r, r, r])
    assert len(answers) == 3 and all(a.ok for a in answers)
    assert openai_server.stats.total == 1


def test_retry_after_is_honoured(openai_server, teacher_config):
    openai_server.queue(rate_limited(retry_after=0.4))
    teacher = Teacher(teacher_config)
    t0 = time.monotonic()
    answers = teacher.run_sync(_reqs(teacher, 1))
    assert answers[0].ok and answers[0].attempts == 2
    assert time.monotonic() - t0 >= 0.4
    assert teacher.last_run.rate_limited == 1


def test_timeout_then_retry(openai_server, teacher_config):
    teacher_config.timeout_s = 0.3
    openai_server.queue(hang())
    teacher = Teacher(teacher_config)
    answers = teacher.run_sync(_reqs(teacher, 1))
    assert answers[0].ok
    assert teacher.last_run.timeouts == 1
    assert openai_server.wait_for(lambda s: s.client_gone >= 1, timeout=3)


def test_gives_up_after_max_retries(openai_server, teacher_config):
    openai_server.responder = lambda req: server_error(503)
    teacher = Teacher(teacher_config)
    [a] = teacher.run_sync(_reqs(teacher, 1))
    assert not a.ok and "HTTP 503" in a.error and "gave up" in a.error
    assert openai_server.stats.total == teacher_config.max_retries + 1
    assert teacher.last_run.failed == 1


def test_malformed_bodies_are_retried(openai_server, teacher_config):
    for _ in range(2):
        openai_server.queue(malformed())
    teacher = Teacher(teacher_config)
    [a] = teacher.run_sync(_reqs(teacher, 1))
    assert a.ok and a.attempts == 3 and teacher.last_run.malformed == 2


def test_bad_request_not_retried(openai_server, teacher_config):
    openai_server.queue(Reply(status=400, raw=b'{"error": {"message": "bad prompt"}}'))
    teacher = Teacher(teacher_config)
    [a] = teacher.run_sync(_reqs(teacher, 1))
    assert not a.ok and "400" in a.error and openai_server.stats.total == 1


def test_auth_failure_is_one_clear_error_without_the_key(openai_server, teacher_config, caplog):
    caplog.set_level(logging.DEBUG)
    openai_server.responder = lambda req: Reply(status=401, raw=(
        b'{"error": {"message": "Incorrect API key provided: ' + TEST_KEY.encode() + b'"}}'))
    teacher = Teacher(teacher_config)
    with pytest.raises(TeacherError) as e:
        teacher.run_sync(_reqs(teacher, 3))
    assert "PRIMER_TEST_OPENAI_KEY" in str(e.value)
    assert TEST_KEY not in str(e.value)
    assert TEST_KEY not in caplog.text


def test_ledger_skips_answered_keys(openai_server, teacher_config, local_store):
    t1 = Teacher(teacher_config, Ledger(local_store, "t"))
    reqs = _reqs(t1, 12)
    t1.run_sync(reqs[:8])
    assert openai_server.stats.total == 8
    t2 = Teacher(teacher_config, Ledger(local_store, "t"))  # a fresh process would do this
    answers = t2.run_sync(reqs)
    assert openai_server.stats.total == 12
    assert [a.cached for a in answers] == [True] * 8 + [False] * 4
    assert t2.last_run.cached == 8 and t2.last_run.sent == 4
    assert len(Ledger(local_store, "t")) == 12


def test_failed_answers_are_not_ledgered(openai_server, teacher_config, local_store):
    teacher_config.max_retries = 0
    openai_server.queue(server_error())
    teacher = Teacher(teacher_config, Ledger(local_store, "f"))
    [a] = teacher.run_sync(_reqs(teacher, 1))
    assert not a.ok
    [b] = Teacher(teacher_config, Ledger(local_store, "f")).run_sync(_reqs(teacher, 1))
    assert b.ok and not b.cached


def test_token_budget_stops_cleanly_and_keeps_answers(openai_server, teacher_config, local_store):
    openai_server.responder = lambda req: Reply(text="x" * 40, prompt_tokens=10, completion_tokens=40)
    teacher_config.max_tokens = 60
    teacher_config.concurrency = 2
    teacher_config.max_tokens_total = 600
    teacher = Teacher(teacher_config, Ledger(local_store, "b"))
    answers = teacher.run_sync(_reqs(teacher, 30))
    got = [a for a in answers if a.ok]
    stopped = [a for a in answers if a.error == BUDGET_EXHAUSTED]
    assert got and stopped and len(got) + len(stopped) == 30
    assert answers.index(stopped[0]) == len(got)  # admitted in order; the rest not sent
    u = teacher.last_run
    assert u.stopped and "budget reached" in u.stopped and "max_tokens_total" in u.stopped
    assert u.ledger_tokens <= 600 and u.ledger_tokens == 50 * len(got)
    assert openai_server.stats.successful == len(got)
    # everything so far is kept; a second run re-pays nothing and still respects the cap (whole ledger)
    again = Teacher(teacher_config, Ledger(local_store, "b"))
    answers2 = again.run_sync(_reqs(teacher, 30))
    assert sum(a.cached for a in answers2) == len(got)
    assert again.last_run.stopped and again.last_run.ledger_tokens <= 600
    assert set(openai_server.stats.per_key_success.values()) == {1}


def test_cost_budget(openai_server, teacher_config):
    openai_server.responder = lambda req: Reply(text="y", prompt_tokens=1000, completion_tokens=1000)
    teacher_config.price_input, teacher_config.price_output = 1.0, 3.0   # USD / 1M tokens
    teacher_config.max_tokens = 1000
    teacher_config.max_cost_usd = 0.02   # 0.004 per answer, worst case ~0.004
    teacher_config.concurrency = 1
    teacher = Teacher(teacher_config)
    answers = teacher.run_sync(_reqs(teacher, 20))
    assert 0 < sum(a.ok for a in answers) < 20
    assert teacher.last_run.cost_usd <= 0.02 and "max_cost_usd" in teacher.last_run.stopped


def test_cost_cap_needs_a_price():
    with pytest.raises(ConfigError, match="teacher.max_cost_usd"):
        load_config("tiny", {"teacher.model": "my-local-model", "teacher.max_cost_usd": 5})
    cfg = load_config("tiny", {"teacher.model": "gpt-4o-mini-2024-07-18"})
    assert cfg.teacher.price() == (0.15, 0.60)


def test_not_configured_is_a_skip_reason(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    cfg = TeacherConfig(api_key_env="NO_SUCH_KEY_VAR")
    assert not cfg.is_configured()
    assert "NO_SUCH_KEY_VAR" in cfg.skip_reason() and "teacher.base_url" in cfg.skip_reason()
    assert TeacherConfig(base_url="http://127.0.0.1:1/v1", api_key_env="NO_SUCH_KEY_VAR").is_configured()
    monkeypatch.setenv("NO_SUCH_KEY_VAR", "sk-xxxx")
    assert cfg.is_configured() and cfg.skip_reason() is None


def test_completions_api(openai_server, teacher_config):
    teacher_config.api = "completions"
    openai_server.responder = lambda req: "completed: " + req["prompt"]
    teacher = Teacher(teacher_config)
    [a] = teacher.run_sync(_reqs(teacher, 1))
    assert a.text == "completed: q 0"


def test_run_sync_inside_a_running_loop(openai_server, teacher_config):
    teacher = Teacher(teacher_config)

    async def main():
        return teacher.run_sync(_reqs(teacher, 3))

    assert all(a.ok for a in asyncio.run(main()))


def test_concurrency_is_bounded(openai_server, teacher_config):
    openai_server.delay = 0.05
    teacher_config.concurrency = 4
    teacher = Teacher(teacher_config)
    teacher.run_sync(_reqs(teacher, 20))
    assert openai_server.stats.max_in_flight == 4


def test_an_answer_with_a_lone_surrogate_is_kept_ledgered_and_never_paid_twice(openai_server, teacher_config,
                                                                                 local_store):
    """A server that cuts a character in two sends half a UTF-16 pair ("\\ud83d"): the answer (paid for) is
    kept with U+FFFD in its place, written to the ledger, and a resumed run reads it from there. Before, the
    ledger's UTF-8 write raised UnicodeEncodeError: the answer was lost and re-paid on every resume."""
    openai_server.responder = lambda req: "broken \ud83d emoji, whole \U0001F600 emoji"
    t1 = Teacher(teacher_config, Ledger(local_store, "u"))
    [a] = t1.run_sync(_reqs(t1, 1))
    assert a.ok and a.text == "broken \ufffd emoji, whole \U0001F600 emoji"
    t2 = Teacher(teacher_config, Ledger(local_store, "u"))  # a fresh process would do this
    [b] = t2.run_sync(_reqs(t2, 1))
    assert b.cached and b.text == a.text
    assert openai_server.stats.total == 1


def test_ledger_lines_carry_any_python_string(local_store):
    """A record whose strings UTF-8 cannot encode (a lone surrogate) is written with JSON escapes and reads
    back as the same string; other records keep their characters as UTF-8."""
    ledger = Ledger(local_store, "s")
    ledger.add({"key": "k1", "text": "half \udc00 pair"})
    ledger.add({"key": "k2", "text": "café"})
    ledger.flush()
    again = Ledger(local_store, "s").load()
    assert again["k1"]["text"] == "half \udc00 pair" and again["k2"]["text"] == "café"
    parts = local_store.fs.find(local_store.path("ledgers", "s", "parts"))
    data = b"".join(local_store.fs.cat_file(p) for p in parts)
    assert b"\\udc00" in data and "café".encode() in data
