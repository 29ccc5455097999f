"""Progress of the generation phases (issue 16.4): the callback the Prefect-free units take, the periodic
log lines (done/total, tokens, $, req/s, ETA) checked against what the loopback server billed, and under a
real Prefect flow run the progress artifacts (ending at 100) and the lines in the run's log."""

from __future__ import annotations

import logging
import re
import time

import pytest

from primer.config import load_config
from tasks.synth import prompts as P
from tasks.synth.stage import generate_textbooks
from tests.synth.test_stage import overrides

PRICE = {"teacher.price_input": 1.0, "teacher.price_output": 2.0}   # USD per 1M tokens
LINE = re.compile(r"teacher \[(\w+)\]: (\d+)/(\d+) answered \((\d+) from the ledger\), ([\d,]+) tokens, "
                  r"\$([\d.]+), ([\d.]+) req/s, ETA (\d+|-)s?")


def _lines(records, phase):
    out = []
    for r in records:
        m = LINE.search(r.getMessage())
        if m and m.group(1) == phase:
            out.append(m)
    return out


def test_progress_callback_and_log_lines_match_what_was_billed(scripted_server, tmp_path, caplog):
    cfg = load_config("tiny", overrides(scripted_server, tmp_path / "store", **PRICE, **{
        "teacher.progress_every_s": 0.01, "teacher.concurrency": 3, "synth.textbooks": 12}))
    scripted_server.delay = 0.02   # answers spread over time: several periodic lines
    topics, _ = P.load_topic_tree()
    seen = []
    with caplog.at_level(logging.INFO, logger="primer.teacher"):
        out = generate_textbooks(cfg, topics, progress=seen.append)
    assert len(out["rows"]) == 12
    billed = scripted_server.stats.prompt_tokens + scripted_server.stats.completion_tokens
    usd = (scripted_server.stats.prompt_tokens * 1.0 + scripted_server.stats.completion_tokens * 2.0) / 1e6

    assert [p.done for p in seen] == sorted(p.done for p in seen) and seen[0].done == 0
    last = seen[-1]
    assert (last.phase, last.done, last.total, last.cached, last.fraction) == ("textbooks", 12, 12, 0, 1.0)
    assert last.tokens == billed > 0 and last.usd == pytest.approx(usd)
    assert last.rate > 0 and last.eta_s == 0 and last.log_due
    assert all(p.tokens <= billed for p in seen) and any(0 < p.done < 12 for p in seen)

    lines = _lines(caplog.records, "textbooks")
    assert len(lines) >= 2, [r.getMessage() for r in caplog.records]
    final = lines[-1]
    assert final.group(2, 3, 4) == ("12", "12", "0") and final.group(8) == "0"
    assert int(final.group(5).replace(",", "")) == billed and float(final.group(6)) == pytest.approx(usd, abs=1e-4)
    assert float(final.group(7)) > 0
    assert all(int(m.group(2)) <= 12 for m in lines)

    # the same phase again: every answer from the ledger, nothing new paid, one line saying so
    caplog.clear()
    seen.clear()
    with caplog.at_level(logging.INFO, logger="primer.teacher"):
        generate_textbooks(cfg, topics, progress=seen.append)
    assert scripted_server.stats.prompt_tokens + scripted_server.stats.completion_tokens == billed
    again = _lines(caplog.records, "textbooks")
    assert [m.group(2, 3, 4, 5) for m in again] == [("12", "12", "12", "0")]
    assert seen[-1].done == 12 and seen[-1].tokens == 0


def test_flow_publishes_progress_artifacts_ending_at_100_and_logs_lines(prefect_harness, scripted_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from flows.synthesize import synthesize
    from tests.conftest import flow_artifacts

    ov = overrides(scripted_server, tmp_path / "store", **PRICE, **{
        "teacher.progress_every_s": 0.01, "synth.subtopics_per_topic": 2, "synth.variants_per_exercise": 1})
    state = synthesize(profile="tiny", overrides=ov, return_state=True)
    assert state.is_completed()
    flow_run_id = state.state_details.flow_run_id
    keys = [f"synthesize-{p}-progress" for p in ("topics", "textbooks", "exercises", "variants")]
    found = flow_artifacts(flow_run_id, keys)
    assert set(found) == set(keys)
    for key, art in found.items():
        assert art.type == "progress" and float(art.data) == 100.0, (key, art.data)

    phase_totals = (("textbooks", 12), ("exercises", 8))

    def end_lines(messages, phase, n):
        return [m for m in messages if f"teacher [{phase}]: {n}/{n} answered" in m]

    # Run logs reach the API through Prefect's background log worker: read until the phases' end lines
    # have arrived (then every line logged before them has too), at most 20 s.
    deadline = time.monotonic() + 20
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        messages = [lg.message for lg in logs]
        if all(end_lines(messages, p, n) for p, n in phase_totals) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for phase, n in phase_totals:
        ends = end_lines(messages, phase, n)
        assert len(ends) == 1, (phase, [m for m in messages if "teacher [" in m])   # each line once
        assert re.search(r"[\d,]+ tokens, \$[\d.]+, [\d.]+ req/s, ETA 0s", ends[-1])
    lines = [m for m in messages if "teacher [" in m]
    assert len(lines) == len(set(lines)), [m for m in lines if lines.count(m) > 1]
