#!/usr/bin/env bash
# `make up`: validate the roster, then `pulumi up` the stack (default dev) on the local cluster with the
# policy pack, and print a short summary of what exists. Assumes `make toolchain cluster-up` ran.
# `make preview` (--preview): the same check, then only `pulumi preview --diff`, what a roster pull
# request shows its reviewers. A preview writes no state, so the engine's per-step checkpoints are
# turned off (PULUMI_SKIP_CHECKPOINTS): they cost 40 % of a preview at 100 freelancers (bench/RESULTS.md).
# Usage: tools/up.sh [--preview] [STACK]
source "$(dirname "$0")/lib.sh"
preview=false
if [[ "${1:-}" == "--preview" ]]; then preview=true; shift; fi
stack="${1:-dev}"
eval "$("$TOOLS_DIR/env.sh")"
cd "$REPO_DIR"

step "check the roster" python -m sandbox_infra check --stack "$stack" "$(python -c 'import sys,yaml; c=(yaml.safe_load(open(sys.argv[1])) or {}).get("config") or {}; print(c.get("sandbox-infra:roster","roster.yaml"))' "Pulumi.$stack.yaml")"
if ! pulumi stack select "$stack" >/dev/null 2>&1; then
  step "create stack $stack ($PULUMI_BACKEND_URL)" pulumi stack init "$stack"
fi
if $preview; then
  PULUMI_SKIP_CHECKPOINTS=true step "pulumi preview --stack $stack --policy-pack policies/serve" \
    pulumi preview --stack "$stack" --diff --policy-pack policies/serve --suppress-progress --color never
  exit 0
fi
# kubernetes/kubernetes#67761: when many objects are created at once in a namespace with a ResourceQuota,
# the API server can refuse some with 409 "Operation cannot be fulfilled on resourcequotas" (its quota
# update raced another), and pulumi-kubernetes does not retry a 409. `pulumi up` is idempotent: run it
# again, at most twice, for exactly that error (seen at 1,000 freelancers; bench/RESULTS.md).
# --continue-on-error: one tenant's failed object does not stop the others' (the command still fails),
# and a rerun then has only the few refused objects left to create.
up_with_retries() {
  local output attempt
  output="$(mktemp)"
  for attempt in 1 2 3; do
    if pulumi up --stack "$stack" --yes --refresh --skip-preview --continue-on-error --policy-pack policies/serve \
         --suppress-progress --color never 2>&1 | tee "$output"; then
      rm -f "$output"; return 0
    fi
    if (( attempt == 3 )) || ! grep -q 'Operation cannot be fulfilled on resourcequotas' "$output"; then
      rm -f "$output"; return 1
    fi
    log "pulumi up hit the ResourceQuota update race (kubernetes/kubernetes#67761): running it again ($attempt of 2)"
  done
}
step "pulumi up --stack $stack --policy-pack policies/serve" up_with_retries
log "summary of stack $stack"
pulumi stack output --stack "$stack" --json | python -c '
import json, sys
out = json.load(sys.stdin)
states = [s.rsplit(":", 1)[1] for s in out["sandboxes"]]
print(f"  platform namespace {out['"'"'platformNamespace'"'"']}, {len(out['"'"'clientNamespaces'"'"'])} client namespaces")
print(f"  {len(states)} sandboxes: " + ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))))'
kubectl get sandboxes.platform.com --all-namespaces
echo "  ready sandbox pods: $(kubectl get pods -A -l app.kubernetes.io/name=sandbox --no-headers | grep -c ' Running ')," \
  "bound volumes: $(kubectl get pvc -A -l app.kubernetes.io/part-of=sandbox-infra --no-headers | grep -c ' Bound ')"
