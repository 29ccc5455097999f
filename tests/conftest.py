"""Shared fixtures: a real Prefect server (test harness), a real S3-protocol server (moto) on loopback,
stores on both, and a small corpus of real Python files from this machine's standard library."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from pathlib import Path

import pytest

pytest_plugins = ["tests.support.fixtures"]  # openai_server (loopback teacher), teacher_config, local_store

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

REPO = Path(__file__).resolve().parents[1]
# MBPP is never committed: tests read the copy in ../shared (CI clones the repo beside it).
MBPP_PATH = os.environ.get("PRIMER_MBPP_PATH") or str(REPO.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl")
STDLIB = Path(sysconfig.get_paths()["stdlib"])
# Real, varied code: a few small standard-library packages (~60 files, ~1.5 MB).
CORPUS_PACKAGES = ("json", "email", "html", "http", "urllib", "wsgiref", "xmlrpc", "dbm", "concurrent")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_harness():
    """A real, temporary Prefect server + SQLite database for the whole test session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3-protocol server (moto) on loopback, started and stopped by the test session."""
    port = free_port()
    exe = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto_server did not start")
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def s3_env(monkeypatch, moto_endpoint):
    """Fake credentials in the environment (as a user would set real ones) and a fresh bucket."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "primer-test-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "primer-test-secret-value-XYZ")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"primer-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return {"endpoint": moto_endpoint, "bucket": bucket}


@pytest.fixture(params=["local", "s3"])
def store_cfg(request, tmp_path):
    """A StoreConfig on a local folder and on S3 (moto): store tests run against both."""
    from primer.config import StoreConfig

    if request.param == "local":
        return StoreConfig(root=str(tmp_path / "store"))
    env = request.getfixturevalue("s3_env")
    return StoreConfig(root=f"s3://{env['bucket']}/primer", endpoint_url=env["endpoint"])


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """A folder of real Python files copied from the standard library (read-only for tests)."""
    root = tmp_path_factory.mktemp("corpus")
    for pkg in CORPUS_PACKAGES:
        for path in sorted((STDLIB / pkg).rglob("*.py")):
            if "test" in path.parts:
                continue
            dest = root / pkg / path.relative_to(STDLIB / pkg)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
    return root


@pytest.fixture(scope="session")
def tiny_tokenizer(corpus_dir, tmp_path_factory):
    """A 1024-token byte-level BPE trained on the corpus, stored in its own store."""
    from primer.config import StoreConfig, TokenizerConfig
    from primer.documents import DropCounter
    from primer.store import open_store
    from primer.config import SourceSpec
    from tasks.sources import read_documents, resolve_source
    from tasks.tokenizer import prepare_tokenizer

    store = open_store(StoreConfig(root=str(tmp_path_factory.mktemp("tokstore"))))
    src = resolve_source(SourceSpec(uri=str(corpus_dir)))
    texts = [d.text for d in read_documents(src, DropCounter())]
    tok, ref = prepare_tokenizer(store, TokenizerConfig(vocab_size=1024), lambda: texts, [src.fingerprint], 0)
    return tok, ref


@pytest.fixture(scope="session")
def sandbox():
    """A warm code sandbox (2 fork servers) shared by the scoring and benchmark-data tests."""
    from primer.sandbox import Sandbox

    sb = Sandbox(2).warm()
    yield sb
    sb.close()


@pytest.fixture(scope="session")
def mbpp_tasks():
    from primer.evals import mbpp

    return mbpp.load_mbpp(MBPP_PATH)


def flow_artifacts(flow_run_id, keys: list[str]) -> dict:
    """The newest artifact of each key created by one flow run (the test server is shared by the whole
    session, so other tests' runs publish the same keys)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys),
                                           flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])),
            sort=ArtifactSort.CREATED_DESC)
    newest: dict = {}
    for artifact in found:
        newest.setdefault(artifact.key, artifact)
    return newest
