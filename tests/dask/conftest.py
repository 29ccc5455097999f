"""A real Dask cluster for the tests of this folder, and the environment of a worker of the session's Prefect
server (each stage's flow runs in a fresh process that picks its task runner from the environment)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def api_env(prefect_harness) -> dict[str, str]:
    """Environment of a worker of this session's Prefect server: the API URL and the repo on the path."""
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(REPO),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}


@pytest.fixture(scope="package")
def cluster(api_env):
    """A real Dask cluster: a scheduler and 2 worker processes on 127.0.0.1 (workers inherit api_env)."""
    saved = {k: os.environ.get(k) for k in api_env}
    os.environ.update(api_env)
    try:
        with _distributed().LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                          host="127.0.0.1", dashboard_address=None) as c:
            yield c
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _distributed():
    """dask.distributed, or skip: the tests' modules importorskip it first, so this only runs when installed."""
    return pytest.importorskip("distributed", reason="the `dask` extra (prefect-dask, dask[distributed])")
