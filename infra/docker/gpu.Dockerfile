# syntax=docker/dockerfile:1.7
# Primer GPU worker: train/select/evaluate on NVIDIA GPUs (DeepSpeed ZeRO, NCCL).
#
#   docker build -f infra/docker/gpu.Dockerfile -t ghcr.io/primer/primer-gpu:0.1.0 .     # from the repo root
#   # with flash-attn: a prebuilt wheel matching torch, CUDA, the C++ ABI and Python (see infra/docker/README.md)
#   docker build -f infra/docker/gpu.Dockerfile --build-arg FLASH_ATTN_WHEEL=https://.../flash_attn-...whl \
#       -t ghcr.io/primer/primer-gpu:0.1.0 .
#
# CUDA torch pinned first, then DeepSpeed with its GPU ops compiled at build (nvcc from the devel image),
# then Primer installed into the image. flash-attn is never built from source here (1,118 .cu files, an hour
# of nvcc): without FLASH_ATTN_WHEEL the image has none and the model uses PyTorch SDPA attention.
FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG DEEPSPEED_VERSION=0.19.8
# A100 (8.0), A10/RTX 30xx (8.6), L4/RTX 40xx (8.9), H100 (9.0): the ops are compiled for these.
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"
ARG FLASH_ATTN_WHEEL=""
ARG PRIMER_UID=10001

# Distribution packages follow the pinned base image's release (security updates included), not exact versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential git \
       libaio-dev numactl openssh-client pdsh \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST} \
    TORCH_EXTENSIONS_DIR=/opt/torch-extensions \
    PRIMER_TASK_RUNNER=threads

RUN python3 -m venv /opt/venv \
    && pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"

# Fused Adam and CPU Adam (ZeRO-Offload) compiled now against this torch and CUDA.
RUN DS_BUILD_FUSED_ADAM=1 DS_BUILD_CPU_ADAM=1 DS_BUILD_UTILS=1 \
    pip install --no-build-isolation "deepspeed==${DEEPSPEED_VERSION}" \
    && python -c "import torch, deepspeed; print('torch', torch.__version__, torch.version.cuda, 'deepspeed', deepspeed.__version__)"

# flash-attn only from a prebuilt wheel (never a source build); otherwise SDPA. The wheel URL pins the version.
# hadolint ignore=DL3013
RUN if [ -n "${FLASH_ATTN_WHEEL}" ]; then pip install --no-deps "${FLASH_ATTN_WHEEL}"; \
    else echo "flash-attn left out: the model uses PyTorch SDPA attention"; fi

WORKDIR /opt/primer
COPY pyproject.toml README.md ./
COPY primer ./primer
COPY flows ./flows
COPY tasks ./tasks
COPY model ./model
# Not the [gpu] extra: that would build flash-attn from source. Installed above from a wheel, or not at all.
RUN pip install . && python -c "import primer.config, flows.pipeline"
COPY deployments ./deployments
COPY scripts ./scripts
COPY infra ./infra

RUN groupadd --gid "${PRIMER_UID}" primer \
    && useradd --create-home --uid "${PRIMER_UID}" --gid "${PRIMER_UID}" --shell /usr/sbin/nologin primer \
    && mkdir -p /opt/torch-extensions \
    && chown -R primer:primer /opt/torch-extensions /opt/primer
USER ${PRIMER_UID}:${PRIMER_UID}

ENV PRIMER_CODE_DIR=/opt/primer \
    PRIMER_STORE_ROOT=/home/primer/artifacts \
    NCCL_DEBUG=WARN
CMD ["prefect", "worker", "start", "--pool", "primer-gpu", "--type", "process"]
