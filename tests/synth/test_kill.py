"""Acceptance: SIGKILL the process running the synthesize flow at a random point, without waiting for the
ledger, re-run: no sample lost, none duplicated, and only requests in flight at the kill paid again."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from primer.config import load_config
from primer.store import open_store
from primer.teacher import Ledger
from tests.support.fixtures import TEST_KEY, TEST_KEY_ENV
from tests.support.openai_server import FaultPlan
from tests.synth.test_stage import overrides

ROOT = Path(__file__).resolve().parents[2]
CHILD = ("import json, sys\nfrom flows.synthesize import synthesize\n"
         "print('RESULT done', synthesize(profile='tiny', overrides=json.loads(sys.argv[1])))\n")
TEXTBOOKS, EXERCISES = 16, 6


def _spawn(ov):
    from prefect.settings import PREFECT_API_URL

    # the child's flow runs against the test session's Prefect server (the harness's API)
    env = {**os.environ, TEST_KEY_ENV: TEST_KEY, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value()}
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(ov)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_sigkill_mid_generation_then_rerun(prefect_harness, scripted_server, tmp_path):
    server = scripted_server
    rng = random.Random(os.environ.get("PRIMER_TEST_SEED", time.time_ns()))
    n = rng.randint(2, TEXTBOOKS + EXERCISES - 4)
    server.faults = FaultPlan(rate_limit=0.1, server_error=0.1, malformed=0.1, retry_after=0.01, seed=n)
    ov = overrides(server, tmp_path / "store", **{"synth.textbooks": TEXTBOOKS, "synth.exercises": EXERCISES,
                                                  "synth.verify": False, "teacher.concurrency": 4,
                                                  "teacher.ledger_commit_every": 1000,
                                                  "teacher.ledger_commit_interval_s": 60.0})
    cfg = load_config("tiny", ov)
    server.hold_after(n)
    child = _spawn(ov)
    assert server.wait_for(lambda s: s.held >= 1 and s.in_flight == s.held, timeout=120), child.poll()
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    server.release()
    first = server.stats.successful
    assert not list((tmp_path / "store").glob("synthesize/*/manifest.json"))  # nothing looks complete

    rerun = _spawn(ov)
    out, _ = rerun.communicate(timeout=240)
    assert rerun.returncode == 0 and "RESULT done" in out, out
    st = server.stats
    assert len(st.per_key_success) == TEXTBOOKS + EXERCISES > first
    repaid = sum(1 for v in st.per_key_success.values() if v > 1)
    print(f"re-paid {repaid} of {first} delivered (concurrency 4)")
    assert max(st.per_key_success.values()) <= 2 and repaid <= 4, "more re-paid than requests in flight"
    uri = out.split("RESULT done ", 1)[1].strip()
    tb = pq.read_table(f"{uri}/textbooks.parquet").to_pylist()
    ex = pq.read_table(f"{uri}/exercises.parquet").to_pylist()
    assert len(tb) == TEXTBOOKS and len({r["id"] for r in tb}) == TEXTBOOKS        # none lost, none duplicated
    assert len(ex) == EXERCISES and len({r["id"] for r in ex}) == EXERCISES
    assert len({r["text"] for r in tb}) == TEXTBOOKS
    assert len(Ledger(open_store(cfg.store), cfg.synth.ledger)) == TEXTBOOKS + EXERCISES
