# The promotion operator's image.
#
# Stage `build` turns the project (pyproject.toml, README.md, operator/) and its
# runtime dependencies into wheels in /wheels. The final stage installs those
# wheels, and nothing else, into the virtualenv /opt/venv: it has no source tree,
# no compiler and no pip cache, and runs as a numeric non-root user.
#
#   docker build -t seldon-promotion-operator:0.1.0 .
#
# Both stages use the same base, BASE_IMAGE, pinned to a patch release and to the
# digest of its multi-architecture index, so the wheels built here match the
# Python that runs them. The end-to-end test tests/e2e/test_container.py builds
# these same steps on a base made from Debian's packages (--build-arg
# BASE_IMAGE=..., tests/harness/container_base.py), where no registry image can
# be pulled; it has the same Python minor version. RUN --mount needs
# BuildKit (the default builder of Docker 23 and later; Buildah supports it too).
# tests/unit/test_dockerfile.py lints and checks this file; the end-to-end test
# tests/e2e/test_image_entrypoint.py runs these pip commands and the entrypoint.

ARG BASE_IMAGE=python:3.11.17-slim-trixie@sha256:45037981b62b34b44602584fccbc4d884d5f7dc92c7ee86bb38a698a79fe1e51

FROM ${BASE_IMAGE} AS build

# PYTHONSAFEPATH: `python -m pip` runs in /src, where operator/ must never be
# imported as the standard library's `operator` (see docs/development.md).
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONSAFEPATH=1

WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY operator/ operator/

# The project's wheel first, then wheels of the dependencies it pins (and theirs),
# resolved from that wheel's metadata, every version fixed by constraints.txt. setuptools, the build backend, is pinned in
# pyproject.toml's [build-system] and used only here.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && python -m pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt \
        /wheels/seldon_promotion_operator-*.whl


FROM ${BASE_IMAGE}

# Keep in step with `version` in pyproject.toml (a unit test checks it).
ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="seldon-promotion-operator" \
      org.opencontainers.image.description="Kubernetes operator that promotes Seldon Deploy deployments between environments" \
      org.opencontainers.image.version="${VERSION}"

# Created by the base image's Python, before PATH below puts the venv first.
RUN python -m venv /opt/venv

# PYTHONSAFEPATH: the working directory never shadows the standard library.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONSAFEPATH=1

# `python` is now the venv's. The wheels are bind-mounted from the build stage, so
# they never become a layer of this image; --no-index: nothing is fetched, and only
# those wheels can be installed.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --disable-pip-version-check \
        --no-index --find-links /wheels "seldon-promotion-operator==${VERSION}"

WORKDIR /app
USER 65532:65532

# 8080: the liveness endpoint (--liveness); 9090: Prometheus metrics.
EXPOSE 8080 9090

ENTRYPOINT ["promotion-operator"]
CMD ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz", "--metrics-port=9090", \
     "--log-format=json"]
