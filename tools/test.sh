#!/usr/bin/env bash
# `make test`: lint (ruff, mypy, the Kubernetes scanner), then every test layer (unit under mocks, policy, integration against the real
# engine, control plane and PostgreSQL). Assumes `make toolchain cluster-up` ran (the Makefile does).
# shellcheck source=tools/lib.sh
source "$(dirname "$0")/lib.sh"
eval "$("$TOOLS_DIR/env.sh")"
cd "$REPO_DIR" || exit
"$TOOLS_DIR/lint.sh"
step "pytest" python -m pytest "$@"
