# syntax=docker/dockerfile:1
# Two images from one wheel:
#   docker build --target runtime -t vidstrata:0.1.0 .          gateway and workers (`vidstrata gateway|worker`)
#   docker build --target triton  -t vidstrata-triton:0.1.0 .   Triton with vidstrata inside, for the python-backend
#                                                               tokenizer and the `vidstrata export` initContainer
# k8s/base/kustomization.yaml names the two images; push them where it says.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
# Triton 2.51, the release whose python-backend stub nvidia-pytriton 0.7.0 bundles (see the triton stage).
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3
# torch only exports ONNX here, on CPU: its CPU wheels spare both images gigabytes of CUDA libraries.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

# --- build: the vidstrata and vidstrata-client wheels, gRPC stubs included ------------------------------
FROM ${PYTHON_IMAGE} AS build
RUN pip install --no-cache-dir "grpcio-tools>=1.66"
WORKDIR /src
COPY . .
# The stubs (package vidstrata.v1, in the client) are generated, never committed: the same command as `make proto`.
RUN if [ -f gateway/proto/vidstrata/v1/search.proto ]; then \
      python -m grpc_tools.protoc -I gateway/proto --python_out=client --grpc_python_out=client --pyi_out=client \
        gateway/proto/vidstrata/v1/search.proto; \
    fi \
 && pip wheel --no-cache-dir --no-deps --wheel-dir /dist ./client .

# --- runtime: gateway and workers ---------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG TORCH_INDEX
# No .pyc writes: the pods run with a read-only root filesystem.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY --from=build /dist /dist
COPY requirements.lock /dist/
# The lock's versions as constraints (the image leaves out the dev tools it also pins; its hashes would demand one
# for the local wheels too).
RUN sed -n 's/^\([A-Za-z0-9._-]*==[^ ]*\).*/\1/p' /dist/requirements.lock > /dist/constraints.txt \
 && pip install --extra-index-url "${TORCH_INDEX}" -c /dist/constraints.txt /dist/*.whl && rm -rf /dist \
 && groupadd --gid 10001 vidstrata \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin vidstrata
USER 10001:10001
WORKDIR /tmp
CMD ["vidstrata", "--help"]

# --- triton: the official Triton image plus vidstrata -------------------------------------------------
# Also the image of the export initContainer (k8s/base/triton.yaml): `vidstrata export --target tensorrt` exports
# ONNX with the CPU build of torch, then builds the plans and checks them against ONNX Runtime without torch, with
# TensorRT's own runtime on CUDA buffers from cuda-python (the `gpu` extra: tensorrt, cuda-python).
FROM ${TRITON_IMAGE} AS triton
ARG TORCH_INDEX
# The export initContainer builds TensorRT plans with this Python package. It must be the TensorRT inside
# this Triton image (24.10 ships 10.5): Triton refuses plans from another TensorRT version.
ARG TENSORRT_VERSION=10.5.0
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# vidstrata needs Python 3.11, and this image (Ubuntu 22.04) has 3.10, with a python-backend stub built for 3.10.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3.11 python3.11-venv libpython3.11 \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/vidstrata
# The venv first on PATH: the stub's embedded Python then finds the venv's packages (numpy<2 included).
ENV PATH=/opt/vidstrata/bin:${PATH}
COPY --from=build /dist /dist
COPY requirements.lock /dist/
RUN sed -n 's/^\([A-Za-z0-9._-]*==[^ ]*\).*/\1/p' /dist/requirements.lock > /dist/constraints.txt
# The build fails here, not the pod in Init, when the plan path's packages are missing (cuda.bindings imports
# without a GPU; tensorrt is only looked up, as its libraries may want the driver the build host lacks).
RUN pip install --extra-index-url "${TORCH_INDEX}" -c /dist/constraints.txt /dist/vidstrata_client-*.whl "$(ls /dist/vidstrata-*.whl)[gpu]" "tensorrt==${TENSORRT_VERSION}" \
 && rm -rf /dist \
 && python -c "import importlib.util, cuda.bindings.runtime; assert importlib.util.find_spec('tensorrt'), 'no tensorrt'"
# Serve python-backend models with the Python 3.11 stub of this same Triton release (2.51), which
# nvidia-pytriton 0.7.0 ships. A link, not a copy: the stub finds its bundled libraries next to its real path.
RUN ln -sf /opt/vidstrata/lib/python3.11/site-packages/pytriton/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub \
      /opt/tritonserver/backends/python/triton_python_backend_stub
# triton-server (uid 1000): the image's non-root user, as k8s/base/triton.yaml runs it.
USER triton-server
