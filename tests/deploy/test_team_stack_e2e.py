"""The team setup end to end, in one pipeline run (the expensive part, so everything is checked on it):

* `scripts/stack.sh up --postgres`: PostgreSQL from the distribution's package, initdb'd as an unprivileged
  user on a loopback port, a Prefect server on it (postgresql+asyncpg), a process worker, `pipeline/tiny`
  deployed from deployments/prefect.yaml (its pull step finds the code);
* the store root comes only from the worker's environment (PRIMER_STORE_ROOT), as docs/prefect.md tells
  users: every stage output of the run is found under it, none in the checkout's ./artifacts;
* PostgreSQL really holds the runs (read back with asyncpg), and the artifacts come back through the API;
* the pipeline run's own page (`pipeline-summary`) tells the story, seen in headless Chromium, screenshots
  under test-outputs/;
* `scripts/stack.sh down` stops worker, server and PostgreSQL within the grace period (no SIGKILL).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import time

import pytest

from primer.config import StoreConfig
from primer.store import open_store
from tests.conftest import MBPP_PATH, REPO, free_port
from tests.deploy.stack import OUTPUTS, Stack

pytestmark = pytest.mark.slow

MODEL = {"n_layer": 2, "d_model": 64, "n_head": 4, "d_mlp": 128, "rotary_dim": 8}


def fast_overrides(corpus, local_dir) -> dict:
    """The tiny profile, smaller: every stage in seconds on 2 cores. No store.root: that is the point."""
    return {
        "curate.sources": [{"uri": str(corpus)}], "curate.max_docs": 0, "curate.annotate_n": 60,
        "curate.min_per_class": 3, "curate.rf_trees": 20, "curate.label_threshold": 7.5, "curate.mbpp_path": MBPP_PATH,
        "tokenizer.vocab_size": 512, "pack.seq_len": 64, "pack.val_fraction": 0.1,
        "model.overrides": MODEL, "train.local_dir": str(local_dir), "train.threads_per_rank": 1,
        "train.pretrain.max_steps": 6, "train.pretrain.save_every": 3, "train.pretrain.eval_every": 3,
        "train.pretrain.batch_size": 8, "train.pretrain.micro_batch": 4, "train.pretrain.eval_batches": 1,
        "select.limit": 3, "select.max_new_tokens": 16,
        "evaluate.limit": 3, "evaluate.max_new_tokens": 16, "evaluate.mbpp_path": MBPP_PATH,
    }


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    if not (shutil.which("initdb") or list(__import__("glob").glob("/usr/lib/postgresql/*/bin/initdb"))):
        if os.environ.get("PRIMER_SKIP_POSTGRES") == "1":
            pytest.skip("PRIMER_SKIP_POSTGRES=1 and no PostgreSQL")
        pytest.fail("PostgreSQL's initdb not found: run scripts/ci-system-deps.sh (apt-get install -y postgresql)")
    base = tmp_path_factory.mktemp("team")
    # No teacher key in this worker's environment: synthesize is skipped (a fake key would send it to the
    # real API's address); the secret handling is the SQLite stack test's job.
    # TensorBoard (an optional tracker) rides along when installed: its event files must land on the store.
    trackers = "tensorboard" if importlib.util.find_spec("tensorboard") else ""
    s = Stack(base, PRIMER_STACK_PG_PORT=str(free_port()), PRIMER_STACK_DEPLOY="pipeline/tiny", OPENAI_API_KEY="",
              PRIMER_TRACKERS=trackers)
    s.down_output = ""
    up = s.sh("up", "--postgres")
    try:
        assert up.returncode == 0, f"stack up --postgres failed:\n{up.stdout}\n{up.stderr}"
        assert "PostgreSQL" in up.stdout and "work pool primer-gpu: created (type process)" in up.stdout, up.stdout
        yield s
    finally:
        down = s.sh("down", "--purge", timeout=180)  # the cluster lives outside the tmp dir when run as root
        s.down_output = down.stdout + down.stderr
        logs = OUTPUTS / "team-stack-logs"
        shutil.rmtree(logs, ignore_errors=True)
        shutil.copytree(base / "stack" / "logs", logs, dirs_exist_ok=True)
        assert down.returncode == 0, s.down_output
        assert "SIGKILL" not in down.stdout, f"the stack did not stop within its grace period:\n{down.stdout}"
        assert "postgres stopped" in down.stdout and "postgres cluster removed" in down.stdout, down.stdout
        for name in ("server", "worker"):
            assert not (base / "stack" / f"{name}.pid").exists(), f"{name} still running after down"


@pytest.fixture(scope="module")
def pipeline_run(team, corpus_dir, tmp_path_factory):
    local = tmp_path_factory.mktemp("train-local")
    overrides = fast_overrides(corpus_dir, local)
    done = team.prefect("deployment", "run", "pipeline/tiny", "-p", f"overrides={json.dumps(overrides)}",
                        "--watch", "--watch-interval", "5", "--watch-timeout", "1500", timeout=1600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:] + "\n" + (team.base / "stack" / "logs" / "worker.log").read_text()[-6000:]
    return re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)


def test_outputs_land_under_the_store_root_from_the_environment(team, pipeline_run):
    run = team.get(f"/flow_runs/{pipeline_run}")
    assert run["state"]["type"] == "COMPLETED"
    store = open_store(StoreConfig(root=str(team.store)))
    runs = sorted((team.store / "runs").iterdir())
    assert len(runs) == 1, runs
    lineage = json.loads((runs[0] / "manifest.json").read_text())
    assert lineage["status"] == "complete"
    for stage in ("curate", "pack", "pretrain", "select", "release", "evaluate"):
        entry = lineage["stages"][stage]
        assert not entry["uri"].startswith("/"), f"{stage}: lineage should be store-relative: {entry['uri']}"
        assert store.read_output(entry["uri"]).content_hash == entry["content_hash"]
    assert not (REPO / "artifacts" / "runs" / runs[0].name).exists(), "outputs went to the checkout, not the store"
    if team.env.get("PRIMER_TRACKERS") == "tensorboard":
        run_dir = team.store / lineage["stages"]["pretrain"]["uri"]
        assert list((run_dir / "tensorboard").glob("events.out.tfevents.*")), "no TensorBoard events beside the checkpoints"


def test_postgres_holds_the_runs(team, pipeline_run):
    import asyncio

    import asyncpg

    password = (team.base / "stack" / "pg-password").read_text().strip()
    port = int((team.base / "stack" / "pg-port").read_text())

    async def query():
        conn = await asyncpg.connect(host="127.0.0.1", port=port, user="prefect", password=password,
                                     database="prefect")
        try:
            parent = await conn.fetchrow("select state_type from flow_run where id = $1::uuid", pipeline_run)
            children = await conn.fetchval(
                "select count(*) from flow_run f join task_run t on f.parent_task_run_id = t.id "
                "where t.flow_run_id = $1::uuid", pipeline_run)
            return parent, children
        finally:
            await conn.close()

    parent, children = asyncio.run(query())
    assert parent is not None and parent["state_type"] == "COMPLETED"
    assert children >= 6, f"expected the stage subflow runs in PostgreSQL, found {children}"
    assert not (team.base / "stack" / "prefect-home" / "prefect.db").exists(), "the server used SQLite"


def _artifacts(team: Stack, flow_run_id: str) -> dict[str, dict]:
    rows = team.post("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    return {a["key"]: a for a in rows if a.get("key")}


def test_the_pipeline_run_page_tells_the_story(team, pipeline_run, tmp_path):
    from tests.deploy.browser import Browser, chromium_or_skip

    arts = _artifacts(team, pipeline_run)
    assert {"pipeline-summary", "pipeline-lineage"} <= set(arts), set(arts)
    page = arts["pipeline-summary"]["data"]
    for needle in ("## Stages", "## Curation funnel", "## Teacher", "## Training", "loss curve](data:image/png",
                   "## Checkpoint selection", "## Scores", "## Lineage (store-relative)", "/runs/flow-run/"):
        assert needle in page, f"{needle!r} missing from the run page"
    assert str(team.store) not in page, "the run page shows absolute store paths"
    subflow_ids = set(re.findall(r"/runs/flow-run/([0-9a-f-]{36})", page))
    for run_id in subflow_ids:
        assert team.get(f"/flow_runs/{run_id}")["parent_task_run_id"], "links must point at the subflow runs"

    chromium_or_skip()
    browser = Browser(tmp_path / "chromium-profile")
    try:
        browser.open_run_artifacts(team.ui, pipeline_run, ["pipeline-summary"])
        OUTPUTS.mkdir(exist_ok=True)
        browser.screenshot(OUTPUTS / "ui-pipeline-run-artifacts.png")
        browser.goto(f"{team.ui}/artifacts/artifact/{arts['pipeline-summary']['id']}")
        text = browser.wait_text(["Curation funnel", "Checkpoint selection", "Lineage (store-relative)"], timeout=60)
        shot = browser.screenshot(OUTPUTS / "ui-pipeline-summary.png")
        assert shot.stat().st_size > 10_000
        assert "No teacher" in text or "Teacher usage" in text
        loaded = browser.eval("Array.from(document.images).filter(i => i.src.startsWith('data:image/png') "
                              "&& i.naturalWidth > 0).length")
        assert loaded >= 1, "the loss curve picture did not render"
        assert browser.eval("(() => { const h = [...document.querySelectorAll('h2')].find(e => "
                            "e.textContent.includes('Training')); if (h) h.scrollIntoView(); return !!h; })()")
        time.sleep(1)
        browser.screenshot(OUTPUTS / "ui-pipeline-summary-training.png")
    finally:
        browser.close()
