"""Evaluate on a real Dask cluster, selected as a deployment selects it (`PRIMER_EVALUATE_TASK_RUNNER`): the
sandbox batches run on the cluster's worker processes, and the records and pass@k equal the threads runner's.

The model generates in the flow's process; each mapped `execute_batch` runs its programs in the code sandbox
of the Dask worker that picked it up (forked from that worker process).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="the `dask` extra (prefect-dask, dask[distributed])")

from tests.dask.conftest import REPO  # noqa: E402

EVALUATE = textwrap.dedent("""
    import json, sys
    import pyarrow.parquet as pq
    from flows.evaluate import evaluate
    from primer.config import StoreConfig
    from primer.store import open_store

    root, release = sys.argv[1:3]
    uri = evaluate("tiny", {"store.root": root, "evaluate.benchmarks": ["humaneval"], "evaluate.limit": 4,
                            "evaluate.max_new_tokens": 8, "evaluate.workers": 1, "evaluate.exec_batch": 1,
                            "evaluate.device": "cpu"}, release=release)
    store = open_store(StoreConfig(root=root))
    rows = pq.read_table(store.to_path(uri + "/results.parquet")).to_pylist()
    summary = json.loads(store.read_bytes(uri + "/summary.json"))
    print("RESULT " + json.dumps({"ref": store.ref(uri), "rows": rows, "headline": summary.get("headline")},
                                 default=str))
""")


@pytest.fixture(scope="module")
def release(tiny_tokenizer, tmp_path_factory):
    """A store holding a tiny model's release (tests/scoring/helpers.py writes the real checkpoint layout)."""
    from primer.config import StoreConfig
    from primer.export import export_checkpoint
    from primer.store import open_store
    from tests.scoring.helpers import write_run

    tok, _ = tiny_tokenizer
    root = tmp_path_factory.mktemp("dask-eval") / "store"
    store = open_store(StoreConfig(root=str(root)))
    run = write_run(store, tok, steps=(10,), val_losses=(3.2,))
    return root, export_checkpoint(store, run["checkpoints"][0]["uri"], name="dask-eval")["uri"]


def run_evaluate(root: Path, release_uri: str, env: dict[str, str]) -> dict:
    # No MBPP: humaneval only (its data ships with the installed packages).
    proc = subprocess.run([sys.executable, "-c", EVALUATE, str(root), release_uri], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def batches_run(address: str) -> int:
    """How many sandbox batches the cluster has finished: Dask keys a task by its function's name, and counts
    each transition of its tasks (one into `memory` per finished task)."""
    with distributed.Client(address) as client:
        return client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.task_prefixes["execute_batch"]
                                       .state_counts["memory"] if "execute_batch" in dask_scheduler.task_prefixes
                                       else 0)


def test_evaluate_on_dask_equals_threads(tmp_path, release, api_env, cluster):
    root, release_uri = release
    copy = tmp_path / "store-copy"   # the same release in a second store, so neither run reuses the other
    shutil.copytree(root, copy)
    threads = run_evaluate(root, release_uri, {**api_env, "PRIMER_EVALUATE_TASK_RUNNER": "threads:2"})
    address = cluster.scheduler_address
    before = batches_run(address)
    on_dask = run_evaluate(copy, release_uri, {**api_env, "PRIMER_EVALUATE_TASK_RUNNER": f"dask:{address}"})

    def records(result):   # what was scored, not how long it took
        return sorted((r["task_id"], r["sample_index"], r["completion"], r["passed"], r["status"], r["error_kind"])
                      for r in result["rows"])

    assert len(threads["rows"]) == 4 and on_dask["ref"] == threads["ref"]
    assert records(on_dask) == records(threads) and on_dask["headline"] == threads["headline"]
    assert batches_run(address) - before == 4, "each of the 4 sandbox batches ran on a Dask worker"
