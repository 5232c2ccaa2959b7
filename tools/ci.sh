#!/usr/bin/env bash
# The steps of the roster pull-request workflows (.github/workflows/), one subcommand each, so that every
# step runs on a laptop exactly as in CI (the Makefile's pr-*, report, deploy and drift targets call these):
#   check     the roster check, with the base revision's roster as --previous        (BASE=rev)
#   report    the change report: $OUT/report.md and $OUT/report.json                 (BASE=rev|file)
#   preview   preview of the stacks the change touches: $OUT/preview.json, .log      (BASE=rev|file)
#   comment   the pull request comment: $OUT/comment.md (report + the preview when it ran)
#   post      create or update, in place, the one comment on pull request PR         (PR=n; gh, GH_TOKEN)
#   deploy    up of the stacks changed since BASE (default: the last successful deployment, else all)
#   drift     `python -m sandbox_infra drift` of every stack, failing on any drift   (SHARD=i/n)
# Settings come from the environment: ENVIRONMENT (default dev), OUT (default out), BASE, PR, SHARD.
# Credentials too, and only from there (repository secrets or OIDC in CI), never printed: PULUMI_BACKEND_URL,
# PULUMI_CONFIG_PASSPHRASE (or a KMS secrets provider's own credentials), and KUBECONFIG (a path) or
# KUBECONFIG_DATA (a kubeconfig's contents, written to a private temporary file for this command only).
# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_DIR" || exit

ENVIRONMENT="${ENVIRONMENT:-dev}"
OUT="${OUT:-out}"
MARKER="<!-- sandbox-infra:roster-report -->"
# GitHub refuses comments over 65,536 characters; the whole report is in the run's artifacts anyway.
COMMENT_LIMIT=60000
PY="$REPO_DIR/.venv/bin/python"

# The roster file of the environment (setting sandbox-infra:roster; roster.yaml by default).
roster_path() {
  "$PY" -c 'import sys,yaml; c=(yaml.safe_load(open(sys.argv[1])) or {}).get("config") or {}; print(c.get("sandbox-infra:roster","roster.yaml"))' \
    "Pulumi.$ENVIRONMENT.yaml"
}

need() { [[ -n "${!1:-}" ]] || die "$1 is not set ($2)"; }

# Everything `pulumi` needs, from the toolchain cache; then the credentials. In CI a missing backend is an
# error: pulumi-env.sh would otherwise fall back to the local file backend and preview an empty state.
engine_env() {
  if [[ -n "${CI:-}" ]]; then need PULUMI_BACKEND_URL "a repository secret: docs/pull-requests.md"; fi
  eval "$("$TOOLS_DIR/pulumi-env.sh")"
  if [[ -n "${KUBECONFIG_DATA:-}" ]]; then
    local file
    file="$(umask 077 && mktemp "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/kubeconfig.XXXXXX")"
    # shellcheck disable=SC2064 # expand now: the file of this run
    trap "rm -f '$file'" EXIT
    printf '%s\n' "$KUBECONFIG_DATA" >"$file"
    export KUBECONFIG="$file"
    unset KUBECONFIG_DATA
  fi
  [[ -n "${KUBECONFIG:-}" ]] || die "no cluster credentials: set KUBECONFIG (a path) or KUBECONFIG_DATA (its contents)"
}

check() {
  need BASE "the base revision, e.g. BASE=origin/main"
  local roster previous
  roster="$(roster_path)"
  mkdir -p "$OUT"
  previous="$OUT/base-$(basename "$roster")"
  if git show "$BASE:./$roster" >"$previous" 2>/dev/null; then
    "$PY" -m sandbox_infra check --stack "$ENVIRONMENT" "$roster" --previous "$previous"
  else
    log "$BASE has no $roster: checking the roster alone"
    "$PY" -m sandbox_infra check --stack "$ENVIRONMENT" "$roster"
  fi
}

report() {
  need BASE "the base: a git revision or a roster file"
  mkdir -p "$OUT"
  local status=0
  "$PY" -m sandbox_infra report --env "$ENVIRONMENT" --base "$BASE" --format json --output "$OUT/report.json" || status=$?
  [[ $status -le 1 ]] || return "$status"
  "$PY" -m sandbox_infra report --env "$ENVIRONMENT" --base "$BASE" --output "$OUT/report.md" || status=$?
  return "$status"
}

preview() {
  need BASE "the base: a git revision or a roster file"
  engine_env
  mkdir -p "$OUT"
  rm -f "$OUT/preview.json"
  local status=0
  python -m sandbox_infra preview --env "$ENVIRONMENT" --base "$BASE" --json >"$OUT/preview.json.tmp" \
    2> >(tee "$OUT/preview.log" >&2) || status=$?
  wait # for tee
  # Only a summary goes where `comment` looks (a run stopped before any stack leaves no JSON behind).
  if [[ -s "$OUT/preview.json.tmp" ]]; then mv "$OUT/preview.json.tmp" "$OUT/preview.json"; else rm -f "$OUT/preview.json.tmp"; fi
  return "$status"
}

comment() {
  need BASE "the base: a git revision or a roster file"
  mkdir -p "$OUT"
  local status=0 args=(--env "$ENVIRONMENT" --base "$BASE" --output "$OUT/comment.md")
  if [[ -s "$OUT/preview.json" ]]; then args+=(--preview "$OUT/preview.json"); fi
  "$PY" -m sandbox_infra report "${args[@]}" || status=$?
  # Written whatever the verdict (1: invalid, refused, preview failed or policy violations), since it is
  # what the reviewer reads; the step still fails then. Usage errors (2) stop here.
  [[ $status -le 1 ]] || return "$status"
  if [[ ! -s "$OUT/preview.json" ]]; then
    printf '\n_No preview in this run (the roster check failed, or no cluster credentials for this pull request)._\n' \
      >>"$OUT/comment.md"
  fi
  "$PY" - "$OUT/comment.md" "$COMMENT_LIMIT" <<'PYTHON'
import sys
path, limit = sys.argv[1], int(sys.argv[2])
text = open(path, encoding="utf-8").read()
if len(text) > limit:
    cut = text.rfind("\n", 0, limit)
    note = "\n\n_Cut here: the whole report is in this run's artifacts (report.md, report.json)._\n"
    open(path, "w", encoding="utf-8").write(text[:cut] + note)
PYTHON
  log "$OUT/comment.md: $(wc -c <"$OUT/comment.md") bytes"
  return "$status"
}

post() {
  need PR "the pull request number"
  need GITHUB_REPOSITORY "owner/name of the repository"
  command -v gh >/dev/null || die "gh (the GitHub CLI) is not installed"
  local body="$OUT/comment.md" file id
  [[ -s "$body" ]] || die "$body does not exist: run make pr-comment first"
  file="$(mktemp)"
  # shellcheck disable=SC2064
  trap "rm -f '$file'" RETURN
  { printf '%s\n' "$MARKER"; cat "$body"; } >"$file"
  id="$(gh api --paginate "repos/$GITHUB_REPOSITORY/issues/$PR/comments" \
    --jq ".[] | select(.body | startswith(\"$MARKER\")) | .id" | head -n 1)"
  if [[ -n "$id" ]]; then
    gh api --method PATCH "repos/$GITHUB_REPOSITORY/issues/comments/$id" -F "body=@$file" --jq .html_url
  else
    gh api --method POST "repos/$GITHUB_REPOSITORY/issues/$PR/comments" -F "body=@$file" --jq .html_url
  fi
}

# The commit of the environment's last successful deployment (GitHub deployments, which every job with
# `environment:` records), or nothing. A run that waited in the concurrency group while newer commits
# merged, or a failed one, is then covered by the next: its changes are still between the two commits.
last_deployed() {
  [[ -n "${GITHUB_REPOSITORY:-}" && -n "${GH_TOKEN:-}" ]] && command -v gh >/dev/null || return 0
  local environment="${DEPLOY_ENVIRONMENT:-$ENVIRONMENT}" id sha state
  while read -r id sha; do
    [[ "$sha" == "${GITHUB_SHA:-}" ]] && continue
    state="$(gh api "repos/$GITHUB_REPOSITORY/deployments/$id/statuses?per_page=1" --jq '.[0].state // ""')"
    if [[ "$state" == success ]] && git cat-file -e "$sha^{commit}" 2>/dev/null; then
      echo "$sha"
      return 0
    fi
  done < <(gh api "repos/$GITHUB_REPOSITORY/deployments?environment=$environment&per_page=30" --jq '.[] | "\(.id) \(.sha)"')
}

deploy() {
  engine_env
  mkdir -p "$OUT"
  local since="${BASE:-$(last_deployed)}" scope
  if [[ -n "$since" ]]; then scope=(--base "$since"); else scope=(--all); fi
  log "up of $ENVIRONMENT: ${since:+stacks changed since $since}${since:-every stack (no earlier deployment known)}"
  python -m sandbox_infra up --env "$ENVIRONMENT" "${scope[@]}" > >(tee "$OUT/up.txt") 2> >(tee "$OUT/up.log" >&2)
}

drift() {
  engine_env
  mkdir -p "$OUT"
  local name="drift${SHARD:+-${SHARD//\//-of-}}" status=0
  python -m sandbox_infra drift --env "$ENVIRONMENT" ${SHARD:+--shard "$SHARD"} \
    > >(tee "$OUT/$name.txt") 2> >(tee "$OUT/$name.log" >&2) || status=$?
  wait
  if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
    { echo "### Drift check of $ENVIRONMENT${SHARD:+, shard $SHARD}"; echo '```'; cat "$OUT/$name.txt"; echo '```'; } \
      >>"$GITHUB_STEP_SUMMARY"
  fi
  if [[ $status -ne 0 ]]; then
    local drifted
    drifted="$(grep -oE '^(drifted|failed|skipped): [^:]+' "$OUT/$name.txt" | cut -d' ' -f2 | paste -sd, - || true)"
    die "drift check failed${drifted:+ for: $drifted}"
  fi
}

case "${1:-}" in
  check | report | preview | comment | post | deploy | drift) "$1" ;;
  *) die "usage: $0 check|report|preview|comment|post|deploy|drift (see the header)" ;;
esac
