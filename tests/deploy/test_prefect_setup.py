"""primer.prefect_setup: results on the artifact store, cross-run caching checked against the store,
network retries, task runner selection (Dask/Ray imported lazily with a clear error)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from primer import prefect_setup
from primer.prefect_setup import TaskRunnerError, make_task_runner, stage_task, task_runner_for
from primer.settings.store import StoreConfig

CALLS: list[str] = []
FLAKY: dict[str, int] = {"left": 0}


@stage_task
def write_output(store_cfg: StoreConfig, name: str) -> dict:
    """A stand-in stage task: writes <root>/demo/<name>/manifest.json and returns the manifest."""
    CALLS.append(name)
    out = Path(store_cfg.root) / "demo" / name
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"stage": "demo", "uri": str(out), "files": []}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return manifest


@stage_task(network=True, cache=False, retry_delay_seconds=0)
def flaky_listing(n: int) -> int:
    if FLAKY["left"] > 0:
        FLAKY["left"] -= 1
        raise ConnectionError("transient")
    return n


def _demo_flow():
    from prefect import flow

    @flow(name="primer-cache-demo")
    def demo(root: str, name: str):
        return write_output(StoreConfig(root=root), name, return_state=True)

    return demo


def test_stage_task_caches_across_runs_and_rechecks_the_store(prefect_harness, tmp_path):
    from prefect.client.orchestration import get_client

    store = tmp_path / "store"
    slug = prefect_setup.ensure_result_storage(str(store))
    try:
        assert slug == "local-file-system/primer-results"
        demo = _demo_flow()
        CALLS.clear()
        first = demo(str(store), "a")
        second = demo(str(store), "a")
        assert CALLS == ["a"], "the second run must reuse the first run's result"
        assert first.name == "Completed" and second.name == "Cached"
        assert second.result()["uri"] == str(store / "demo" / "a")
        records = list((store / prefect_setup.RESULTS_DIR).iterdir())
        assert records, "results are persisted under <store.root>/prefect-results"

        demo(str(store), "b")  # other inputs: a miss
        assert CALLS == ["a", "b"]

        shutil.rmtree(store / "demo" / "a")  # the output is gone: the cache record is stale
        third = demo(str(store), "a")
        assert CALLS == ["a", "b", "a"] and third.name == "Completed"
        assert (store / "demo" / "a" / "manifest.json").is_file()
        fourth = demo(str(store), "a")
        assert CALLS == ["a", "b", "a"] and fourth.name == "Cached"
    finally:
        with get_client(sync_client=True) as client:
            client.clear_server_default_result_storage()


def test_network_tasks_retry(prefect_harness):
    from prefect import flow

    @flow(name="primer-retry-demo")
    def retry_demo():
        return flaky_listing(7)

    FLAKY["left"] = 2
    assert retry_demo() == 7
    assert FLAKY["left"] == 0
    assert flaky_listing.retries == prefect_setup.NETWORK_RETRIES


def test_results_block_for_s3_holds_endpoint_but_no_keys(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "primer-never-stored-secret")
    block = prefect_setup.result_storage_for("s3://bucket/primer", endpoint_url="http://127.0.0.1:9000")
    assert block.basepath == "s3://bucket/primer/prefect-results"
    assert block.settings["client_kwargs"]["endpoint_url"] == "http://127.0.0.1:9000"
    assert "primer-never-stored-secret" not in json.dumps(block.model_dump(mode="json"), default=str)


@pytest.mark.parametrize("spec, name", [("threads", "ThreadPoolTaskRunner"), ("threads:3", "ThreadPoolTaskRunner"),
                                        ("processes:2", "ProcessPoolTaskRunner")])
def test_task_runner_specs(spec, name):
    assert type(make_task_runner(spec)).__name__ == name


def test_task_runner_from_environment(monkeypatch):
    monkeypatch.setenv("PRIMER_TASK_RUNNER", "threads:2")
    monkeypatch.setenv("PRIMER_PACK_TASK_RUNNER", "processes:2")
    assert type(task_runner_for("pack")).__name__ == "ProcessPoolTaskRunner"
    assert type(task_runner_for("curate")).__name__ == "ThreadPoolTaskRunner"


@pytest.mark.parametrize("kind, package", [("dask", "prefect_dask"), ("ray", "prefect_ray")])
def test_cluster_runners_are_lazy_with_a_clear_error(kind, package):
    import importlib.util

    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed")
    with pytest.raises(TaskRunnerError, match=f"pip install {package.replace('_', '-')}"):
        make_task_runner(f"{kind}:tcp://scheduler:8786")


def test_dask_spec_builds_a_runner_for_that_scheduler():
    pytest.importorskip("prefect_dask", reason="the `dask` extra")
    runner = make_task_runner("dask:tcp://127.0.0.1:8786")
    assert type(runner).__name__ == "DaskTaskRunner" and runner.address == "tcp://127.0.0.1:8786"
    assert type(make_task_runner("dask")).__name__ == "DaskTaskRunner"  # no address: a local cluster


def test_bad_runner_spec_names_the_choices():
    with pytest.raises(TaskRunnerError, match="threads"):
        make_task_runner("gpu-magic")
