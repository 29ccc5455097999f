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

from primer.scoring import data_files as _mbpp_files

pytest_plugins = ["tests.support.fixtures"]  # openai_server (loopback teacher), teacher_config, local_store

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

REPO = Path(__file__).resolve().parents[1]
# MBPP is never committed. Tests that need only its format use `mbpp_format_path` (a file they make); tests
# that need the real file (fixtures mbpp_tasks / mbpp_path, or a module that imports MBPP_PATH) get it by the
# product's lookup (primer.scoring.data_files): $PRIMER_MBPP_PATH, ../shared/data/mbpp/mbpp.jsonl, the
# sha256-pinned cache -- downloaded once, at collection, when none is there. Offline with none of them the
# session stops with one message naming PRIMER_MBPP_PATH (pytest_collection_modifyitems below).
MBPP_PATH = _mbpp_files.find_mbpp_offline() or str(_mbpp_files.cached_path(_mbpp_files.MBPP_FILE))
REAL_MBPP_FIXTURES = {"mbpp_tasks", "mbpp_path"}
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


def _needs_real_mbpp(item) -> bool:
    module = getattr(item, "module", None)
    return bool(REAL_MBPP_FIXTURES & set(getattr(item, "fixturenames", ()))) or \
        getattr(module, "MBPP_PATH", None) == MBPP_PATH


def pytest_collection_modifyitems(session, config, items):
    """Fetch the real MBPP once if a selected test needs it and no copy is found; else stop with one line."""
    if "://" in MBPP_PATH or os.path.isfile(MBPP_PATH) or not any(_needs_real_mbpp(i) for i in items):
        return
    try:
        _mbpp_files.fetch_pinned(_mbpp_files.MBPP_FILE, url=os.environ.get("PRIMER_MBPP_URL", ""), timeout_s=30)
    except Exception as e:  # InputError: offline, refused hash, ...
        pytest.exit(_mbpp_files.mbpp_missing_message(str(e)), returncode=4)


@pytest.fixture(scope="session")
def mbpp_tasks():
    """The real MBPP (974 tasks)."""
    from primer.scoring import mbpp

    return mbpp.load_mbpp(MBPP_PATH)


def write_mbpp_format_file(path: Path, n: int = 974) -> Path:
    """A small file in MBPP's exact format (fields, CRLF code, setup code on some tasks, task ids 1..n), so
    the tests of formats and splits need no copy of the dataset. Every reference passes its asserts."""
    import json

    lines = []
    for i in range(1, n + 1):
        setup = "import math" if i % 50 == 0 else ""
        code = f"def add_{i}(x):\r\n    return x + {i}" if not setup else \
            f"def add_{i}(x):\r\n    return int(math.floor(x)) + {i}"
        lines.append(json.dumps({"text": f"Write a function to add {i} to a number.", "code": code, "task_id": i,
                                 "test_setup_code": setup,
                                 "test_list": [f"assert add_{i}(1) == {1 + i}", f"assert add_{i}(0) == {i}",
                                               f"assert add_{i}(-{i}) == 0"],
                                 "challenge_test_list": []}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def mbpp_format_path(tmp_path_factory) -> str:
    return str(write_mbpp_format_file(tmp_path_factory.mktemp("mbpp-format") / "mbpp.jsonl"))


@pytest.fixture(scope="session")
def mbpp_format_tasks(mbpp_format_path):
    from primer.scoring import mbpp

    return mbpp.load_mbpp(mbpp_format_path)


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
