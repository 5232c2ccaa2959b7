#!/usr/bin/env bash
# Prints the shell exports that let a person run `pulumi` exactly as the tooling does:
#   eval "$(tools/pulumi-env.sh)"     (or: eval "$(make -s env)", which adds kubectl and the cluster)
# shellcheck source=tools/lib.sh
source "$(dirname "$0")/lib.sh"

bin_dir="$("$TOOLS_DIR/toolchain.sh" bin-dir)"
venv="$REPO_DIR/.venv"
cat <<ENV
export PULUMI_HOME="$PULUMI_HOME"
export PATH="$bin_dir:$venv/bin:\$PATH"
export VIRTUAL_ENV="$venv"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$SANDBOX_INFRA_CACHE/state}"
ENV
# The dev stack's secrets (a placeholder API key) are encrypted with a published passphrase; any real
# stack sets PULUMI_CONFIG_PASSPHRASE(_FILE) itself or uses a cloud secrets provider.
if [[ -z "${PULUMI_CONFIG_PASSPHRASE:-}" && -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]]; then
  echo 'export PULUMI_CONFIG_PASSPHRASE="sandbox-infra-dev"'
fi
