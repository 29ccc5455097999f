"""Prefect wiring for Primer: result storage on the artifact store, cached stage tasks, task runners.

Three things every stage flow shares:

* **Results on the artifact store.** `result_storage_for(store_cfg)` is a Prefect filesystem block rooted at
  `<store.root>/prefect-results` (a `LocalFileSystem` for a folder, a `RemoteFileSystem` for `s3://`, with the
  store's endpoint but *no keys*: workers take keys from their environment). `ensure_result_storage(...)`
  saves it as a block and makes it the server's default result storage, so every flow run on that server
  persists task results (and cache records) there. `scripts/stack.sh up` calls it:

      python -m primer.prefect_setup results --store-root ./artifacts [--endpoint-url URL]

* **Cached stage tasks.** `stage_task(...)` is `@task` with `cache_policy=STAGE_CACHE` (inputs + task
  source, checked against the store: a cached result whose outputs were deleted from the store is a miss)
  and retries for tasks that touch the network (`network=True`), for transient network errors only
  (`retry_transient`): an input error fails at once with its one line. Prefect's default policy includes the run id
  and never hits across runs; this one does: a re-run with the same inputs returns the finished task's
  result in a `Cached` state without running it.

* **Task runners per stage.** `task_runner_for("pack")` reads `PRIMER_PACK_TASK_RUNNER` (or
  `PRIMER_TASK_RUNNER`): `threads[:N]` (default), `processes[:N]`, `dask[:ADDRESS]`, `ray[:ADDRESS]`. Dask and
  Ray need `prefect-dask` / `prefect-ray`, imported only when asked for. A deployment picks its runner
  through `job_variables.env` (see deployments/prefect.yaml).

Secrets never pass through here: blocks hold no keys, and nothing is logged but block names.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy

log = logging.getLogger("primer")

RESULTS_DIR = "prefect-results"
DEFAULT_RESULTS_BLOCK = "primer-results"
NETWORK_RETRIES = 3
NETWORK_RETRY_DELAYS = [2, 10, 30]


# ------------------------------------------------------------------------------------ result storage


def results_uri(store_root: str) -> str:
    """`<store.root>/prefect-results`, absolute for a local folder."""
    if "://" in store_root and not store_root.startswith("file://"):
        return store_root.rstrip("/") + "/" + RESULTS_DIR
    path = store_root.split("://", 1)[1] if store_root.startswith("file://") else store_root
    return str(Path(path).expanduser().resolve() / RESULTS_DIR)


def result_storage_for(store_root: str, endpoint_url: str = "", region: str = ""):
    """An unsaved Prefect filesystem block for the results folder of this store (no credentials inside)."""
    from prefect.filesystems import LocalFileSystem, RemoteFileSystem

    uri = results_uri(store_root)
    if "://" not in uri:
        Path(uri).mkdir(parents=True, exist_ok=True)
        return LocalFileSystem(basepath=uri)
    client_kwargs: dict[str, Any] = {}
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    if endpoint:
        client_kwargs["endpoint_url"] = endpoint
    if region:
        client_kwargs["region_name"] = region
    settings: dict[str, Any] = {"use_listings_cache": False, "skip_instance_cache": True}
    if client_kwargs:
        settings["client_kwargs"] = client_kwargs
    return RemoteFileSystem(basepath=uri, settings=settings)


def ensure_result_storage(store_root: str, endpoint_url: str = "", region: str = "",
                          name: str = DEFAULT_RESULTS_BLOCK, server_default: bool = True) -> str:
    """Save the results block (overwriting one of the same name) and, by default, make it the server's
    default result storage. Returns the block slug, e.g. `local-file-system/primer-results`."""
    from prefect.client.orchestration import get_client

    block = result_storage_for(store_root, endpoint_url, region)
    block_id = block.save(name, overwrite=True, _sync=True)
    slug = f"{block.get_block_type_slug()}/{name}"
    if server_default:
        with get_client(sync_client=True) as client:
            client.update_server_default_result_storage(default_result_storage_block_id=block_id)
    return slug


# ------------------------------------------------------------------------------------ cache policy


def _uris(value: Any) -> list[tuple[str, bool]]:
    """(uri, is_output_dir) pairs a stage result points at: manifests' `uri`, refs' `.uri`, URI strings."""
    found: list[tuple[str, bool]] = []
    if isinstance(value, str):
        if value and not value.startswith("skipped"):
            found.append((value, True))
    elif isinstance(value, dict):
        if isinstance(value.get("uri"), str) and ("files" in value or "stage" in value):
            found.append((value["uri"], True))
    elif isinstance(value, (list, tuple)):
        for item in value[:64]:
            found.extend(_uris(item))
    elif isinstance(getattr(value, "uri", None), str):
        found.append((value.uri, False))
    return found


def _store_cfg_in(inputs: dict[str, Any]):
    from primer.settings.store import StoreConfig

    for v in inputs.values():
        if isinstance(v, StoreConfig):
            return v
        if isinstance(getattr(v, "store", None), StoreConfig):
            return v.store
    return None


def outputs_exist(value: Any, inputs: dict[str, Any] | None = None) -> bool:
    """True when every store location a cached result names still exists (a stage output with its
    manifest, a file). Values naming no location (counts, plain data) are always valid."""
    from primer.store import MANIFEST, filesystem_for

    store_cfg = _store_cfg_in(inputs or {})
    for uri, is_dir in _uris(value):
        if not ("://" in uri or uri.startswith("/")):
            continue  # not a location
        try:
            fs, path = filesystem_for(uri, store_cfg)
            if is_dir:
                ok = fs.exists(path.rstrip("/") + "/" + MANIFEST) or fs.isfile(path)
            else:
                ok = fs.exists(path)
        except Exception:
            return False
        if not ok:
            return False
    return True


@dataclass
class StageCache(CachePolicy):
    """INPUTS + TASK_SOURCE, and a cached result counts only while the outputs it names exist.

    Outputs are content-addressed, so the same inputs mean the same output location; if that output was
    deleted from the store (a fresh store, a cleaned prefix), the stale cache record is skipped: the key moves
    to a deterministic successor (`<key>-r<hash of stale record>`) and the task runs again.
    """

    check: Optional[Callable[[Any, dict[str, Any]], bool]] = None
    base: CachePolicy = field(default_factory=lambda: INPUTS + TASK_SOURCE)
    max_generations: int = 8

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> Optional[str]:
        key = self.base.compute_key(task_ctx=task_ctx, inputs=inputs, flow_parameters=flow_parameters, **kwargs)
        if key is None:
            return None
        store = getattr(task_ctx, "result_store", None) if task_ctx is not None else None
        if store is None:
            return key
        check = self.check or outputs_exist
        for _ in range(self.max_generations):
            try:
                if not store.exists(key):
                    return key
                record = store.read(key)
                if check(record.result, inputs):
                    return key
                stale = hashlib.sha256(repr(record.result).encode()).hexdigest()[:12]
            except Exception:  # unreadable record: run the task again under a fresh key
                stale = "unreadable"
            log.info("cache record %s points at outputs that no longer exist; running the task again", key)
            key = f"{key.split('-r', 1)[0]}-r{hashlib.sha256((key + stale).encode()).hexdigest()[:12]}"
        return key


STAGE_CACHE = StageCache()


# ------------------------------------------------------------------------------------ retries


def retry_transient(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry a failed task run only when its error is transient
    (`primer.errors.is_transient`); an input error fails at once with its one line."""
    from primer.errors import is_transient

    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - the failure being classified
        return is_transient(exc)
    return False


def stage_task(fn: Callable | None = None, *, network: bool = False, cache: bool = True,
               check: Callable[[Any, dict[str, Any]], bool] | None = None, **task_kwargs: Any):
    """`@task` for stage work: cached across runs by inputs + source (checked against the store), results
    persisted, and retried when `network=True`. Any other `@task` keyword passes through.

        @stage_task(network=True)           # lists/fingerprints remote sources: retried, not cached
        @stage_task                          # cached by inputs + source
    """
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    if network:
        task_kwargs.setdefault("retries", NETWORK_RETRIES)
        task_kwargs.setdefault("retry_delay_seconds", NETWORK_RETRY_DELAYS)
        task_kwargs.setdefault("retry_jitter_factor", 0.2)
        task_kwargs.setdefault("retry_condition_fn", retry_transient)
    if "cache_policy" not in task_kwargs and "cache_key_fn" not in task_kwargs:
        task_kwargs["cache_policy"] = (StageCache(check=check) if check else STAGE_CACHE) if cache else NO_CACHE
    if cache:
        task_kwargs.setdefault("persist_result", True)

    def wrap(f: Callable) -> Any:
        return task(f, **task_kwargs)

    return wrap(fn) if fn is not None else wrap


# ------------------------------------------------------------------------------------ task runners


class TaskRunnerError(ValueError):
    pass


def make_task_runner(spec: str):
    """`threads[:N]`, `processes[:N]`, `dask[:ADDRESS]` (prefect-dask), `ray[:ADDRESS]` (prefect-ray)."""
    kind, _, arg = (spec or "threads").strip().partition(":")
    kind = kind.lower()
    if kind in ("threads", "thread"):
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=int(arg) if arg else None)
    if kind in ("processes", "process"):
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=int(arg) if arg else None)
    if kind == "dask":
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise TaskRunnerError("task runner 'dask' needs the prefect-dask package: pip install prefect-dask "
                                  "(and dask[distributed] on every worker)") from None
        return DaskTaskRunner(address=arg) if arg else DaskTaskRunner()
    if kind == "ray":
        try:
            from prefect_ray import RayTaskRunner
        except ImportError:
            raise TaskRunnerError("task runner 'ray' needs the prefect-ray package: pip install prefect-ray "
                                  "(and ray on every worker)") from None
        return RayTaskRunner(address=arg) if arg else RayTaskRunner()
    raise TaskRunnerError(f"task runner {spec!r}: expected threads[:N], processes[:N], dask[:ADDRESS] or "
                          "ray[:ADDRESS]")


def task_runner_for(stage: str, default: str = "threads"):
    """The task runner for a stage's `@flow(task_runner=...)`: `$PRIMER_<STAGE>_TASK_RUNNER`, else
    `$PRIMER_TASK_RUNNER`, else `default`."""
    spec = (os.environ.get(f"PRIMER_{stage.upper()}_TASK_RUNNER") or os.environ.get("PRIMER_TASK_RUNNER")
            or default)
    return make_task_runner(spec)


# ------------------------------------------------------------------------------------ stack helpers


def ensure_process_pool(name: str) -> bool:
    """Create a process work pool with Prefect's default job template unless it exists. True if created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            pass
        client.create_work_pool(WorkPoolCreate(name=name, type="process",
                                               base_job_template=ProcessWorker.get_default_base_job_template()))
        return True


def deployment_names(prefect_file: str | Path) -> list[str]:
    """`flow/deployment` for every deployment in a prefect.yaml (flow name = the entrypoint's function)."""
    import yaml

    data = yaml.safe_load(Path(prefect_file).read_text()) or {}
    return [f"{d['entrypoint'].rsplit(':', 1)[1]}/{d['name']}" for d in data.get("deployments") or []]


# ------------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m primer.prefect_setup", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("results", help="save the results block for a store root and make it the server default")
    p.add_argument("--store-root", default=os.environ.get("PRIMER_STORE_ROOT", "./artifacts"))
    p.add_argument("--endpoint-url", default="")
    p.add_argument("--region", default="")
    p.add_argument("--name", default=DEFAULT_RESULTS_BLOCK)
    p.add_argument("--no-server-default", action="store_true")
    p = sub.add_parser("stack-init", help="create the work pools (process) and the results block")
    p.add_argument("--pool", action="append", default=[])
    p.add_argument("--store-root", default=os.environ.get("PRIMER_STORE_ROOT", "./artifacts"))
    p.add_argument("--endpoint-url", default="")
    p = sub.add_parser("deployment-names", help="list flow/deployment names in a prefect.yaml")
    p.add_argument("prefect_file")
    p = sub.add_parser("check-runner", help="build a task runner from a spec (threads, processes:2, dask, ray)")
    p.add_argument("spec")
    args = parser.parse_args(argv)
    if args.cmd == "results":
        slug = ensure_result_storage(args.store_root, args.endpoint_url, args.region, args.name,
                                     server_default=not args.no_server_default)
        print(slug)
        return 0
    if args.cmd == "stack-init":
        for pool in args.pool:
            print(f"work pool {pool}: {'created' if ensure_process_pool(pool) else 'exists'}")
        slug = ensure_result_storage(args.store_root, args.endpoint_url)
        print(f"results: {slug} -> {results_uri(args.store_root)} (server default)")
        return 0
    if args.cmd == "deployment-names":
        print("\n".join(deployment_names(args.prefect_file)))
        return 0
    try:
        print(type(make_task_runner(args.spec)).__name__)
    except TaskRunnerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
