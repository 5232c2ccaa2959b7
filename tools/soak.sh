#!/usr/bin/env bash
# `make soak`: the long reliability runs (docs/reliability.md), which `make test` only samples. Runs every
# test marked `soak` with `pytest --soak`: the property-based tests under the `soak` hypothesis profile
# (SOAK_EXAMPLES examples per test, default 5,000, with hypothesis's statistics printed), and the cases
# that are too slow for `make test` (they read the `soak` fixture). A new reliability case joins by
# carrying the marker. Extra arguments go to pytest (e.g. tests/unit/test_input_fuzz.py, -x).
# shellcheck source=tools/lib.sh
source "$(dirname "$0")/lib.sh"
eval "$("$TOOLS_DIR/env.sh")"
cd "$REPO_DIR"
step "pytest --soak -m soak" python -m pytest --soak -m soak --hypothesis-show-statistics -p no:cacheprovider "${@:-tests}"
