# sandbox-infra: every entry point a person or CI uses. The README's two commands are `make up` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON_VENV := .venv
PY := $(PYTHON_VENV)/bin/python
ENVIRONMENT ?= dev
ROSTER ?= roster.yaml
KILLS ?= 20

.PHONY: help
help: ## list the targets ([build]: needs the long Go build, cached; [cluster]: starts the local cluster)
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: venv
venv: ## the Python virtualenv only (seconds to a minute): all that check, lint and unit need
	@tools/toolchain.sh venv

.PHONY: toolchain
toolchain: ## [long build, cached] the venv, Pulumi CLI, language host and provider plugins, from Go sources
	@tools/toolchain.sh

.PHONY: controlplane
controlplane: ## [long build, cached] kube-apiserver, controller-manager, scheduler, kubectl, etcd, kwok (cached)
	@tools/controlplane.sh

.PHONY: cluster-up
cluster-up: controlplane ## [build] start the local control plane (kwok nodes) and PostgreSQL; idempotent
	@tools/cluster.sh up

.PHONY: cluster-down
cluster-down: ## stop what cluster-up started
	@tools/cluster.sh down

.PHONY: env
env: ## print shell exports: eval "$(make -s env)" to run pulumi/kubectl by hand
	@tools/env.sh

.PHONY: check
check: venv ## validate the roster (ROSTER=path)
	@$(PY) -m sandbox_infra check $(ROSTER)

.PHONY: up
up: toolchain cluster-up ## [build+cluster] bring everything up and update every stack of the example roster on the local cluster
	@tools/up.sh $(ENVIRONMENT)

.PHONY: preview
preview: toolchain cluster-up ## [build+cluster] check the roster and preview the stacks it touches (BASE=rev|file; what a roster PR shows)
	@tools/up.sh --preview $(ENVIRONMENT)

.PHONY: lint
lint: venv ## ruff + mypy --strict
	@$(PYTHON_VENV)/bin/ruff check . && $(PYTHON_VENV)/bin/ruff format --check . && $(PYTHON_VENV)/bin/mypy

.PHONY: unit
unit: venv ## unit and policy tests under mocks: no engine, no cluster
	@$(PYTHON_VENV)/bin/python -m pytest tests/unit tests/policy -q

.PHONY: test
test: toolchain cluster-up ## [build+cluster] all tests: lint, unit (mocks), policy, integration (real engine, cluster, PostgreSQL)
	@tools/test.sh

.PHONY: bench
bench: toolchain cluster-up ## [build+cluster] the single-stack scale benchmark (ARGS="--quick" ...); rewrites bench/RESULTS.md
	@$(PY) -m bench $(ARGS)

.PHONY: bench-stacks
bench-stacks: toolchain cluster-up ## [build+cluster] the split layout at scale (ARGS="--quick" ...); rewrites bench/STACKS.md
	@$(PY) -m bench.stacks $(ARGS)

.PHONY: soak-crash
soak-crash: toolchain cluster-up ## [build+cluster] kill `up` at random points KILLS times (default 20); each next up must converge (ARGS="--seed N")
	@eval "$$(tools/env.sh)" && $(PY) -m tests.integration.crash --kills $(KILLS) $(ARGS)

.PHONY: soak-load
soak-load: toolchain cluster-up ## [build+cluster] a fresh up of 1,000 freelancers, no rerun by hand (ARGS="--freelancers N")
	@$(PY) -m tests.integration.load $(ARGS)
