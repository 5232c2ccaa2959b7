#!/usr/bin/env bash
# `make up`: validate the roster, then bring every stack of the environment (default dev) up through the
# orchestrator (`python -m sandbox_infra up --all --refresh`: the platform stack first, then one stack per
# client group in parallel, each with the policy pack), and print what the cluster now holds.
# `make preview` (--preview): the same check, then a preview of the stacks the change touches (BASE=<git
# revision or roster file>; every stack without it): what a roster pull request shows its reviewers.
# Assumes `make toolchain cluster-up` ran. Usage: tools/up.sh [--preview] [ENVIRONMENT]
# shellcheck source=tools/lib.sh
source "$(dirname "$0")/lib.sh"
preview=false
if [[ "${1:-}" == "--preview" ]]; then preview=true; shift; fi
environment="${1:-dev}"
eval "$("$TOOLS_DIR/env.sh")"
cd "$REPO_DIR" || exit

roster="$(python -c 'import sys,yaml; c=(yaml.safe_load(open(sys.argv[1])) or {}).get("config") or {}; print(c.get("sandbox-infra:roster","roster.yaml"))' "Pulumi.$environment.yaml")"
step "check the roster" python -m sandbox_infra check --stack "$environment" "$roster"
if $preview; then
  step "preview the stacks of $environment${BASE:+ touched since $BASE}" \
    python -m sandbox_infra preview --env "$environment" ${BASE:+--base "$BASE"}
  exit 0
fi
# --refresh: the local cluster may have been recreated since the state was written.
step "up every stack of $environment" python -m sandbox_infra up --env "$environment" --all --refresh
log "what the cluster holds"
kubectl get sandboxes.platform.com --all-namespaces
off="$(pulumi stack output --stack "$environment" releasesOff --json 2>/dev/null | tr -d '\n ' || true)"
echo "  Helm releases switched off (sandbox-infra:releases): ${off:-unknown}"
echo "  mesh routes: $(kubectl get virtualservices.networking.istio.io -A -o jsonpath='{range .items[*]}{range .spec.http[*]}x{end}{end}' | wc -c)," \
  "alert rule sets: $(kubectl get prometheusrules.monitoring.coreos.com -A --no-headers 2>/dev/null | wc -l)"
echo "  ready sandbox pods: $(kubectl get pods -A -l app.kubernetes.io/name=sandbox --no-headers | grep -c ' Running ')," \
  "bound volumes: $(kubectl get pvc -A -l app.kubernetes.io/part-of=sandbox-infra --no-headers | grep -c ' Bound ')"
