"""teacher.mode=batch against the loopback server's real Batch API (/v1/files + /v1/batches over HTTP,
through the openai client): same documents as online, one ledger, nothing paid twice across a SIGKILL,
failed lines counted per reason, 401 and a missing Batch API fail at once in one line."""

import dataclasses
import json
import signal
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from primer.config import load_config
from primer.store import open_store
from primer.errors import ConfigError
from primer.teacher import BUDGET_EXHAUSTED, Ledger, Teacher, TeacherError, open_teacher
from primer.teacher.batch import BatchRecords
from tasks.synth.prefect_tasks import is_transient
from tests.support.openai_server import Reply
from tests.synth.test_kill import _spawn
from tests.synth.test_stage import overrides, run_synthesis

BATCH = {"teacher.mode": "batch", "teacher.batch_poll_s": 0.01, "teacher.progress_every_s": 0.05,
         "teacher.price_input": 1.0, "teacher.price_output": 2.0, "synth.verify": False}


def _ledger_lines(root: Path, name: str) -> Counter:
    """How many times each key appears over the ledger's part files on the store."""
    keys: Counter = Counter()
    for part in (root / "ledgers" / name / "parts").glob("*.jsonl"):
        keys.update(json.loads(line)["key"] for line in part.read_text().splitlines() if line.strip())
    return keys


def _batch_inputs(server) -> list[list[str]]:
    """The custom_ids of each batch the server was asked to run."""
    api = server.batch_api
    with api.lock:
        return [[json.loads(x)["custom_id"] for x in api.files[b["obj"]["input_file_id"]]["data"].splitlines()]
                for b in api.batches.values()]


def _docs(uri, name):
    return sorted((r["id"], r["text"]) for r in pq.read_table(f"{uri}/{name}").to_pylist())


def test_batch_mode_gives_the_online_documents_and_pays_each_answer_once(prefect_harness, scripted_server, tmp_path):
    server = scripted_server
    uri_on, online = run_synthesis(overrides(server, tmp_path / "online", **{**BATCH, "teacher.mode": "online"}))
    online_paid = dict(server.stats.per_key_success)
    server.reset_stats()
    uri_b, batch = run_synthesis(overrides(server, tmp_path / "batch", **BATCH))
    st = server.stats

    assert st.total == 0 and st.batch_calls["batches.create"] == 2      # textbooks, exercises: no online call
    assert dict(st.per_key_success) == online_paid and set(online_paid.values()) == {1}
    for name in ("textbooks.parquet", "exercises.parquet"):
        assert _docs(uri_b, name) == _docs(uri_on, name) != []
    cfg = load_config("tiny", overrides(server, tmp_path / "batch", **BATCH))
    lines = _ledger_lines(tmp_path / "batch", cfg.synth.ledger)
    assert set(lines) == set(online_paid) and set(lines.values()) == {1}   # every answer once
    assert {r["mode"] for r in Ledger(open_store(cfg.store), cfg.synth.ledger).records()} == {"batch"}
    records = BatchRecords(Ledger(open_store(cfg.store), cfg.synth.ledger)).all()
    assert sorted(r["state"] for r in records) == ["folded", "folded"] and all(r["batch_id"] for r in records)
    # same tokens, half the price (teacher.batch_discount = 0.5)
    u_on, u_b = online.manifest["teacher_usage"], batch.manifest["teacher_usage"]
    assert u_b["prompt_tokens"] + u_b["completion_tokens"] == u_on["prompt_tokens"] + u_on["completion_tokens"] > 0
    assert u_b["cost_usd"] == pytest.approx(u_on["cost_usd"] / 2) and u_b["batches"] == 2
    assert batch.manifest["accounting"]["ledger"]["usd"] == pytest.approx(u_on["ledger_cost_usd"] / 2, abs=1e-6)


@pytest.mark.slow
def test_sigkill_while_the_batch_runs_then_resume_by_its_id(prefect_harness, scripted_server, tmp_path):
    server = scripted_server
    textbooks, exercises, paid_before_kill = 12, 6, 4
    ov = overrides(server, tmp_path / "store", **{**BATCH, "synth.textbooks": textbooks,
                                                  "synth.exercises": exercises, "teacher.batch_poll_s": 0.02})
    server.hold_batches(after_lines=paid_before_kill)
    child = _spawn(ov)
    assert server.wait_for(lambda s: s.batch_calls["batches.retrieve"] >= 4 and server.batch_api.answered
                           == paid_before_kill, timeout=120), child.poll()
    child.send_signal(signal.SIGKILL)        # in the middle of the textbooks batch, without waiting for anything
    child.wait(10)
    assert server.stats.batch_calls["batches.create"] == 1 and sum(server.stats.per_key_success.values()) == 4
    server.release_batches()

    rerun = _spawn(ov)
    out, _ = rerun.communicate(timeout=240)
    assert rerun.returncode == 0 and "RESULT done" in out, out
    st = server.stats
    inputs = _batch_inputs(server)
    print(f"server: {st.batch_calls['batches.create']} batches created, {len(st.per_key_success)} keys paid, "
          f"max {max(st.per_key_success.values())} per key, {paid_before_kill} paid before the kill; "
          f"calls {dict(st.batch_calls)}")
    assert st.batch_calls["batches.create"] == 2 == len(inputs)         # textbooks once (resumed), exercises once
    assert sorted(map(len, inputs)) == sorted([textbooks, exercises])
    assert Counter(k for batch in inputs for k in batch).most_common(1)[0][1] == 1   # no key in two batches
    assert len(st.per_key_success) == textbooks + exercises and set(st.per_key_success.values()) == {1}
    assert st.total == 0
    uri = out.split("RESULT done ", 1)[1].strip()
    tb = pq.read_table(f"{uri}/textbooks.parquet").to_pylist()
    assert len(tb) == textbooks and len({r["id"] for r in tb}) == textbooks
    cfg = load_config("tiny", ov)
    lines = _ledger_lines(tmp_path / "store", cfg.synth.ledger)
    assert len(lines) == textbooks + exercises and set(lines.values()) == {1}


@pytest.fixture
def batch_teacher(teacher_config, local_store):
    cfg = dataclasses.replace(teacher_config, mode="batch", batch_poll_s=0.01, progress_every_s=0.01)
    return lambda **kw: open_teacher(dataclasses.replace(cfg, **kw), Ledger(local_store, "batch-test"))


def _reqs(teacher, n):
    return [teacher.request([{"role": "user", "content": f"question {i}"}]) for i in range(n)]


def test_failed_lines_are_counted_per_reason_and_submitted_again(openai_server, batch_teacher, caplog):
    server = openai_server
    broken = {"question 1", "question 4"}
    server.batch_line_error = lambda line: ({"code": "server_error", "message": "try later"}
                                            if line["body"]["messages"][0]["content"] in broken else None)
    server.responder = lambda req: (Reply(status=400, raw=b'{"error": {"message": "too long", "code": '
                                          b'"context_length_exceeded"}}')
                                    if req["messages"][0]["content"] in ("question 2", "question 5", "question 7")
                                    else f"answer to {req['messages'][0]['content']}")
    teacher = batch_teacher()
    answers = teacher.run_sync(_reqs(teacher, 10))
    u = teacher.last_run
    assert u.batch_errors == {"server_error": 2, "context_length_exceeded": 3}
    assert u.failed == 5 and u.succeeded == 5 and u.batches == 1
    assert [a.ok for a in answers] == [i not in (1, 2, 4, 5, 7) for i in range(10)]
    assert "context_length_exceeded" in answers[2].error and "server_error" in answers[1].error
    assert "5 of 10 line(s) failed: context_length_exceeded: 3, server_error: 2" in caplog.text

    server.batch_line_error = None        # the causes went away: a re-run submits only the failed five
    server.responder = lambda req: f"answer to {req['messages'][0]['content']}"
    again = batch_teacher()
    assert all(a.ok for a in again.run_sync(_reqs(again, 10)))
    assert again.last_run.cached == 5 and again.last_run.sent == 5
    assert len(server.stats.per_key_success) == 10 and set(server.stats.per_key_success.values()) == {1}


def test_an_expired_batch_folds_what_it_answered(openai_server, batch_teacher):
    openai_server.batch_step = 2
    openai_server.batch_api.expire_after = 3
    teacher = batch_teacher()
    answers = teacher.run_sync(_reqs(teacher, 8))
    assert sum(a.ok for a in answers) == 4 and teacher.last_run.batch_errors == {"batch_expired": 4}
    assert len(teacher.ledger.reload()) == 4


def test_killed_between_create_and_record_adopts_the_batch(openai_server, batch_teacher):
    """The store as a kill leaves it right after POST /batches: a record still `submitting`, no batch id."""
    from primer.teacher.batch import _Run
    from primer.teacher.client import TeacherUsage

    teacher = batch_teacher()
    reqs = _reqs(teacher, 5)
    openai_server.hold_batches()
    run = _Run(teacher, {r.key: r for r in reqs}, TeacherUsage(), {}, lambda n, of: None, 5)
    rec = run.submit(reqs)
    run.records.write({**rec, "state": "submitting", "batch_id": None, "input_file_id": None})
    openai_server.release_batches()
    again = batch_teacher()
    assert all(a.ok for a in again.run_sync(reqs))
    st = openai_server.stats
    assert st.batch_calls["batches.create"] == 1 and st.batch_calls["batches.list"] >= 1
    assert again.last_run.batches_resumed == 1 and again.last_run.batches == 0
    assert set(st.per_key_success.values()) == {1} and len(st.per_key_success) == 5


def test_budget_caps_what_is_submitted(openai_server, batch_teacher):
    teacher = batch_teacher(max_tokens=100, max_tokens_total=500)
    answers = teacher.run_sync(_reqs(teacher, 10))
    sent = [a for a in answers if a.error != BUDGET_EXHAUSTED]
    assert 0 < len(sent) < 10 and all(a.ok for a in sent)
    usage = teacher.last_run
    assert usage.stopped.startswith("budget reached") and usage.sent == len(sent)
    assert [len(b) for b in _batch_inputs(openai_server)] == [len(sent)]
    # the stop reports what it held back for the admitted requests (their worst case), as online mode does;
    # they were answered, so the final ledger lies between what was spent at the stop and that plus reserved
    worst = sum(sum(teacher._worst_case(r)) for r in _reqs(teacher, 10)[:len(sent)])
    assert usage.reserved_tokens == worst > 0 and usage.spent_at_stop == 0
    spent = sum(teacher.ledger.totals())
    assert 0 < spent <= usage.spent_at_stop + usage.reserved_tokens


@pytest.mark.parametrize("case", ["401", "no batch api"])
def test_refusals_fail_at_once_in_one_line(openai_server, batch_teacher, case):
    if case == "401":
        openai_server.auth_key = "a-different-key"
    else:
        openai_server.batch_api.enabled = False
    teacher = batch_teacher()
    with pytest.raises(TeacherError) as e:
        teacher.run_sync(_reqs(teacher, 20))
    msg = str(e.value)
    assert "\n" not in msg and "sk-" not in msg and not is_transient(e.value)
    assert ("PRIMER_TEST_OPENAI_KEY" in msg) if case == "401" else ("teacher.mode=online" in msg)
    st = openai_server.stats
    assert st.batch_calls.get("batches.create", 0) == 0 and (st.total == 1 if case == "401" else
                                                              st.batch_calls["not_found"] == 1)


def test_an_online_teacher_never_sends_a_batch_configuration(openai_server, teacher_config):
    teacher = Teacher(dataclasses.replace(teacher_config, mode="batch"))
    with pytest.raises(ConfigError, match="open_teacher"):
        teacher.run_sync(_reqs(teacher, 2))
    assert openai_server.stats.total == 0
