#!/usr/bin/env bash
# Builds the local control plane from the Go module proxy into the cache (see tools/lib.sh):
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (tools/go/kubernetes, KUBERNETES_VERSION)
#   etcd                                                              (tools/go/etcd, ETCD_VERSION)
#   kwok, kwokctl                                                     (tools/go/kwok, KWOK_VERSION)
# Each group is cached in $SANDBOX_INFRA_CACHE/bin/<group>-<key>/, keyed on its pins, its wrapper module and
# the Go version, so a second run only checks markers. $SANDBOX_INFRA_CACHE/bin/controlplane-<key>/ links all
# binaries into one directory (what `bin-dir` prints and tools/env.sh puts on PATH).
#
# Usage: tools/controlplane.sh            build what is missing (idempotent)
#        tools/controlplane.sh bin-dir    print the directory holding the binaries (fails if not built)
# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

GO_DIR="$TOOLS_DIR/go"
KUBE_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
ALL_BINARIES=("${KUBE_BINARIES[@]}" etcd kwok kwokctl)

# pins PREFIX: the versions.env lines of one group, so an unrelated pin (Pulumi) does not change its key.
pins() { grep -E "^($1)=" "$TOOLS_DIR/versions.env"; }

kube_key() { content_key <(pins KUBERNETES_VERSION) "$GO_DIR/kubernetes/go.mod" "$GO_DIR/kubernetes/go.sum"; }
etcd_key() { content_key <(pins ETCD_VERSION) "$GO_DIR/etcd/go.mod" "$GO_DIR/etcd/go.sum"; }
kwok_key() { content_key <(pins KWOK_VERSION) "$GO_DIR/kwok/go.mod" "$GO_DIR/kwok/go.sum"; }

kube_dir() { cached_dir kubernetes "$(kube_key)"; }
etcd_dir() { cached_dir etcd "$(etcd_key)"; }
kwok_dir() { cached_dir kwok "$(kwok_key)"; }
controlplane_dir() {
  cached_dir controlplane "$(printf '%s\n' "$(kube_key)" "$(etcd_key)" "$(kwok_key)" | sha256sum | cut -c1-16)"
}

# check_pin MODULE_DIR MODULE VERSION: the wrapper's require line must match the pin in versions.env.
check_pin() {
  grep -qE "^(require)?[[:space:]]*$2 $3( |$)" "$GO_DIR/$1/go.mod" ||
    die "tools/go/$1/go.mod does not require $2 $3 (versions.env); update the wrapper (see its header)"
}

# check_staging: every staging replace must name the v0.x release of the pinned Kubernetes tag.
check_staging() {
  local want="v0.${KUBERNETES_VERSION#v1.}" bad
  bad="$(grep -E '^\s*k8s\.io/[a-z-]+ => ' "$GO_DIR/kubernetes/go.mod" | grep -v " $want\b" || true)"
  [[ -z "$bad" ]] || die "tools/go/kubernetes/go.mod: staging replaces not at $want (KUBERNETES_VERSION=$KUBERNETES_VERSION):
$bad"
}

# Version stamps that upstream's hack/lib/version.sh sets, so `kubectl version` and the API server's
# /version report the real release (kwokctl and clients read them).
kube_ldflags() {
  local v="$KUBERNETES_VERSION" major minor pkg flags="-s -w"
  major="${v#v}"; major="${major%%.*}"
  minor="${v#v*.}"; minor="${minor%%.*}"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "$flags"
}

build_kube() {
  local out="$1"
  (cd "$GO_DIR/kubernetes" && go build -ldflags "$(kube_ldflags)" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  "$out/kube-apiserver" --version >&2
}

build_etcd() {
  local out="$1"
  # The main package is the module root, so `go build` would name the binary "v3".
  (cd "$GO_DIR/etcd" && go build -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
  "$out/etcd" --version >&2
}

build_kwok() {
  local out="$1" flags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
  (cd "$GO_DIR/kwok" && go build -ldflags "$flags" -o "$out/" \
    sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl)
  "$out/kwokctl" --version >&2
}

link_all() {
  local out="$1" b src
  for b in "${KUBE_BINARIES[@]}"; do ln -s "$(kube_dir)/$b" "$out/$b"; done
  ln -s "$(etcd_dir)/etcd" "$out/etcd"
  for b in kwok kwokctl; do ln -s "$(kwok_dir)/$b" "$out/$b"; done
  for b in "${ALL_BINARIES[@]}"; do
    src="$(readlink "$out/$b")"
    [[ -x "$src" ]] || die "missing $src"
  done
}

# ensure NAME DIR FUNC: build one group unless its cache entry is complete.
ensure() {
  local name="$1" dir="$2" fn="$3"
  if is_complete "$dir"; then
    log "$name: cached in $dir"
  else
    step "$name: building into $dir" build_into "$dir" "$fn"
  fi
}

main() {
  case "${1:-build}" in
    bin-dir)
      local dir; dir="$(controlplane_dir)"
      is_complete "$dir" || die "control plane not built yet; run: make controlplane"
      printf '%s\n' "$dir"
      ;;
    build)
      command -v go >/dev/null || die "go is not installed (need Go >= 1.26)"
      check_pin kubernetes k8s.io/kubernetes "$KUBERNETES_VERSION"
      check_staging
      check_pin etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
      check_pin kwok sigs.k8s.io/kwok "$KWOK_VERSION"
      local start=$SECONDS
      # One build at a time (make cluster-up in two shells): the second waits, then finds everything cached.
      mkdir -p "$BIN_CACHE"
      exec 9>"$BIN_CACHE/.controlplane.lock"
      flock 9
      # Smallest first: a broken proxy or pin fails in seconds, not after the 20-minute Kubernetes build.
      ensure "etcd $ETCD_VERSION" "$(etcd_dir)" build_etcd
      ensure "kwok $KWOK_VERSION" "$(kwok_dir)" build_kwok
      ensure "kubernetes $KUBERNETES_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl)" \
        "$(kube_dir)" build_kube
      local dir; dir="$(controlplane_dir)"
      is_complete "$dir" || build_into "$dir" link_all
      log "control plane binaries in $dir ($((SECONDS - start))s)"
      ;;
    *) die "usage: $0 [build|bin-dir]" ;;
  esac
}

main "$@"
