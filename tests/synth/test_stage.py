import pyarrow.parquet as pq

from primer.config import load_config
from primer.store import open_store
from tasks.synth import prompts as P
from tasks.synth.stage import verify_exercises
from tasks.synth.validate import parse_exercise
from tests.support.fixtures import TEST_KEY_ENV
from tests.support.openai_server import FaultPlan
from tests.synth import scripted
from tests.synth.scripted import exercise


def run_synthesis(cfg_or_overrides):
    """Run the synthesize flow (a real Prefect run) and read back its output: (uri, Output)."""
    from flows.synthesize import synthesize

    ov = cfg_or_overrides
    uri = synthesize(profile="tiny", overrides=ov)
    store = open_store(load_config("tiny", ov).store)
    return uri, store.read_output(uri, "synthesize")


def overrides(server, root, **kw):
    return {"store.root": str(root), "teacher.base_url": server.url, "teacher.model": "loopback-model",
            "teacher.api_key_env": TEST_KEY_ENV, "teacher.backoff_base_s": 0.01, "teacher.backoff_max_s": 0.1,
            "teacher.timeout_s": 10, "teacher.max_retries": 6, "teacher.ledger_commit_interval_s": 0.05,
            "synth.textbooks": 12, "synth.exercises": 8, "synth.verify_timeout_s": 2.0,
            "synth.dedup_threshold": 1.0, "synth.min_chars": 300, **kw}


def _rows(uri, name):
    store = open_store(load_config("tiny", {"store.root": uri.rsplit("/synthesize/", 1)[0]}).store)
    return pq.read_table(store.download(f"{uri}/{name}", f"/tmp/primer-test-{name}")).to_pylist(), store


def test_verification_catches_wrong_hanging_and_crashing_solutions():
    cfg = load_config("tiny", {"synth.verify_timeout_s": 1.5})
    rows = []
    for kind in ("good", "wrong", "hang", "crash"):
        ex, reason, _ = parse_exercise(exercise(f"f_{kind}", kind), "stop", f"f_{kind}")
        assert reason == ""
        rows.append({"text": ex.program, "tests": ex.tests, "id": kind})
    out = {r["id"]: r for r in verify_exercises(cfg, rows)}
    assert out["good"]["verified"] and out["good"]["failure_reason"] == ""
    assert not out["wrong"]["verified"] and "AssertionError" in out["wrong"]["failure_reason"]
    assert not out["hang"]["verified"] and out["hang"]["failure_reason"] == "timeout"
    assert not out["crash"]["verified"] and "RuntimeError" in out["crash"]["failure_reason"]
    assert "boom" in out["crash"]["failure_detail"]


def test_skipped_without_teacher(prefect_harness, monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("NO_KEY_HERE", raising=False)
    uri, out = run_synthesis({"store.root": str(tmp_path), "teacher.api_key_env": "NO_KEY_HERE"})
    assert out.skipped and out.reason.startswith("no teacher configured") and out.file_names() == []
    _, disabled = run_synthesis({"store.root": str(tmp_path), "synth.enabled": False})
    assert disabled.skipped and disabled.reason == "synth.enabled is false"


def test_end_to_end_through_faults(prefect_harness, scripted_server, tmp_path):
    server = scripted_server
    server.faults = FaultPlan(rate_limit=0.1, server_error=0.1, malformed=0.1, retry_after=0.01, seed=7)
    ov = overrides(server, tmp_path / "store", **{"synth.subtopics_per_topic": 2, "synth.variants_per_exercise": 1})
    cfg = load_config("tiny", ov)
    topics, _ = P.load_topic_tree()
    pools, _ = P.load_exercise_topics()
    leaves = [P.Topic(t.chapter, f"{t.name}: aspect {i + 1}", parent=t.name) for t in topics for i in range(2)]
    tb_plan = P.textbook_plan(leaves, cfg.synth.audiences, cfg.synth.styles, 12, cfg.synth.seed)
    scripted.BAD_TEXTBOOKS.update({tb_plan[0]["topic"].name: "syntax", tb_plan[1]["topic"].name: "short",
                                   tb_plan[2]["topic"].name: "duplicate", tb_plan[3]["topic"].name: "duplicate",
                                   tb_plan[4]["topic"].name: "refusal"})
    ex_plan = P.exercise_plan(pools, 8, cfg.synth.seed)
    names = [i["function_name"] for i in ex_plan]
    scripted.BAD_EXERCISES.update({names[0]: "wrong", names[1]: "hang", names[2]: "crash", names[3]: "malformed"})

    uri, res = run_synthesis(ov)
    m = res.manifest
    assert m["partial"] is False and m["stopped"] is None
    assert set(server.stats.per_key_success.values()) == {1}
    assert m["datasets"]["exercises"]["keep_if"] == "verified"
    assert m["datasets"]["textbooks"]["files"] == ["textbooks.parquet"]
    acc = m["accounting"]
    assert acc["spent"]["tokens"] == m["teacher_usage"]["prompt_tokens"] + m["teacher_usage"]["completion_tokens"] > 0
    assert acc["ledger"]["tokens"] >= acc["spent"]["tokens"] and m["teacher_usage"]["ledger_tokens"] > 0
    assert sum(p["tokens"] for p in acc["by_phase"].values()) == acc["spent"]["tokens"]
    tb, store = _rows(res.uri, "textbooks.parquet")
    assert {"id", "text", "source", "topic", "audience"} <= set(tb[0])
    assert len({r["id"] for r in tb}) == len(tb) == m["datasets"]["textbooks"]["rows"]
    assert all(": aspect" in r["topic"] for r in tb)   # expanded subtopics were used
    drops, _ = _rows(res.uri, "dropped.parquet")
    reasons = {(d["kind"], d["reason"]) for d in drops}
    assert {("textbook", "code_syntax_error"), ("textbook", "too_short"), ("textbook", "duplicate"),
            ("exercise", "malformed_exercise"), ("textbook", "refusal")} <= reasons
    assert len(tb) == 12 - 4
    ex, _ = _rows(res.uri, "exercises.parquet")
    by_name = {r["function_name"]: r for r in ex}
    assert not by_name[names[0]]["verified"] and "AssertionError" in by_name[names[0]]["failure_reason"]
    assert by_name[names[1]]["failure_reason"] == "timeout"
    assert "RuntimeError" in by_name[names[2]]["failure_reason"]
    good = [r for r in ex if r["verified"] and not r["variant_of"]]
    variants = [r for r in ex if r["variant_of"]]
    assert good and len(variants) == len(good) and all(v["verified"] for v in variants)
    for r in ex:
        assert r["text"] == r["prompt"] + "\n" + r["solution"]
    assert m["teacher_usage"]["succeeded"] == server.stats.successful
    div = store.read_json(f"{res.uri}/diversity.json")
    assert div["textbooks"]["distinct_2"]["distinct"] > 0.5 and 0 < div["textbooks"]["topic_coverage"] <= 1
    assert store.read_bytes(f"{res.uri}/samples.md").decode().startswith("# Synthesize: samples")

    # same config again: the finished output is reused, nothing is sent
    before = server.stats.total
    again, _ = run_synthesis(ov)
    assert again == uri and server.stats.total == before
    # a changed knob: new output; the ledger answers every request already paid for
    more, _ = run_synthesis({**ov, "synth.textbooks": 14})
    assert more != uri and set(server.stats.per_key_success.values()) == {1}
    assert server.stats.successful - m["teacher_usage"]["succeeded"] == 2


def test_budget_cap_stops_keeps_and_says_so(prefect_harness, scripted_server, tmp_path):
    # concurrency 4 > the 3 worst cases (~1,025 tokens each) that fit in 4,000: the 4th textbook is refused
    # while the first 3 are still in flight, so the textbooks' stop has a reservation whatever the timing
    _, res = run_synthesis(overrides(scripted_server, tmp_path / "store", **{
        "teacher.max_tokens_total": 4000, "teacher.max_tokens": 600, "teacher.concurrency": 4,
        "synth.textbooks": 20, "synth.exercises": 5}))
    m = res.manifest
    assert m["stopped"] and "max_tokens_total" in m["stopped"] and "reserved" in m["stopped"]
    assert "remaining" in m["stopped"]
    acc = m["accounting"]
    assert acc["ledger"]["tokens"] <= 4000 and acc["remaining"]["tokens"] == 4000 - acc["ledger"]["tokens"]
    assert m["teacher_usage"]["ledger_tokens"] <= 4000
    assert 0 < m["datasets"]["textbooks"]["rows"] < 20
    assert m["drops"].get("textbook:not_sent_budget") and m["partial"] is False
    # each phase's own stop: `reserved` is the worst case in flight when admission stopped, and those
    # requests were answered since, so the ledger after that phase (a fresh ledger: the phases' tokens so
    # far, in run order: the manifest's keys are sorted) lies between the spend at the stop and that plus the
    # reservation
    books = acc["by_phase"]["textbooks"]
    assert books["stopped"] and books["reserved_tokens"] > 0
    assert f"{books['spent_at_stop']:,} spent + {books['reserved_tokens']:,} reserved" in books["stopped"]
    ledger_after, stops = 0, []
    for phase in (acc["by_phase"][name] for name in ("topics", "textbooks", "exercises", "variants")):
        ledger_after += phase["tokens"]
        if phase["stopped"]:
            stops.append(phase)
            assert phase["spent_at_stop"] <= ledger_after <= phase["spent_at_stop"] + phase["reserved_tokens"]
    # the run-level `stopped` and `reserved` are the latest stop's
    stop = acc["reserved"]
    assert stops[-1]["stopped"] == m["stopped"] and stops[-1]["reserved_tokens"] == stop["tokens"]
    assert f"{stop['spent_at_stop']:,} spent + {stop['tokens']:,} reserved" in m["stopped"]
    # spent sums every phase and equals what the server billed
    billed = scripted_server.stats.prompt_tokens + scripted_server.stats.completion_tokens
    assert acc["spent"]["tokens"] == acc["ledger"]["tokens"] == billed
