"""Request batches (issue 13.1): a generation phase's requests are mapped in units of
`synth.batch_requests` on the stage's task runner; the output is the same, byte for byte, whatever the
batch size and the units in flight, and nothing is requested twice."""

from __future__ import annotations

import dataclasses

import pytest

from primer.config import load_config
from primer.teacher import TeacherAnswer, TeacherRequest, TeacherUsage
from tasks.synth import batches
from tests.synth.test_stage import overrides


def _req(key: str) -> TeacherRequest:
    return TeacherRequest(key=key, messages=[{"role": "user", "content": key}])


def _cfg(**kw):
    return load_config("tiny", kw)


def test_split_drops_repeated_keys_keeps_first_order_and_cuts_units():
    reqs = [_req(k) for k in "abcadbefgc"]
    units = batches.split(_cfg(**{"synth.batch_requests": 3, "synth.parallel_batches": 2}), reqs)
    assert [[r.key for r in u] for u in units] == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert batches.split(_cfg(**{"synth.parallel_batches": 2}), []) == []


@pytest.mark.parametrize("why", [{"synth.parallel_batches": 1}, {"teacher.max_tokens_total": 10_000},
                                 {"teacher.max_cost_usd": 5.0}, {"teacher.mode": "batch"}])
def test_one_unit_unless_units_can_run_side_by_side(why):
    """Sequential units would each re-read the ledger; under a budget each unit reserves only its own
    in-flight worst case; the Batch API client submits all its batches before polling."""
    cfg = _cfg(**{"synth.batch_requests": 3, "synth.parallel_batches": 4, **why})
    units = batches.split(cfg, [_req(k) for k in "abcadbefgc"])
    assert [[r.key for r in u] for u in units] == [list("abcdefg")] and batches.window(cfg, len(units)) == 1


def test_window_is_parallel_batches_at_most_the_units():
    assert batches.window(_cfg(**{"synth.parallel_batches": 4}), 10) == 4
    assert batches.window(_cfg(**{"synth.parallel_batches": 4}), 2) == 2


def test_merge_answers_every_request_in_order_and_sums_usage():
    reqs = [_req(k) for k in "abca"]
    u1 = dataclasses.asdict(TeacherUsage(requests=2, sent=2, succeeded=2, prompt_tokens=10, completion_tokens=5,
                                         ledger_tokens=15, wall_s=9.0))
    u2 = dataclasses.asdict(TeacherUsage(requests=1, cached=1, ledger_tokens=15, wall_s=9.0))
    answers, usage = batches.merge(reqs, [([TeacherAnswer("a", "A", None), TeacherAnswer("b", "B", None)], u1),
                                          ([TeacherAnswer("c", "C", None, cached=True)], u2)], wall_s=4.0)
    assert [a.text for a in answers] == ["A", "B", "C", "A"]
    assert (usage["requests"], usage["cached"], usage["sent"], usage["prompt_tokens"]) == (3, 1, 2, 10)
    assert usage["ledger_tokens"] == 15 and usage["wall_s"] == 4.0   # a snapshot, and the phase's wall time


def test_phase_tally_reports_done_over_total_as_units_finish():
    seen = []
    units = [[_req("a"), _req("b")], [_req("c")]]
    tally = batches.PhaseTally("textbooks", units, seen.append)
    tally.add(dataclasses.asdict(TeacherUsage(requests=2, prompt_tokens=3, completion_tokens=4)))
    tally.add(dataclasses.asdict(TeacherUsage(requests=1, cached=1)))
    assert [(p.done, p.total, p.log_due) for p in seen] == [(0, 3, False), (2, 3, True), (3, 3, True)]
    assert seen[-1].tokens == 7 and seen[-1].cached == 1 and "teacher [textbooks]: 3/3 answered" in seen[-1].line()
    assert batches.unit_label("textbooks", 1, 4) == "textbooks 2/4" and batches.unit_label("topics", 0, 1) == "topics"


def test_answered_takes_what_the_ledger_holds_and_leaves_the_rest_once_each(tmp_path):
    """A resumed phase: the ledger's answers are taken where the phase is mapped, so units are cut from
    the requests still to send only (each once), and the tally starts from the answers already there."""
    from primer.store import open_store
    from primer.teacher import Ledger, Teacher

    cfg = _cfg(**{"store.root": str(tmp_path), "synth.parallel_batches": 2, "synth.batch_requests": 2})
    ledger = Ledger(open_store(cfg.store), "synthesize")
    for key, text in (("a", "A"), ("b", "B")):
        ledger.add({"key": key, "text": text, "prompt_tokens": 3, "completion_tokens": 4})
    ledger.flush()
    teacher = Teacher(cfg.teacher, Ledger(open_store(cfg.store), "synthesize"))   # a fresh reader of the store
    (known, used), left = batches.answered(teacher, [_req(k) for k in "acbcde"])
    assert [(a.key, a.text, a.cached) for a in known] == [("a", "A", True), ("b", "B", True)]
    assert [r.key for r in left] == ["c", "d", "e"]
    assert (used["requests"], used["cached"], used["sent"], used["ledger_tokens"]) == (2, 2, 0, 14)

    seen = []
    units = batches.split(cfg, left)
    tally = batches.PhaseTally("textbooks", units, seen.append, used)
    assert [[r.key for r in u] for u in units] == [["c", "d"], ["e"]]
    assert (seen[0].done, seen[0].total, seen[0].cached, seen[0].log_due) == (2, 5, 2, True)
    answers, usage = batches.merge([_req(k) for k in "acbcde"], [(known, used)] + [
        ([TeacherAnswer(r.key, r.key.upper(), None) for r in u],
         dataclasses.asdict(TeacherUsage(requests=len(u), sent=len(u), succeeded=len(u)))) for u in units], 1.0)
    assert [a.text for a in answers] == list("ACBCDE") and (usage["requests"], usage["cached"]) == (5, 2)
    assert tally.total == 5


def _files(uri, root):
    from primer.store import open_store

    store = open_store(load_config("tiny", {"store.root": str(root)}).store)
    out = store.read_output(uri, "synthesize")
    return out.content_hash, {f["name"]: f["sha256"] for f in out.manifest["files"]}


@pytest.mark.slow
def test_flow_in_batches_equals_one_unit_and_sends_each_request_once(prefect_harness, scripted_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.synthesize import synthesize

    extra = {"synth.subtopics_per_topic": 2, "synth.variants_per_exercise": 1}
    one = synthesize(profile="tiny", overrides=overrides(scripted_server, tmp_path / "one", **extra))
    sent_once = scripted_server.stats.successful
    assert max(scripted_server.stats.per_key.values()) == 1
    scripted_server.stats.reset()
    ov = overrides(scripted_server, tmp_path / "batched", **extra,
                   **{"synth.batch_requests": 3, "synth.parallel_batches": 2})
    state = synthesize(profile="tiny", overrides=ov, return_state=True)
    batched = state.result()
    assert _files(batched, tmp_path / "batched") == _files(one, tmp_path / "one")
    # every request answered once: the units split the keys, none re-sent
    assert scripted_server.stats.successful == sent_once and max(scripted_server.stats.per_key.values()) == 1
    assert scripted_server.stats.max_in_flight <= 2 * load_config("tiny", ov).teacher.concurrency

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(
            any_=[state.state_details.flow_run_id])))
    names = sorted(r.name for r in runs if r.name.startswith("synth-textbooks-batch-"))
    assert names == [f"synth-textbooks-batch-{i}-of-4" for i in range(1, 5)], names   # 12 textbooks / 3
    assert all(r.state.is_completed() for r in runs if r.name.startswith("synth-"))

    # A new output over the same requests (another dedup threshold): every answer is in the ledger, so
    # no phase maps a unit and nothing is sent.
    scripted_server.stats.reset()
    state = synthesize(profile="tiny", overrides={**ov, "synth.dedup_threshold": 0.95}, return_state=True)
    assert state.result() != batched and scripted_server.stats.successful == 0
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(
            any_=[state.state_details.flow_run_id])))
    assert not [r.name for r in runs if "-batch-" in r.name], sorted(r.name for r in runs)
