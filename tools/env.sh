#!/usr/bin/env bash
# Prints `export ...` lines for working by hand or in tests:  eval "$(make -s env)"
#   PATH        the control-plane binaries (kubectl, kwokctl, ...) and the Pulumi CLI
#   KUBECONFIG  the local cluster ($SANDBOX_INFRA_CACHE/cluster/kubeconfig), once `make cluster-up` ran
#   DATABASE_URL and PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE  the local PostgreSQL, likewise
# Prints only what exists, so it is safe to eval at any time; progress and hints go to stderr.
# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STATE_DIR="$SANDBOX_INFRA_CACHE/cluster"

# q VALUE: shell-quotes VALUE for an export line.
q() { printf '%q' "$1"; }

printf 'export SANDBOX_INFRA_CACHE=%s\n' "$(q "$SANDBOX_INFRA_CACHE")"

# ---- Pulumi (placeholder: tools/pulumi-env.sh prints PULUMI_HOME, PATH to pulumi, the backend URL, ...) ----
if [[ -f "$TOOLS_DIR/pulumi-env.sh" ]]; then
  bash "$TOOLS_DIR/pulumi-env.sh" || warn "tools/pulumi-env.sh failed (toolchain not built? make toolchain): no Pulumi settings"
fi
# ---- end Pulumi ----------------------------------------------------------------------------------------------

if bin_dir="$("$TOOLS_DIR/controlplane.sh" bin-dir 2>/dev/null)"; then
  # shellcheck disable=SC2016 # $PATH expands where the line is eval'd
  printf 'export PATH=%s:"$PATH"\n' "$(q "$bin_dir")"
else
  warn "control plane not built yet (make controlplane): kubectl is not on PATH"
fi

if [[ -f "$STATE_DIR/kubeconfig" ]]; then
  printf 'export KUBECONFIG=%s\n' "$(q "$STATE_DIR/kubeconfig")"
else
  warn "no cluster yet (make cluster-up): KUBECONFIG not set"
fi

if [[ -s "$STATE_DIR/database-url" ]]; then
  url="$(head -1 "$STATE_DIR/database-url")"
  # postgresql://USER:PASSWORD@HOST:PORT/DB, as tools/cluster.sh writes it (no characters needing decoding).
  [[ "$url" =~ ^postgresql://([^:@/]+):([^@/]+)@([^:/]+):([0-9]+)/([^?]+)$ ]] ||
    die "unexpected format in $STATE_DIR/database-url; fix: make cluster-up"
  printf 'export DATABASE_URL=%s\n' "$(q "$url")"
  printf 'export PGUSER=%s PGPASSWORD=%s PGHOST=%s PGPORT=%s PGDATABASE=%s\n' \
    "$(q "${BASH_REMATCH[1]}")" "$(q "${BASH_REMATCH[2]}")" "$(q "${BASH_REMATCH[3]}")" \
    "$(q "${BASH_REMATCH[4]}")" "$(q "${BASH_REMATCH[5]}")"
else
  warn "no database yet (make cluster-up): DATABASE_URL not set"
fi
