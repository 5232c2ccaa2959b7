#!/usr/bin/env bash
# `make lint` (and the lint steps of `make test`): ruff, ruff format --check, mypy --strict over the Python,
# basedpyright over the program's Kubernetes specs;
# actionlint over .github/workflows, with shellcheck on every `run:` block; shellcheck over every script in tools/.
# Needs the virtualenv (shellcheck comes in it, from PyPI) and actionlint, which tools/toolchain.sh builds
# on first use (Go, about 30 s, cached; `make toolchain` builds it too).
# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_DIR" || exit
venv="$REPO_DIR/.venv/bin"
step "ruff" "$venv/ruff" check .
step "ruff format --check" "$venv/ruff" format --check .
step "mypy --strict" "$venv/mypy"
# mypy cannot see pulumi-kubernetes' *ArgsDict TypedDicts (the SDK hides them from it): basedpyright checks
# every Kubernetes spec in sandbox_infra against them (pyproject.toml; tests/unit/test_typed_specs.py).
step "basedpyright (Kubernetes specs against the SDK's types)" "$venv/basedpyright"
actionlint="$("$TOOLS_DIR/toolchain.sh" actionlint)"
step "actionlint (shellcheck on run: blocks)" "$actionlint" -shellcheck "$venv/shellcheck" -no-color
step "shellcheck tools/*.sh tools/pulumi-python" "$venv/shellcheck" -x tools/*.sh tools/pulumi-python
step "kubernetes scanner (checkov)" "$venv/python" -m tests.scanner
