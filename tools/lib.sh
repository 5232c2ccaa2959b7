# shellcheck shell=bash
# Shared helpers for the tools/*.sh scripts: the cache layout, progress output with timings, Go settings,
# and atomic installs (a failed build leaves nothing behind that a later run would trust).
set -euo pipefail

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
REPO_DIR="$(cd "$TOOLS_DIR/.." && pwd)"
# shellcheck source=tools/versions.env
source "$TOOLS_DIR/versions.env"

# Everything built or downloaded lives outside the checkout, so a fresh clone (CI) reuses it.
SANDBOX_INFRA_CACHE="${SANDBOX_INFRA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-infra}"
export SANDBOX_INFRA_CACHE
BIN_CACHE="$SANDBOX_INFRA_CACHE/bin"
export PULUMI_HOME="$SANDBOX_INFRA_CACHE/pulumi-home"

# Go: private module and build caches, never a toolchain download, never the network beyond the proxy.
export GOMODCACHE="$SANDBOX_INFRA_CACHE/go/mod"
export GOCACHE="$SANDBOX_INFRA_CACHE/go/build"
export GOTOOLCHAIN=local
export GOFLAGS="-trimpath"
export CGO_ENABLED=0

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# step "what" cmd args...: runs cmd, printing what it does and how long it took.
step() {
  local what="$1"; shift
  local start=$SECONDS
  log "$what"
  "$@"
  log "$what: done in $((SECONDS - start))s"
}

# content_key FILE...: a short hash of the given files (plus the Go version), used to key cache entries
# so that changing a pin or a wrapper module rebuilds, and nothing else does.
content_key() {
  { cat "$@"; go version; } | sha256sum | cut -c1-16
}

# cached_dir NAME KEY: the cache directory for one built artifact set.
cached_dir() { printf '%s/%s-%s' "$BIN_CACHE" "$1" "$2"; }

# is_complete DIR: true when DIR was fully built (marker written last, after every file is in place).
is_complete() { [[ -f "$1/.complete" ]]; }

# build_into DIR FUNC: runs FUNC with a fresh staging directory as $1, then moves it to DIR atomically.
build_into() {
  local dest="$1" fn="$2" stage
  mkdir -p "$(dirname "$dest")"
  stage="$(mktemp -d "$dest.tmp.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$stage'" RETURN
  "$fn" "$stage"
  touch "$stage/.complete"
  rm -rf "$dest"
  mv "$stage" "$dest"
}
