# sandbox-infra: every entry point a person or CI uses. The README's two commands are `make up` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON_VENV := .venv
PY := $(PYTHON_VENV)/bin/python
ENVIRONMENT ?= dev
ROSTER ?= roster.yaml
# Where the pull-request and deployment steps write their files (the workflows upload it as artifacts).
OUT ?= out
CI_STEP = ENVIRONMENT=$(ENVIRONMENT) OUT=$(OUT) tools/ci.sh
# How many updates `make soak-crash` kills.
KILLS ?= 20

.PHONY: help
help: ## list the targets ([build]: needs the long Go build, cached; [cluster]: starts the local cluster)
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: venv
venv: ## the Python virtualenvs only (the program's, and the scanner's; a minute or two once): all that check, lint and unit need
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
lint: venv ## ruff + mypy --strict + basedpyright (Kubernetes specs); checkov over every object the example roster declares; actionlint + shellcheck on the workflows (actionlint: Go, built once in ~30 s)
	@tools/lint.sh

.PHONY: unit
unit: venv ## unit and policy tests under mocks: no engine, no cluster
	@$(PYTHON_VENV)/bin/python -m pytest tests/unit tests/policy -q

.PHONY: test
test: toolchain cluster-up ## [build+cluster] all tests: lint, unit (mocks), policy, integration (real engine, cluster, PostgreSQL)
	@tools/test.sh

.PHONY: soak
soak: venv ## the long reliability runs (hours of fuzzing at SOAK_EXAMPLES=...; docs/reliability.md); make test samples them
	@tools/soak.sh

.PHONY: soak-crash
soak-crash: toolchain cluster-up ## [build+cluster] kill `up` at random points KILLS times (default 20); each next up must converge (ARGS="--seed N")
	@eval "$$(tools/env.sh)" && $(PY) -m tests.integration.crash --kills $(KILLS) $(ARGS)

.PHONY: soak-load
soak-load: toolchain cluster-up ## [build+cluster] a fresh up of 1,000 freelancers, no rerun by hand (ARGS="--freelancers N")
	@$(PY) -m tests.integration.load $(ARGS)

.PHONY: bench
bench: toolchain cluster-up ## [build+cluster] the single-stack scale benchmark (ARGS="--quick" ...); rewrites bench/RESULTS.md
	@$(PY) -m bench $(ARGS)

.PHONY: bench-stacks
bench-stacks: toolchain cluster-up ## [build+cluster] the split layout at scale (ARGS="--quick" ...); rewrites bench/STACKS.md
	@$(PY) -m bench.stacks $(ARGS)

# ---- the roster pull-request workflows (.github/workflows/; docs/pull-requests.md): one target per step ----

.PHONY: pr-check
pr-check: venv ## the roster check with BASE's roster as --previous (BASE=origin/main)
	@$(CI_STEP) check

.PHONY: report
report: venv ## the change report against BASE=rev|file: $(OUT)/report.md and report.json; exit 1 if refused
	@$(CI_STEP) report

.PHONY: pr-preview
pr-preview: toolchain ## [build] preview of the stacks BASE..HEAD touches, with the policy pack -> $(OUT)/preview.json
	@$(CI_STEP) preview

.PHONY: pr-comment
pr-comment: venv ## the pull request comment -> $(OUT)/comment.md (the report, with the preview if it ran)
	@$(CI_STEP) comment

.PHONY: pr-comment-post
pr-comment-post: ## create or update in place the one report comment on pull request PR=n (gh, GH_TOKEN)
	@$(CI_STEP) post

.PHONY: deploy
deploy: toolchain ## [build] up of the stacks changed since BASE (default: the last deployment; else every stack)
	@$(CI_STEP) deploy

.PHONY: drift
drift: toolchain ## [build] each object of every stack (SHARD=i/n) that differs from the roster, by stack (exit 3)
	@$(CI_STEP) drift
