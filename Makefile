# `make demo` and `make test` do all set-up on a fresh machine, kept between runs:
# a virtualenv with the pinned Python packages, the control-plane, Prometheus and
# Toxiproxy binaries (built from Go modules) and the Keycloak distribution (fetched with
# Maven). `make test` (and `argocd-demo`, `resilience`, `bench`, `stack`) also
# build Argo CD; `make test` and `make argocd-demo`, which run it, also install
# Debian's redis-server (its cache). `make test` and `make image` also install
# Debian's podman, runc and debootstrap, make the image's Debian base, and `make
# test` builds Helm (the chart's tests) and installs Debian's chromium and
# chromium-driver (the dashboard's browser tests). `make demo` needs none of these.
# On a fresh machine `make test` makes promtool, the image base, MLflow's venv, Helm
# and Argo CD beside its first tests (prepare-core below).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The source directory `operator/` must never shadow the standard library's
# `operator`: keep the working directory off sys.path (see docs/development.md).
export PYTHONSAFEPATH := 1

.PHONY: test unit lint typecheck prepare prepare-core prepare-demo prepare-chart-and-image container-tools browser-tools image demo argocd-demo stack resilience bench constraints clean

$(STAMP): pyproject.toml constraints.txt $(shell find operator -name '*.py')
	@echo "== setting up $(VENV) with the pinned packages"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]' --config-settings editable_mode=strict
	@# Puts the project root at the end of sys.path, after the standard library,
	@# so `tests.harness` and `tests.simulator` import from anywhere.
	@echo "$(CURDIR)" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/spo-project-root.pth"
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy -p promotion_operator
	$(BIN)/mypy tests

# Argo CD's cache in the e2e tests, from Debian's package (set-up runs as root).
# Nothing happens, and nothing is printed, once it is installed; the package does
# not start a system service where policy-rc.d forbids it (containers).
REDIS_SERVER := /usr/bin/redis-server
$(REDIS_SERVER):
	@echo "== installing Debian's redis-server (Argo CD's cache in the e2e tests)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null

# The image's e2e test and `make image` run Debian's podman with runc, and make
# the base image with debootstrap (docs/development.md, "Containers on this
# machine"). Nothing happens once the three are installed.
container-tools:
	@command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null || { \
	  echo "== installing Debian's podman, runc and debootstrap (the image and its e2e test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc debootstrap >/dev/null; }

# The dashboard's browser tests drive Debian's real Chromium through its
# chromium-driver (tests/harness/browser.py). Nothing happens once both are installed.
browser-tools:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "== installing Debian's chromium and chromium-driver (the dashboard's browser tests)"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; }

# What every e2e session needs (the control plane, Prometheus, Toxiproxy, Keycloak).
# `make test` builds the rest (promtool, the image base, MLflow, Helm, Argo CD) in a
# background process beside the first tests, and runs the files that need them last
# (tests/harness/late_builds.py): on a fresh machine the builds overlap the tests.
prepare-core: $(STAMP)
	$(BIN)/python -m tests.harness prepare --core-only

# Everything the stack, the tests and the benchmarks need, Argo CD included.
prepare: $(STAMP)
	$(BIN)/python -m tests.harness prepare

# What `make demo` needs: everything but Argo CD.
prepare-demo: $(STAMP)
	$(BIN)/python -m tests.harness prepare --without-argocd

# What `prepare` makes, plus Helm (the chart's tests) and the image's Debian base
# (debootstrap runs beside the Go builds), all cached.
prepare-chart-and-image: $(STAMP) container-tools
	$(BIN)/python -m tests.harness prepare --with-chart-and-image

# The operator's image, built with podman on a base made from Debian's packages
# (BASE_IMAGE=<image> builds on that one instead, e.g. the Dockerfile's pinned base).
image: $(STAMP) container-tools
	$(BIN)/python -m tests.harness image $(if $(BASE_IMAGE),--base $(BASE_IMAGE))

unit: $(STAMP)
	$(BIN)/pytest -m "not e2e"

test: lint typecheck prepare-core container-tools browser-tools $(REDIS_SERVER)
	$(BIN)/pytest

# SCREENSHOT=FILE also saves the dashboard's page of the demo's canary (needs Chromium).
demo: prepare-demo $(if $(SCREENSHOT),browser-tools)
	$(BIN)/python -m tests.harness demo $(if $(SCREENSHOT),--screenshot $(SCREENSHOT))

# A promotion committed to git, synced by a real Argo CD, its health printed as it moves.
argocd-demo: prepare $(REDIS_SERVER)
	$(BIN)/python -m tests.harness argocd-demo

# A larger batch than the tests: 200 runs, faults on, 10 operator kills, a kube-apiserver
# restart, an etcd restart and an expired watch; prints a summary.
resilience: prepare
	$(BIN)/python -m tests.harness resilience $(RESILIENCE_ARGS)

# The operator at scale next to a hand-written script: 500 runs at once, one table;
# then 2,000 at once and the memory at rest (BENCH_ARGS="--runs 100 --scale 0 --at-rest ''"
# for a smaller one; see docs/performance.md).
bench: prepare
	$(BIN)/python -m tests.harness bench $(BENCH_ARGS)

stack: prepare
	$(BIN)/python -m tests.harness up

# Re-pin every package (transitive ones too) after changing pyproject.toml.
constraints: $(STAMP)
	@{ echo "# Every package of the test environment and the image, pinned (transitive ones too)."; \
	   echo "# Regenerate after changing pyproject.toml: make constraints"; \
	   $(BIN)/python -m pip freeze --exclude-editable | grep -iv '^seldon-promotion-operator'; } > constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
