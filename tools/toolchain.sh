#!/usr/bin/env bash
# Builds and installs everything `pulumi preview/up` needs, from package registries only:
#   - the Python virtualenv (requirements-dev.txt), cached per requirements hash and linked as .venv, and the
#     scanner's (requirements-scan.txt, linked as .venv-scan);
#   - the Pulumi CLI and the Python language host, from the Go module proxy (wrapper modules in tools/go/);
#   - the kubernetes resource plugin, built from its provider module and installed into PULUMI_HOME;
#   - actionlint, the workflow checker of `make lint`, from the Go module proxy (tools/go/actionlint).
# Idempotent: with nothing changed a second run only checks markers and takes seconds.
# Usage: tools/toolchain.sh [bin-dir|venv|actionlint]   (bin-dir: print the directory holding `pulumi` and exit;
#        venv: only the Python virtualenv, seconds to a minute: all that check and unit tests need;
#        actionlint: only actionlint (about 30 s once), then print its path: what `make lint` adds to the venv)
# shellcheck source=tools/lib.sh
source "$(dirname "$0")/lib.sh"

pulumi_key="$(content_key "$TOOLS_DIR/versions.env" \
  "$TOOLS_DIR"/go/pulumi/go.{mod,sum} "$TOOLS_DIR"/go/pulumi-language-python/go.{mod,sum})"
PULUMI_BIN_DIR="$(cached_dir pulumi "$pulumi_key")"
if [[ "${1:-}" == "bin-dir" ]]; then echo "$PULUMI_BIN_DIR"; exit 0; fi

# --- Python virtualenv -------------------------------------------------------------------------------
ensure_venv() {
  local key dest
  key="$(cat "$REPO_DIR"/requirements.txt "$REPO_DIR"/requirements-dev.txt "$REPO_DIR"/policies/requirements.txt \
    <(python3 --version) | sha256sum | cut -c1-16)"
  dest="$SANDBOX_INFRA_CACHE/venv/$key"
  if ! is_complete "$dest"; then
    make_venv() {
      # A virtualenv is not relocatable, so it is built at its final path; the marker is written last.
      rm -rf "$dest" && python3 -m venv "$dest"
      "$dest/bin/pip" install --quiet --disable-pip-version-check -r "$REPO_DIR/requirements-dev.txt"
      touch "$dest/.complete"
    }
    step "python virtualenv ($(python3 --version), requirements-dev.txt)" make_venv
  fi
  ln -sfn "$dest" "$REPO_DIR/.venv"
  ensure_scanner_venv
}

# The Kubernetes scanner (checkov) in a virtualenv of its own: large, and none of the program's business.
ensure_scanner_venv() {
  local key dest
  key="$(cat "$REPO_DIR"/requirements-scan.txt <(python3 --version) | sha256sum | cut -c1-16)"
  dest="$SANDBOX_INFRA_CACHE/venv-scan/$key"
  if ! is_complete "$dest"; then
    make_scanner_venv() {
      rm -rf "$dest" && python3 -m venv "$dest"
      "$dest/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$REPO_DIR/requirements-scan.txt"
      touch "$dest/.complete"
    }
    step "scanner virtualenv (checkov, requirements-scan.txt)" make_scanner_venv
  fi
  ln -sfn "$dest" "$REPO_DIR/.venv-scan"
}

# --- Pulumi CLI + Python language host --------------------------------------------------------------
build_pulumi() {
  local out="$1" sdk
  (cd "$TOOLS_DIR/go/pulumi" && step "go build pulumi v$PULUMI_VERSION" \
    go build -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
    -o "$out/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
  (cd "$TOOLS_DIR/go/pulumi-language-python" && step "go build pulumi-language-python (sdk v$PULUMI_LANGUAGE_PYTHON_SDK_VERSION)" \
    go build -ldflags "-s -w" -o "$out/pulumi-language-python" \
    github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python)
  # The executor script and the dynamic-provider shim ship inside the sdk/v3 module of the CLI's version.
  sdk="$(cd "$TOOLS_DIR/go/pulumi" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)"
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$out/"
  install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$out/"
}

# --- kubernetes resource plugin ----------------------------------------------------------------------
build_kubernetes_provider() {
  local out="$1" mod="github.com/pulumi/pulumi-kubernetes/provider/v4" src work
  src="$(go mod download -json "$mod@$PULUMI_KUBERNETES_MODULE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  work="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" RETURN
  # The module cache is read-only and `go generate` writes the embedded schema, so build from a copy.
  cp -r "$src/." "$work/" && chmod -R u+w "$work"
  (
    cd "$work" || exit
    # Upstream replaces its own Go SDK with the sibling directory ../sdk, which is not part of the
    # provider module: use the released SDK module the provider's go.mod already requires instead.
    go mod edit -dropreplace=github.com/pulumi/pulumi-kubernetes/sdk/v4
    sdk_version="$(go list -m -f '{{.Version}}' github.com/pulumi/pulumi-kubernetes/sdk/v4)"
    go get "github.com/pulumi/pulumi-kubernetes/sdk/v4@$sdk_version" 2>/dev/null
    (cd cmd/pulumi-resource-kubernetes && VERSION="$PULUMI_KUBERNETES_VERSION" go generate .)
    step "go build pulumi-resource-kubernetes v$PULUMI_KUBERNETES_VERSION" \
      go build -ldflags "-s -w -X $mod/pkg/version.Version=$PULUMI_KUBERNETES_VERSION" \
      -o "$out/pulumi-resource-kubernetes" ./cmd/pulumi-resource-kubernetes
  )
}

# --- actionlint ---------------------------------------------------------------------------------------
# Its pin is the require line of its wrapper module, not a line of versions.env: every line there is part of
# the cache key of the Pulumi CLI and the kubernetes plugin, which a lint tool's bump must not rebuild.
ACTIONLINT_DIR="$(cached_dir actionlint "$(content_key "$TOOLS_DIR"/go/actionlint/go.{mod,sum})")"

build_actionlint() {
  (cd "$TOOLS_DIR/go/actionlint" && go build -ldflags "-s -w" -o "$1/actionlint" github.com/rhysd/actionlint/cmd/actionlint)
}

ensure_actionlint() {
  is_complete "$ACTIONLINT_DIR" && return 0
  command -v go >/dev/null || die "go is not installed; actionlint (make lint) is built with Go >= 1.26 (README, first lines)"
  step "actionlint -> $ACTIONLINT_DIR" build_into "$ACTIONLINT_DIR" build_actionlint
}

install_plugin() { # install_plugin NAME VERSION BINARY
  local name="$1" version="$2" binary="$3"
  if [[ -f "$PULUMI_HOME/plugins/resource-$name-v$version/pulumi-resource-$name" ]] &&
    cmp -s "$binary" "$PULUMI_HOME/plugins/resource-$name-v$version/pulumi-resource-$name"; then
    return 0
  fi
  step "pulumi plugin install resource $name $version" \
    "$PULUMI_BIN_DIR/pulumi" plugin install resource "$name" "$version" --file "$binary" --reinstall
}

main() {
  local start=$SECONDS
  if [[ "${1:-}" == "venv" ]]; then ensure_venv; return; fi
  if [[ "${1:-}" == "actionlint" ]]; then ensure_actionlint >&2; echo "$ACTIONLINT_DIR/actionlint"; return; fi
  command -v go >/dev/null || die "go is not installed; install Go >= 1.26 (README, first lines)"
  mkdir -p "$PULUMI_HOME" "$SANDBOX_INFRA_CACHE/state"
  ensure_venv
  ensure_actionlint
  is_complete "$PULUMI_BIN_DIR" || step "pulumi CLI + python language host -> $PULUMI_BIN_DIR" build_into "$PULUMI_BIN_DIR" build_pulumi

  local k8s_key k8s_dir
  k8s_key="$(content_key "$TOOLS_DIR/versions.env")"
  k8s_dir="$(cached_dir pulumi-resource-kubernetes "$k8s_key")"
  is_complete "$k8s_dir" || step "kubernetes provider plugin -> $k8s_dir" build_into "$k8s_dir" build_kubernetes_provider
  export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
  install_plugin kubernetes "$PULUMI_KUBERNETES_VERSION" "$k8s_dir/pulumi-resource-kubernetes"
  log "toolchain ready in $((SECONDS - start))s: pulumi $("$PULUMI_BIN_DIR/pulumi" version), kubernetes plugin $PULUMI_KUBERNETES_VERSION"
}

main "$@"
