# syntax=docker/dockerfile:1.7
# Primer CPU worker: data stages (curate/synthesize/pack) and CPU training (DeepSpeed on gloo).
#
#   docker build -f infra/docker/cpu.Dockerfile -t ghcr.io/primer/primer-cpu:0.1.0 .     # from the repo root
#
# Order matters: torch's CPU build is pinned and installed FIRST (any looser spec, asked for by another
# package, pulls the multi-GB CUDA build); DeepSpeed's CPU ops are compiled at image build (not at the first
# training step of every fresh container: cpu_adam ~80 s, shm_comm ~43 s); Primer is installed into the
# image (no bind-mount installs), and the code it runs is the copy in /opt/primer (the deployments' pull step
# uses the working directory; set PRIMER_CODE_REPO/REF to run another commit).
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
ARG DEEPSPEED_VERSION=0.19.8
ARG PRIMER_UID=10001

# A compiler for DeepSpeed's ops (now and for any op compiled just in time), git for the pull step's clone.
# Distribution packages follow the pinned base image's release (security updates included), not exact versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential git libaio-dev numactl \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    DS_ACCELERATOR=cpu \
    TORCH_EXTENSIONS_DIR=/opt/torch-extensions \
    PRIMER_TASK_RUNNER=threads

RUN python -m venv /opt/venv \
    && pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

# DeepSpeed after torch, without build isolation, so its ops compile against this torch.
RUN DS_BUILD_CPU_ADAM=1 DS_BUILD_SHM_COMM=1 \
    pip install --no-build-isolation "deepspeed==${DEEPSPEED_VERSION}" \
    && python -c "import torch, deepspeed; print('torch', torch.__version__, 'deepspeed', deepspeed.__version__)"

WORKDIR /opt/primer
# Dependencies first (cached while only code changes), then the code, installed (not editable).
COPY pyproject.toml README.md ./
COPY primer ./primer
COPY flows ./flows
COPY tasks ./tasks
COPY model ./model
RUN pip install . && python -c "import primer.config, flows.pipeline"
COPY deployments ./deployments
COPY scripts ./scripts
COPY infra ./infra

RUN groupadd --gid "${PRIMER_UID}" primer \
    && useradd --create-home --uid "${PRIMER_UID}" --gid "${PRIMER_UID}" --shell /usr/sbin/nologin primer \
    && mkdir -p /opt/torch-extensions \
    && chown -R primer:primer /opt/torch-extensions /opt/primer
USER ${PRIMER_UID}:${PRIMER_UID}

# Where deployed runs find the code and the store: the worker's environment (see docs/prefect.md).
ENV PRIMER_CODE_DIR=/opt/primer \
    PRIMER_STORE_ROOT=/home/primer/artifacts
CMD ["prefect", "worker", "start", "--pool", "primer-cpu", "--type", "process"]
