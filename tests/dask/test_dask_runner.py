"""Curate and pack on a real Dask cluster, selected as a deployment selects it (the environment), give the
same content hashes as the threads runner.

A `dask.distributed.LocalCluster` with 2 worker *processes* on loopback stands in for a cluster; each
pipeline runs in a fresh Python process (as a worker's flow run does) with `PRIMER_CURATE_TASK_RUNNER` /
`PRIMER_PACK_TASK_RUNNER` set, against the session's Prefect server. Pack reads curate's output through
its manifest (`dataset: documents`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="the `dask` extra (prefect-dask, dask[distributed])")

from tests.conftest import MBPP_PATH  # noqa: E402
from tests.dask.conftest import REPO  # noqa: E402

STDLIB = Path(sysconfig.get_paths()["stdlib"])

# Runs in a fresh interpreter: the flows pick their task runner from the environment at import, as a
# deployment's flow run does.
PIPELINE = textwrap.dedent("""
    import json, sys
    from flows.curate import curate
    from flows.pack import pack
    from primer.config import StoreConfig
    from primer.store import open_store

    root, corpus, mbpp = sys.argv[1:4]
    curated = curate("tiny", {"store.root": root, "curate.sources": [{"uri": corpus}], "curate.max_docs": 0,
                              "curate.mbpp_path": mbpp, "curate.quality_min": 0.0, "curate.annotate_n": 40,
                              "curate.min_per_class": 3, "curate.shard_bytes": 120_000, "curate.rf_trees": 10,
                              "curate.dedup_buckets": 3})
    shards = pack("tiny", {"store.root": root, "pack.seq_len": 64, "pack.shard_bytes": 100_000,
                           "tokenizer.vocab_size": 400,
                           "pack.sources": [{"uri": curated, "dataset": "documents", "name": "curated"},
                                            {"uri": corpus, "name": "raw", "weight": 0.5}]})
    store = open_store(StoreConfig(root=root))
    out = {stage: store.read_output(uri) for stage, uri in (("curate", curated), ("pack", shards))}
    print("RESULT " + json.dumps({s: {"ref": store.ref(o.uri), "content_hash": o.content_hash,
                                       "files": len(o.manifest["files"])} for s, o in out.items()}))
""")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Real code: two small standard-library packages (~40 files, several shards for each stage)."""
    root = tmp_path_factory.mktemp("dask-corpus")
    for pkg in ("json", "email"):
        for path in sorted((STDLIB / pkg).rglob("*.py")):
            if "test" not in path.parts:
                dest = root / pkg / path.relative_to(STDLIB / pkg)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
    return root


def run_pipeline(root: Path, corpus: Path, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", PIPELINE, str(root), str(corpus), MBPP_PATH], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def test_curate_and_pack_on_dask_equal_threads(tmp_path, corpus, api_env, cluster):
    threads = run_pipeline(tmp_path / "threads", corpus, {**api_env, "PRIMER_CURATE_TASK_RUNNER": "threads:2",
                                                          "PRIMER_PACK_TASK_RUNNER": "threads:2"})
    address = cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")
    on_dask = run_pipeline(tmp_path / "dask", corpus, {**api_env, "PRIMER_CURATE_TASK_RUNNER": f"dask:{address}",
                                                       "PRIMER_PACK_TASK_RUNNER": f"dask:{address}"})
    # the same outputs, byte for byte: same keys (refs) and content hashes
    assert on_dask == threads
    assert threads["pack"]["files"] > 2 and threads["curate"]["files"] > 2

    # and the units really ran on the cluster's workers, not in the flow's process
    with distributed.Client(address) as client:
        prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
        ran = client.run_on_scheduler(
            lambda dask_scheduler: {p: sum(tp.state_counts.values()) for p, tp in dask_scheduler.task_prefixes.items()})
    # Dask names each task by its function: pack's tokenization units and curate's mapped units
    assert {"tokenize_shard", "filter_shard", "dedup_bucket", "finalize_shard"} <= set(prefixes), prefixes
    assert ran["tokenize_shard"] >= 2 and ran["filter_shard"] >= 2
