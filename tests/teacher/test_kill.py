"""SIGKILL the process generating through the Teacher; the re-run loses nothing and re-pays nothing."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from primer.config import StoreConfig
from primer.store import open_store
from primer.teacher import Ledger
from tests.support.fixtures import TEST_KEY, TEST_KEY_ENV
from tests.support.openai_server import FaultPlan

ROOT = Path(__file__).resolve().parents[2]
CHILD = [sys.executable, "-m", "tests.teacher._child"]
N = 60


# Folding into ledger parts is batched far beyond the run (1000 answers / 60 s): only the per-answer journal
# can keep the answers of a killed run, and the tests never wait for the ledger before killing.
COMMIT_EVERY, COMMIT_INTERVAL = 1000, 60.0


def _spawn(url, root, concurrency=8, commit_every=COMMIT_EVERY):
    env = {**os.environ, TEST_KEY_ENV: TEST_KEY, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([*CHILD, url, root, str(N), str(concurrency), str(commit_every), str(COMMIT_INTERVAL)],
                            cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _ledger_lines(root):
    parts = Path(root, "ledgers", "kill", "parts")
    keys = Counter()
    for p in parts.glob("*.jsonl"):
        for line in p.read_text().splitlines():
            keys[json.loads(line)["key"]] += 1
    return keys


def _varied(req):
    i = int(req["messages"][-1]["content"].split()[-1].rstrip("."))
    return f"Sample {i}: " + "word " * (i % 7 + 1)


@pytest.mark.slow
def test_sigkill_at_a_random_point_exactly_one_success_per_key(openai_server, tmp_path):
    """Deterministic: the server holds answers after a random number n of deliveries; the child is SIGKILLed
    as soon as every request not held has finished, without waiting for the ledger. Only requests in flight
    at the kill (at most `concurrency`) may be paid again."""
    root = str(tmp_path / "store")
    rng = random.Random(os.environ.get("PRIMER_TEST_SEED", time.time_ns()))
    n = rng.randint(5, N - 10)
    openai_server.responder = _varied
    openai_server.faults = FaultPlan(rate_limit=0.1, server_error=0.1, malformed=0.1, retry_after=0.01, seed=n)
    openai_server.hold_after(n)
    child = _spawn(openai_server.url, root)
    st = openai_server.stats
    assert openai_server.wait_for(lambda s: s.held >= 1 and s.in_flight == s.held, timeout=30), child.poll()
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    openai_server.release()
    first = st.successful
    assert 0 < first < N

    rerun = _spawn(openai_server.url, root)
    out, _ = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, out
    assert len(st.per_key_success) == N
    repaid = sum(1 for v in st.per_key_success.values() if v > 1)
    print(f"re-paid {repaid} of {first} delivered (concurrency 8)")
    assert max(st.per_key_success.values()) <= 2 and repaid <= 8, "more re-paid than requests in flight"
    assert f"cached={first - repaid}" in out
    lines = _ledger_lines(root)
    assert len(lines) == N and set(lines.values()) == {1}     # none lost, none duplicated
    recs = Ledger(open_store(StoreConfig(root=root)), "kill").load()
    assert sorted(r["text"].split(":")[0] for r in recs.values()) == sorted(f"Sample {i}" for i in range(N))


@pytest.mark.slow
def test_sigkill_at_a_random_time_bounded_repay(openai_server, tmp_path):
    """Kill at an arbitrary instant: nothing lost or duplicated, and re-paid keys are bounded by the requests
    in flight at the kill (concurrency), however large the commit batches."""
    root = str(tmp_path / "store")
    openai_server.responder = _varied
    openai_server.delay = 0.02
    child = _spawn(openai_server.url, root, concurrency=4)
    assert openai_server.wait_for(lambda s: s.successful >= 1, timeout=30)
    time.sleep(random.uniform(0.0, 0.2))
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    rerun = _spawn(openai_server.url, root, concurrency=4)
    out, _ = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, out
    st = openai_server.stats
    assert len(st.per_key_success) == N
    repaid = sum(1 for v in st.per_key_success.values() if v > 1)
    print(f"re-paid {repaid} (concurrency 4)")
    assert max(st.per_key_success.values()) <= 2 and repaid <= 4
    lines = _ledger_lines(root)
    assert len(lines) == N and set(lines.values()) == {1}
