# sandbox-infra: every entry point a person or CI uses. The README's two commands are `make up` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON_VENV := .venv
PY := $(PYTHON_VENV)/bin/python
STACK ?= dev
ROSTER ?= roster.yaml

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: toolchain
toolchain: ## build/install the Python venv, Pulumi CLI, language host and provider plugins (cached)
	@tools/toolchain.sh

.PHONY: controlplane
controlplane: ## build kube-apiserver, controller-manager, scheduler, kubectl, etcd, kwok (cached)
	@tools/controlplane.sh

.PHONY: cluster-up
cluster-up: controlplane ## start the local control plane (kwok nodes) and PostgreSQL; idempotent
	@tools/cluster.sh up

.PHONY: cluster-down
cluster-down: ## stop what cluster-up started
	@tools/cluster.sh down

.PHONY: env
env: ## print shell exports: eval "$$(make -s env)" to run pulumi/kubectl by hand
	@tools/env.sh

.PHONY: check
check: toolchain ## validate the roster (ROSTER=path)
	@$(PY) -m sandbox_infra check $(ROSTER)

.PHONY: up
up: toolchain cluster-up ## bring everything up and `pulumi up` the example roster on the local cluster
	@tools/up.sh $(STACK)

.PHONY: preview
preview: toolchain cluster-up ## check the roster and `pulumi preview --diff` the stack (what a roster PR shows)
	@tools/up.sh --preview $(STACK)

.PHONY: lint
lint: toolchain ## ruff + mypy --strict
	@$(PYTHON_VENV)/bin/ruff check . && $(PYTHON_VENV)/bin/ruff format --check . && $(PYTHON_VENV)/bin/mypy

.PHONY: test
test: toolchain cluster-up ## all tests: lint, unit (mocks), policy, integration (real engine, cluster, PostgreSQL)
	@tools/test.sh

.PHONY: bench
bench: toolchain cluster-up ## run the benchmarks in bench/ and regenerate bench/RESULTS.md
	@$(PY) -m bench
