"""Synthesize on a real Dask cluster, selected as a deployment selects it (`PRIMER_SYNTHESIZE_TASK_RUNNER`):
the teacher request batches (and the exercise verification batches) run on the cluster's worker processes,
each answering through the shared ledger, and the output equals the threads runner's, byte for byte, with
every request sent once.

The loopback teacher runs in this test's process; the flow runs in a fresh interpreter (as a worker's flow
run does) and each mapped `answer_requests` opens its own Teacher and Ledger on the Dask worker that picked
it up. The ledger's part files are named by the writing process, which shows where the answers came from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

distributed = pytest.importorskip("distributed", reason="the `dask` extra (prefect-dask, dask[distributed])")

from tests.dask.conftest import REPO  # noqa: E402
from tests.synth.test_stage import overrides  # noqa: E402

SYNTHESIZE = textwrap.dedent("""
    import json, sys
    from flows.synthesize import synthesize
    from primer.config import StoreConfig
    from primer.store import open_store

    ov = json.loads(sys.argv[1])
    uri = synthesize("tiny", ov)
    out = open_store(StoreConfig(root=ov["store.root"])).read_output(uri, "synthesize")
    print("RESULT " + json.dumps({"content_hash": out.content_hash, "rows": {
        k: d["rows"] for k, d in out.manifest["datasets"].items()}}))
""")


def run_synthesize(ov: dict, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", SYNTHESIZE, json.dumps(ov)], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def finished(address: str, prefix: str) -> int:
    """How many tasks named `prefix` (Dask names a task by its function) the cluster has finished."""
    with distributed.Client(address) as client:
        return client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.task_prefixes[prefix]
                                       .state_counts["memory"] if prefix in dask_scheduler.task_prefixes else 0)


def part_writers(root) -> set[int]:
    """Pids of the processes that wrote the ledger's parts (`<time_ns>-<pid>-<rand>.jsonl`)."""
    return {int(p.name.split("-")[1]) for p in (root / "ledgers" / "synthesize" / "parts").glob("*.jsonl")}


def test_synthesize_on_dask_equals_threads(tmp_path, scripted_server, api_env, cluster):
    extra = {"synth.batch_requests": 4, "synth.parallel_batches": 2, "synth.variants_per_exercise": 1}
    threads = run_synthesize(overrides(scripted_server, tmp_path / "threads", **extra),
                             {**api_env, "PRIMER_SYNTHESIZE_TASK_RUNNER": "threads:2"})
    sent = scripted_server.stats.successful
    scripted_server.stats.reset()

    address = cluster.scheduler_address
    before = finished(address, "answer_requests")
    on_dask = run_synthesize(overrides(scripted_server, tmp_path / "dask", **extra),
                             {**api_env, "PRIMER_SYNTHESIZE_TASK_RUNNER": f"dask:{address}"})
    assert on_dask == threads and threads["rows"]["textbooks"] > 0 and threads["rows"]["exercises"] > 0
    # each request answered once, in as many answers as the threads run needed
    assert scripted_server.stats.successful == sent and max(scripted_server.stats.per_key.values()) == 1
    # 12 textbooks + 8 exercises in units of 4, then the variants of the verified exercises
    assert finished(address, "answer_requests") - before >= 3 + 2 + 1
    with distributed.Client(address) as client:
        workers = set(client.run(os.getpid).values())
    writers = part_writers(tmp_path / "dask")
    assert writers and writers <= workers, (writers, workers)   # the answers were received on the workers
