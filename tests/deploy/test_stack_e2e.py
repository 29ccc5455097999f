"""End to end on a real local stack: scripts/stack.sh up (Prefect server on SQLite + process worker, on a free
loopback port, state in a tmp dir), everything in deployments/prefect.yaml deployed, the tiny pack deployment
run twice with `prefect deployment run ... --watch`, artifacts read back through the API and seen in the UI
(headless Chromium), the nightly schedule producing scheduled runs, and a fake secret in the worker's
environment appearing nowhere the server stores or the user sees."""

from __future__ import annotations

import json
import re
import shutil
import time

import pytest

from tests.conftest import REPO
from tests.deploy.stack import FAKE_SECRET, OUTPUTS, Stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("stack"))
    up = s.sh("up")
    try:
        assert up.returncode == 0, f"stack up failed:\n{up.stdout}\n{up.stderr}"
        status = s.sh("status", timeout=120)
        assert status.returncode == 0, status.stdout + status.stderr
        yield s
    finally:
        down = s.sh("down", timeout=180)
        logs = OUTPUTS / "stack-logs"
        shutil.rmtree(logs, ignore_errors=True)
        shutil.copytree(s.base / "stack" / "logs", logs, dirs_exist_ok=True)
        for name in ("server", "worker"):
            assert not (s.base / "stack" / f"{name}.pid").exists(), f"{name} still running after down"
        assert down.returncode == 0, down.stdout + down.stderr
        assert "SIGKILL" not in down.stdout, f"the stack did not stop within its grace period:\n{down.stdout}"


def _run_pack(stack: Stack, overrides: dict) -> str:
    done = stack.prefect("deployment", "run", "pack/tiny", "-p", f"overrides={json.dumps(overrides)}",
                         "--watch", "--watch-interval", "2", "--watch-timeout", "280")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    return re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)


def _artifacts(stack: Stack, flow_run_id: str) -> dict[str, dict]:
    rows = stack.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    return {a["key"]: a for a in rows if a.get("key")}


@pytest.fixture(scope="module")
def pack_runs(stack, corpus_dir):
    # No store.root here: deployed runs find the store from the worker's environment (PRIMER_STORE_ROOT, set
    # by stack.sh), as docs/prefect.md tells users; the outputs must land there.
    overrides = {"tokenizer.vocab_size": 512, "pack.seq_len": 64,
                 "pack.sources": [{"uri": str(corpus_dir / "json"), "name": "json"},
                                  {"uri": str(corpus_dir / "email"), "name": "email"}]}
    first = _run_pack(stack, overrides)
    second = _run_pack(stack, overrides)
    return first, second


def test_all_deployments_from_the_yaml_are_on_the_server(stack):
    from primer.prefect_setup import deployment_names

    expected = set(deployment_names(REPO / "deployments" / "prefect.yaml"))
    deployed = {f"{stack.get('/flows/' + d['flow_id'])['name']}/{d['name']}" for d in stack.post("/deployments/filter")}
    assert expected <= deployed, f"missing: {expected - deployed}"
    tiny = stack.get("/deployments/name/pack/tiny")
    schema = tiny["parameter_openapi_schema"]["properties"]
    assert {"profile", "overrides"} <= set(schema)
    assert schema["overrides"].get("description"), "the run form should describe `overrides`"
    assert tiny["work_pool_name"] == "primer-cpu"


def test_pack_deployment_runs_publishes_artifacts_and_reuses(stack, pack_runs):
    import tasks.pack.prefect_tasks
    from primer.prefect_setup import StageCache

    first, second = pack_runs
    for run_id in pack_runs:
        assert stack.get(f"/flow_runs/{run_id}")["state"]["type"] == "COMPLETED"
    arts = _artifacts(stack, first)
    assert {"pack-sources", "pack-summary", "pack-progress"} <= set(arts)
    table = arts["pack-sources"]["data"]
    rows = json.loads(table) if isinstance(table, str) else table
    assert {r["source"] for r in rows} == {"json", "email"}
    assert "Token shards" in arts["pack-summary"]["data"]
    manifests = list((stack.store / "pack").glob("*/manifest.json"))
    assert len(manifests) == 1, "both runs must land on the same content-addressed output"

    again = _artifacts(stack, second)
    task_runs = stack.post("/task_runs/filter", {"task_runs": {"flow_run_id": {"any_": [second]}}})
    states = {t["name"].rsplit("-", 1)[0]: t["state"]["name"] for t in task_runs}
    # The tokenizer task is cached by inputs across runs (Prefect's cache, results on the store); the shards
    # are reused through their content-addressed output (the summary says so) and nothing is re-tokenized.
    assert isinstance(tasks.pack.prefect_tasks.get_tokenizer.cache_policy, StageCache)
    assert states.get("pack-tokenizer") == "Cached", states
    assert "pack-tokenize-shard" not in states, states
    assert "(reused)" in again["pack-summary"]["data"], again["pack-summary"]["data"]
    assert any((stack.store / "prefect-results").iterdir()), "results persist on the artifact store"


def test_ui_shows_the_flow_runs_artifacts(stack, pack_runs, tmp_path):
    from tests.deploy.browser import Browser, chromium_or_skip

    chromium_or_skip()
    first, _ = pack_runs
    browser = Browser(tmp_path / "chromium-profile")
    try:
        text = browser.open_run_artifacts(stack.ui, first, ["pack-summary", "pack-sources"])
        OUTPUTS.mkdir(exist_ok=True)
        (OUTPUTS / "ui-flow-run-artifacts.html").write_text(browser.html())
        shot = browser.screenshot(OUTPUTS / "ui-flow-run-artifacts.png")
        assert shot.stat().st_size > 10_000
        assert FAKE_SECRET not in text
        # The markdown summary renders on the artifact's own page.
        summary_id = _artifacts(stack, first)["pack-summary"]["id"]
        browser.goto(f"{stack.ui}/artifacts/artifact/{summary_id}")
        browser.wait_text(["Token shards", "train:"], timeout=60)
        browser.screenshot(OUTPUTS / "ui-pack-summary.png")
    finally:
        browser.close()


def test_nightly_schedule_from_the_yaml_produces_scheduled_runs(stack):
    nightly = stack.get("/deployments/name/curate/nightly-tiny")
    assert [s["schedule"].get("cron") for s in nightly["schedules"]] == ["0 3 * * *"]
    assert all(s["active"] for s in nightly["schedules"])
    paused = stack.get("/deployments/name/curate/nightly-phi1")
    assert paused["schedules"] and not any(s["active"] for s in paused["schedules"])

    deadline, runs = time.time() + 120, []
    while time.time() < deadline:
        runs = stack.post("/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [nightly["id"]]},
                                                              "state": {"type": {"any_": ["SCHEDULED"]}}}})
        if runs:
            break
        time.sleep(2)
    assert runs, "the scheduler produced no runs for curate/nightly-tiny"
    assert all(r["expected_start_time"][11:16] == "03:00" for r in runs)
    none = stack.post("/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [paused["id"]]}}})
    assert none == [], "a paused schedule must not produce runs"


def test_no_secret_reaches_the_server_or_the_user(stack, pack_runs):
    """The worker and every flow run had FAKE_SECRET in their environment; search what the server stores."""
    seen: list[str] = []

    def check(label: str, payload) -> None:
        blob = payload if isinstance(payload, str) else json.dumps(payload, default=str)
        if FAKE_SECRET in blob:
            seen.append(label)

    offset = 0
    while True:
        logs = stack.post("/logs/filter", {"limit": 200, "offset": offset})
        check(f"logs[{offset}:]", logs)
        if len(logs) < 200:
            break
        offset += 200
    check("artifacts", stack.post("/artifacts/filter"))
    check("flow runs", stack.post("/flow_runs/filter", {"limit": 200}))
    check("task runs", stack.post("/task_runs/filter", {"limit": 200}))
    check("deployments", stack.post("/deployments/filter"))
    check("blocks", stack.post("/block_documents/filter", {"include_secrets": True}))
    check("variables", stack.post("/variables/filter"))
    check("work pools", stack.post("/work_pools/filter"))
    check("events", stack.post("/events/filter", {"limit": 50}))
    db = stack.base / "stack" / "prefect-home" / "prefect.db"
    for path in [db, *db.parent.glob("prefect.db-*")]:
        if path.is_file() and FAKE_SECRET.encode() in path.read_bytes():
            seen.append(str(path.name))
    for log in (stack.base / "stack" / "logs").glob("*.log"):
        check(log.name, log.read_text(errors="replace"))
    for path in stack.store.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000 and FAKE_SECRET.encode() in path.read_bytes():
            seen.append(str(path))
    assert not seen, f"the fake secret leaked into: {seen}"
