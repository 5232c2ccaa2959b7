#!/usr/bin/env bash
# The local platform the tests and `make up` run against: a real Kubernetes control plane whose nodes are
# simulated by kwok, a volume provisioner, and a private PostgreSQL server.
#
#   tools/cluster.sh up       start (or create) everything; a no-op in seconds when all is running
#   tools/cluster.sh down     stop what `up` started (by recorded process ids); keeps all data
#   tools/cluster.sh status   what runs, with process ids and endpoints
#   tools/cluster.sh delete   down, then remove the cluster and database state (a fresh `up` recreates them)
#   tools/cluster.sh crds     (re)install the third-party CRDs (part of `up`)
#
# PostgreSQL: the `sandbox` role (an administrator that creates databases and roles) and its database, and the
# dev environment's platform database with the roles a DBA would prepare (docs/database.md).
# Control plane: `kwokctl` (binary runtime) runs etcd, kube-apiserver (admission as in a real cluster: Pod
# Security, ResourceQuota, LimitRanger, ...; RBAC), kube-controller-manager, kube-scheduler and the kwok
# controller, all from the binaries tools/controlplane.sh built, with no download. kwokctl keeps one pid file
# per component. Nodes: SANDBOX_INFRA_NODES (default 3) simulated nodes, the last with nvidia.com/gpu.
# Volumes: tools/cluster/provisioner.py creates a Retain PV for each pending claim of the StorageClasses in
# tools/cluster/storageclasses.yaml. NetworkPolicy objects are accepted but not enforced (no CNI).
# CRDs: the exact upstream CRD files of the pinned Istio and prometheus-operator releases, kept unmodified
# with their sources and license in tools/cluster/crds/ (SANDBOX_INFRA_CRDS_DIR overrides), so the program's
# VirtualServices, Gateways, PrometheusRules... are validated and stored by the real API server (the Helm
# charts that install them in a real cluster cannot be fetched here).
#
# State lives in $SANDBOX_INFRA_CACHE/cluster/: kubeconfig, database-url, pids/, logs/, kwok/ (etcd data, PKI).
# PostgreSQL refuses to run as root, so as root it runs as the `postgres` user with its data under
# /var/tmp/sandbox-infra-<uid>-<hash of the cache path>/ (the postgres user cannot enter root's home);
# otherwise under the state dir.
# Settings (environment): SANDBOX_INFRA_KUBE_PORT (16443), SANDBOX_INFRA_PG_PORT (15432), SANDBOX_INFRA_NODES (3),
# SANDBOX_INFRA_PG_ROOT (PostgreSQL's directory, see above).
# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CLUSTER_NAME=sandbox-infra
STATE_DIR="$SANDBOX_INFRA_CACHE/cluster"
PID_DIR="$STATE_DIR/pids"
LOG_DIR="$STATE_DIR/logs"
KUBECONFIG_FILE="$STATE_DIR/kubeconfig"
DATABASE_URL_FILE="$STATE_DIR/database-url"
export KWOK_WORKDIR="$STATE_DIR/kwok"
KWOK_CLUSTER_DIR="$KWOK_WORKDIR/clusters/$CLUSTER_NAME"
KUBE_PORT="${SANDBOX_INFRA_KUBE_PORT:-16443}"
PG_PORT="${SANDBOX_INFRA_PG_PORT:-15432}"
NODE_COUNT="${SANDBOX_INFRA_NODES:-3}"
KWOK_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok-controller)

if [[ "$(id -u)" == 0 ]]; then
  PG_OS_USER=postgres
  # One directory per cache (the hash), so two checkouts with different caches never share a database.
  PG_ROOT="${SANDBOX_INFRA_PG_ROOT:-/var/tmp/sandbox-infra-$(id -u)-$(printf '%s' "$SANDBOX_INFRA_CACHE" | sha256sum | cut -c1-8)}"
else
  PG_OS_USER="$(id -un)"
  PG_ROOT="${SANDBOX_INFRA_PG_ROOT:-$STATE_DIR/postgres}"
fi
PG_DATA="$PG_ROOT/data"
PG_SOCKET_DIR="$PG_ROOT/run"
PG_LOG="$PG_ROOT/postgres.log"
PG_DB=sandbox
PG_USER=sandbox
PG_PASSWORD_FILE="$STATE_DIR/postgres-password"

# --- process ids -------------------------------------------------------------------------------------------

# pid_of FILE EXE_PATTERN: prints the pid recorded in FILE when that process is alive and its executable
# (or, for scripts, its command line) matches EXE_PATTERN; otherwise removes the stale file and prints nothing.
# A recycled pid never makes us skip a start or signal a stranger.
pid_of() {
  local file="$1" pattern="$2" pid exe cmd
  [[ -f "$file" ]] || return 0
  pid="$(tr -dc '0-9' <"$file")"
  if [[ -n "$pid" && -d "/proc/$pid" ]]; then
    exe="$(readlink -f "/proc/$pid/exe" 2>/dev/null || true)"
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    # shellcheck disable=SC2053 # pattern is a glob on purpose
    if [[ "$exe" == $pattern || "$cmd" == $pattern ]]; then
      printf '%s\n' "$pid"
      return 0
    fi
  fi
  warn "removing stale pid file $file (pid ${pid:-?} is not ours any more)"
  rm -f "$file"
}

# stop_pid NAME PID SIGNAL: signals one recorded process, waits up to 30s for it to exit, then kills it.
stop_pid() {
  local name="$1" pid="$2" sig="$3" i
  log "stopping $name (pid $pid)"
  kill "-$sig" "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 300; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  warn "$name (pid $pid) did not stop within 30s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

# alive PID: the process exists and is not a zombie.
alive() { [[ -d "/proc/$1" && "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]]; }

# kwok_pid COMPONENT: the live pid of one kwokctl-managed component (validated as above).
kwok_pid() {
  local bin="$KWOK_CLUSTER_DIR/bin/$1"
  [[ -e "$bin" ]] || { rm -f "$KWOK_CLUSTER_DIR/pids/$1.pid"; return 0; }
  pid_of "$KWOK_CLUSTER_DIR/pids/$1.pid" "$(readlink -f "$bin")"
}

provisioner_pid() { pid_of "$PID_DIR/provisioner.pid" "*python3* */tools/cluster/provisioner.py *"; }
postgres_pid() { pid_of "$PID_DIR/postgres.pid" "$(pg_bin)/postgres"; }

# --- ports -------------------------------------------------------------------------------------------------

# port_owner PORT: describes the process listening on PORT, e.g. ("etcd",pid=123,fd=7); empty when free.
port_owner() {
  local line users
  line="$(ss -Hltnp "sport = :$1" 2>/dev/null | head -1)"
  [[ -n "$line" ]] || return 0
  users="$(sed -n 's/.*users:((\(.*\)))/\1/p' <<<"$line")"
  printf '%s\n' "${users:-an unknown process}"
}

# require_port_free PORT WHAT FIX: dies naming the port, its user and the fix when PORT is taken.
require_port_free() {
  local owner; owner="$(port_owner "$1")"
  [[ -z "$owner" ]] || die "port $1 ($2) is already in use by: $owner
  fix: stop that process, or $3"
}

# kwok_ports: "component port" lines for every port in the kwokctl cluster configuration.
kwok_ports() {
  sed -n 's/^ *\(etcdPort\|etcdPeerPort\|kubeApiserverPort\|kwokControllerPort\|kubeControllerManagerPort\|kubeSchedulerPort\): *\([0-9][0-9]*\)$/\1 \2/p' \
    "$KWOK_CLUSTER_DIR/kwok.yaml" | awk '$2 != 0'
}

# --- control plane -----------------------------------------------------------------------------------------

kubectl() { command "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
# -v WARN: our own progress lines say what happens; kwokctl still reports problems.
# KWOK_KUBECTL_BINARY: `kwokctl kubectl` uses ours too, never a download.
kwokctl() { KWOK_KUBECTL_BINARY="$BIN_DIR/kubectl" command "$BIN_DIR/kwokctl" --name "$CLUSTER_NAME" -v WARN "$@"; }

kube_running() {
  local c
  for c in "${KWOK_COMPONENTS[@]}"; do [[ -n "$(kwok_pid "$c")" ]] || return 1; done
  [[ -f "$KUBECONFIG_FILE" ]] && kubectl --request-timeout=3s get --raw /readyz >/dev/null 2>&1
}

create_kube() {
  require_port_free "$KUBE_PORT" "kube-apiserver" "choose another with SANDBOX_INFRA_KUBE_PORT=<port> make cluster-up"
  # A crash during an earlier create can leave a cluster directory without its configuration: nothing in it
  # is usable (kwokctl writes kwok.yaml before anything else, and etcd data only after it), so start over.
  if [[ -d "$KWOK_CLUSTER_DIR" ]]; then
    warn "removing half-created cluster state in $KWOK_CLUSTER_DIR"
    rm -rf "$KWOK_CLUSTER_DIR"
  fi
  # Let kwokctl write no user kubeconfig (--kubeconfig ''); ours is written below.
  kwokctl create cluster --runtime binary --kubeconfig '' --timeout 180s \
    --kube-apiserver-port "$KUBE_PORT" --secure-port=true \
    --kube-authorization=true --kube-admission=true --disable-qps-limits \
    --node-lease-duration-seconds 40 \
    --etcd-binary "$BIN_DIR/etcd" \
    --kube-apiserver-binary "$BIN_DIR/kube-apiserver" \
    --kube-controller-manager-binary "$BIN_DIR/kube-controller-manager" \
    --kube-scheduler-binary "$BIN_DIR/kube-scheduler" \
    --kwok-controller-binary "$BIN_DIR/kwok" \
    || die "kwokctl could not create the cluster (logs: $KWOK_CLUSTER_DIR/logs/)
  fix: read the logs, then: tools/cluster.sh delete && make cluster-up"
}

# relink_binaries: points the cluster's binaries at the current build (kwokctl links them at create time, and a
# pin bump or a cleaned cache changes the build directory). Running components keep their binary until down.
relink_binaries() {
  local c src
  for c in "${KWOK_COMPONENTS[@]}"; do
    src="$BIN_DIR/$c"
    [[ "$c" == kwok-controller ]] && src="$BIN_DIR/kwok"
    if [[ -z "$(kwok_pid "$c")" && "$(readlink "$KWOK_CLUSTER_DIR/bin/$c")" != "$src" ]]; then
      ln -sfn "$src" "$KWOK_CLUSTER_DIR/bin/$c"
    fi
  done
}

start_kube() {
  local comp port owner owner_pid ours=" " c p
  relink_binaries
  # Only ports held by someone else block a start; our own running components (half-started) are fine.
  for c in "${KWOK_COMPONENTS[@]}"; do p="$(kwok_pid "$c")"; [[ -n "$p" ]] && ours+="$p "; done
  while read -r comp port; do
    owner="$(port_owner "$port")"
    owner_pid="$(grep -o 'pid=[0-9]*' <<<"$owner" | head -1 | cut -d= -f2 || true)"
    if [[ -n "$owner" && ( -z "$owner_pid" || "$ours" != *" $owner_pid "* ) ]]; then
      die "port $port ($comp of the existing cluster) is already in use by: $owner
  fix: stop that process, or recreate the cluster on new ports (loses cluster contents): tools/cluster.sh delete && make cluster-up"
    fi
  done < <(kwok_ports)
  # kube-apiserver gives up after 20s when etcd is not serving yet, and an etcd with a long history (hundreds of
  # MB of WAL after many test runs) can take longer than that to replay it. kwokctl starts only what is missing,
  # so once etcd answers its health check a second start brings up what gave up.
  local attempt missing
  for attempt in 1 2 3; do
    kwokctl start cluster --timeout 180s || die "kwokctl could not start the cluster (logs: $KWOK_CLUSTER_DIR/logs/)
  fix: read the logs, then retry make cluster-up; if etcd data is damaged: tools/cluster.sh delete && make cluster-up"
    missing="$(kube_missing)"
    [[ -n "$missing" && -n "$(kwok_pid etcd)" ]] || return 0
    ((attempt < 3)) || return 0
    warn "not running after start: $missing; waiting for etcd to serve, then starting again (attempt $((attempt + 1)) of 3)"
    wait_etcd_healthy
  done
}

# kube_missing: the kwokctl-managed components not running, space-separated.
kube_missing() {
  local c missing=()
  for c in "${KWOK_COMPONENTS[@]}"; do [[ -n "$(kwok_pid "$c")" ]] || missing+=("$c"); done
  printf '%s\n' "${missing[*]}"
}

# wait_etcd_healthy: waits up to 5 minutes for etcd's /health (it replays its WAL before it serves).
wait_etcd_healthy() {
  local port i
  port="$(kwok_ports | awk '$1 == "etcdPort" {print $2}')"
  [[ -n "$port" ]] || return 0
  for ((i = 0; i < 300; i++)); do
    curl -fsS --max-time 2 "http://127.0.0.1:$port/health" 2>/dev/null | grep -q '"health":"true"' && return 0
    [[ -n "$(kwok_pid etcd)" ]] || return 0
    sleep 1
  done
  warn "etcd did not report healthy within 5 minutes (log: $KWOK_CLUSTER_DIR/logs/etcd.log)"
}

wait_kube_ready() {
  local i
  for ((i = 0; i < 120; i++)); do
    kubectl --request-timeout=3s get --raw /readyz >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  die "kube-apiserver did not become ready within 60s (log: $KWOK_CLUSTER_DIR/logs/kube-apiserver.log)
  fix: read the log; tools/cluster.sh down && make cluster-up, or start over: tools/cluster.sh delete && make cluster-up"
}

write_kubeconfig() {
  local tmp="$KUBECONFIG_FILE.tmp"
  # Self-contained (certificates inlined), so it can be copied or handed to Pulumi as is.
  command "$BIN_DIR/kubectl" --kubeconfig "$KWOK_CLUSTER_DIR/kubeconfig.yaml" config view --raw --flatten >"$tmp"
  chmod 600 "$tmp"
  mv "$tmp" "$KUBECONFIG_FILE"
}

# node_manifest INDEX GPU: one simulated node. Large allocatable so ~1000 sandboxes fit (the scale bench).
node_manifest() {
  local i="$1" gpu="$2" name="kwok-node-$1" gpu_line="" gpu_label=""
  if [[ "$gpu" == 1 ]]; then
    name="kwok-gpu-node-$i"
    gpu_line='nvidia.com/gpu: "8"'
    gpu_label='nvidia.com/gpu.present: "true"'
  fi
  cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: $name
    node-role.kubernetes.io/worker: ""
    topology.kubernetes.io/zone: local-$((i % 3))
    $gpu_label
spec:
  podCIDR: 10.244.$((i * 16)).0/20
  podCIDRs: [10.244.$((i * 16)).0/20]
status:
  allocatable: {cpu: "1000", memory: 4Ti, ephemeral-storage: 100Ti, pods: "1000", $gpu_line}
  capacity: {cpu: "1000", memory: 4Ti, ephemeral-storage: 100Ti, pods: "1000", $gpu_line}
  nodeInfo: {architecture: amd64, operatingSystem: linux, kubeletVersion: fake, kubeProxyVersion: fake}
EOF
}

apply_cluster_objects() {
  local i manifest=""
  kubectl apply -f "$TOOLS_DIR/cluster/storageclasses.yaml" >/dev/null
  (( NODE_COUNT >= 1 )) || die "SANDBOX_INFRA_NODES must be at least 1"
  for ((i = 0; i < NODE_COUNT; i++)); do
    manifest+="$(node_manifest "$i" "$(( i == NODE_COUNT - 1 ))")"$'\n'
  done
  # create, not apply: a node's status is only accepted on create, and kwok owns it afterwards.
  kubectl create -f - <<<"$manifest" 2>&1 | grep -Ev ' created$|AlreadyExists' >&2 || true
  kubectl wait --for=condition=Ready node --all --timeout=60s >/dev/null ||
    die "nodes did not become Ready within 60s (log: $KWOK_CLUSTER_DIR/logs/kwok-controller.log)"
}

# ready_again: pods whose containers are ready but the pod is not. When the simulated nodes stop renewing
# their leases (the machine stalled, or the kwok controller was down), the node controller marks every pod
# on them not ready; kwok does not mark a running pod ready again, as a kubelet would. Their controllers
# recreate them when deleted; their volumes stay.
ready_again() {
  local stale
  stale="$(kubectl get pods -A -o jsonpath='{range .items[*]}{.metadata.namespace}{" "}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{" "}{.status.conditions[?(@.type=="ContainersReady")].status}{"\n"}{end}' |
    awk '$3 == "False" && $4 == "True" {print $1, $2}')"
  [[ -n "$stale" ]] || return 0
  warn "$(wc -l <<<"$stale") pod(s) left not ready by an earlier node outage: deleting them for their controllers to recreate"
  local ns name
  while read -r ns name; do kubectl delete pod -n "$ns" "$name" --wait=false >/dev/null; done <<<"$stale"
}

# reclaim_node_leases SINCE: a restarted kwok controller has a new identity and leaves the nodes alone until
# its predecessor's leases expire (40s). Deleting the leases not renewed since SINCE (the old holder's) lets it
# take the nodes over at its next try; then wait until every node has a lease renewed since SINCE.
reclaim_node_leases() {
  local since="$1" i name renewed stale fresh
  for ((i = 0; i < 120; i++)); do
    stale=() fresh=0
    while read -r name renewed; do
      if [[ -n "$renewed" && "$renewed" > "$since" ]]; then fresh=$((fresh + 1)); else stale+=("$name"); fi
    done < <(kubectl get nodes -l type=kwok -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' |
      while read -r name; do
        printf '%s %s\n' "$name" "$(kubectl get lease -n kube-node-lease "$name" --ignore-not-found \
          -o jsonpath='{.spec.renewTime}' 2>/dev/null)"
      done)
    ((${#stale[@]} == 0)) && return 0
    ((i == 0)) && kubectl delete lease -n kube-node-lease "${stale[@]}" --ignore-not-found >/dev/null
    sleep 0.5
  done
  die "the kwok controller did not take over nodes ${stale[*]} within 60s (log: $KWOK_CLUSTER_DIR/logs/kwok-controller.log)"
}

# crds_dir: the CRD directory: SANDBOX_INFRA_CRDS_DIR, else the copy kept in the repository.
crds_dir() {
  local dir="${SANDBOX_INFRA_CRDS_DIR:-$REPO_DIR/tools/cluster/crds}"
  if [[ -f "$dir/README.md" ]] && compgen -G "$dir/*/*.yaml" >/dev/null; then
    (cd "$dir" && pwd)
    return 0
  fi
  die "no CRD files (README.md and */*.yaml) in $dir
  fix: unset SANDBOX_INFRA_CRDS_DIR to use tools/cluster/crds, or point it at a directory laid out the same way"
}

# install_crds: server-side apply (the Istio file is larger than client-side apply's 256 KiB annotation), as
# its own field manager, then wait until the API server serves every one. Idempotent.
install_crds() {
  local dir files=() names=()
  dir="$(crds_dir)"
  mapfile -t files < <(find "$dir" -mindepth 2 -maxdepth 2 -name '*.yaml' | sort)
  local args=() f
  for f in "${files[@]}"; do args+=(-f "$f"); done
  kubectl apply --server-side --force-conflicts --field-manager=sandbox-infra-crds "${args[@]}" >/dev/null ||
    die "applying the CRDs of $dir failed (see the error above)"
  mapfile -t names < <(kubectl get "${args[@]}" -o name --request-timeout=30s)
  kubectl wait --for=condition=Established --timeout=60s "${names[@]}" >/dev/null ||
    die "the CRDs of $dir were not established within 60s"
  log "${#names[@]} CRDs from $dir"
}

start_provisioner() {
  [[ -n "$(provisioner_pid)" ]] && return 0
  local server
  server="$(kubectl config view -o jsonpath='{.clusters[0].cluster.server}')"
  # setsid: its own session, so it outlives the shell (and make) that started it.
  setsid python3 "$TOOLS_DIR/cluster/provisioner.py" --server "$server" \
    --ca "$KWOK_CLUSTER_DIR/pki/ca.crt" --cert "$KWOK_CLUSTER_DIR/pki/admin.crt" \
    --key "$KWOK_CLUSTER_DIR/pki/admin.key" --host-dir "$STATE_DIR/volumes" \
    </dev/null >>"$LOG_DIR/provisioner.log" 2>&1 &
  echo "$!" >"$PID_DIR/provisioner.pid"
  sleep 0.3
  [[ -n "$(provisioner_pid)" ]] || die "the volume provisioner exited at once; see $LOG_DIR/provisioner.log"
}

# --- PostgreSQL --------------------------------------------------------------------------------------------

pg_bin() {
  local d
  d="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  [[ -d "$d" ]] || d=""
  printf '%s' "${d:-/usr/lib/postgresql/missing/bin}"
}

as_pg() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u "$PG_OS_USER" -- "$@"; else "$@"; fi
}

ensure_postgres_installed() {
  [[ -x "$(pg_bin)/postgres" ]] && return 0
  [[ "$(id -u)" == 0 ]] || die "PostgreSQL server is not installed; fix: sudo apt-get install postgresql"
  # Debian would create and start its own cluster on port 5432; we run a private instance instead.
  if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
    mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
  fi
  step "installing PostgreSQL (apt-get install postgresql)" bash -c \
    'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold postgresql >/dev/null'
  [[ -x "$(pg_bin)/postgres" ]] || die "apt-get install postgresql did not install a server under /usr/lib/postgresql"
}

pg_running() { [[ -n "$(postgres_pid)" ]] && as_pg "$(pg_bin)/pg_isready" -q -h "$PG_SOCKET_DIR" -p "$PG_PORT"; }

start_postgres() {
  ensure_postgres_installed
  local bin; bin="$(pg_bin)"
  mkdir -p "$PG_ROOT"
  [[ "$(id -u)" == 0 ]] && chown "$PG_OS_USER:" "$PG_ROOT" && chmod 700 "$PG_ROOT"
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    rm -rf "$PG_DATA"
    as_pg mkdir -p "$PG_DATA" "$PG_SOCKET_DIR"
    step "initdb $PG_DATA" as_pg "$bin/initdb" -D "$PG_DATA" -U postgres --auth-local=peer \
      --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  as_pg mkdir -p "$PG_SOCKET_DIR"
  if [[ -z "$(postgres_pid)" && -f "$PG_DATA/postmaster.pid" ]]; then
    local old; old="$(head -1 "$PG_DATA/postmaster.pid" | tr -dc '0-9')"
    if [[ -n "$old" && "$(readlink -f "/proc/$old/exe" 2>/dev/null)" == "$bin/postgres" ]]; then
      # Our data directory's own server, whose pid file we lost: adopt it rather than start a second one.
      warn "adopting the PostgreSQL server already running on $PG_DATA (pid $old)"
      echo "$old" >"$PID_DIR/postgres.pid"
    else
      # Left by a crash; its pid may since belong to another process, which would block the start.
      warn "removing stale $PG_DATA/postmaster.pid (pid ${old:-?} is no PostgreSQL server)"
      rm -f "$PG_DATA/postmaster.pid"
    fi
  fi
  if [[ -z "$(postgres_pid)" ]]; then
    require_port_free "$PG_PORT" "PostgreSQL" "choose another with SANDBOX_INFRA_PG_PORT=<port> make cluster-up"
    as_pg "$bin/pg_ctl" start -w -t 60 -D "$PG_DATA" -l "$PG_LOG" \
      -o "-p $PG_PORT -k $PG_SOCKET_DIR -c listen_addresses=127.0.0.1" >/dev/null ||
      die "PostgreSQL did not start; see $PG_LOG"
    head -1 "$PG_DATA/postmaster.pid" >"$PID_DIR/postgres.pid"
  fi
  [[ -f "$PG_PASSWORD_FILE" ]] || { (umask 077; od -An -N18 -tx1 /dev/urandom | tr -d ' \n' >"$PG_PASSWORD_FILE"); }
  local password; password="$(cat "$PG_PASSWORD_FILE")"
  as_pg "$bin/psql" -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres -d postgres >/dev/null <<SQL
SELECT format('CREATE ROLE %I LOGIN', '$PG_USER') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_USER') \gexec
-- The local administrator, like a managed server's: no superuser, but it creates databases and roles
-- (each database test creates its own, with roles of its own).
ALTER ROLE $PG_USER WITH LOGIN CREATEDB CREATEROLE PASSWORD '$password';
SELECT format('CREATE DATABASE %I OWNER %I', '$PG_DB', '$PG_USER') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB') \gexec
SQL
  (umask 077; printf 'postgresql://%s:%s@127.0.0.1:%s/%s\n' "$PG_USER" "$password" "$PG_PORT" "$PG_DB" >"$DATABASE_URL_FILE")
}

# prepare_platform_database: the dev environment's database, prepared as a DBA prepares one for
# `databaseRoles: existing` (docs/database.md): the roles, the database, its schema and their privileges
# from `python -m sandbox_infra database-script --env dev`, then the dev passwords (as SCRAM verifiers; the
# passwords themselves are in Pulumi.dev.yaml, encrypted). Idempotent; run on every `up`.
prepare_platform_database() {
  local script psql=("$(pg_bin)/psql" -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres -d postgres)
  "$TOOLS_DIR/toolchain.sh" venv
  script="$(cd "$REPO_DIR" && .venv/bin/python -m sandbox_infra database-script --env dev)" ||
    die "python -m sandbox_infra database-script --env dev failed (see above)"
  as_pg "${psql[@]}" >/dev/null <<<"$script" || die "preparing the dev database roles failed (see above)"
  as_pg "${psql[@]}" >/dev/null <"$TOOLS_DIR/cluster/dev-database-passwords.sql" ||
    die "setting the dev database passwords failed (see above)"
}

stop_postgres() {
  local pid; pid="$(postgres_pid)"
  [[ -n "$pid" ]] && stop_pid postgres "$pid" INT  # SIGINT: fast shutdown, consistent on disk
  rm -f "$PID_DIR/postgres.pid"
}

# --- commands ----------------------------------------------------------------------------------------------

print_summary() {
  log "cluster $CLUSTER_NAME: $(kubectl get nodes --no-headers 2>/dev/null | wc -l) nodes, API $(kubectl config view -o jsonpath='{.clusters[0].cluster.server}')"
  printf 'KUBECONFIG=%s\n' "$KUBECONFIG_FILE"
  printf 'DATABASE_URL file: %s\n' "$DATABASE_URL_FILE"
  printf 'DATABASE_URL=%s\n' "$(sed 's#://\([^:]*\):[^@]*@#://\1:****@#' "$DATABASE_URL_FILE")"
  # shellcheck disable=SC2016 # printed literally for the user to run
  printf 'shell: eval "$(make -s env)"\n'
}

cmd_up() {
  BIN_DIR="$("$TOOLS_DIR/controlplane.sh" bin-dir)"
  mkdir -p "$PID_DIR" "$LOG_DIR" "$STATE_DIR/volumes"
  if kube_running && [[ -n "$(provisioner_pid)" ]] && pg_running && [[ -s "$DATABASE_URL_FILE" ]]; then
    prepare_platform_database
    ready_again
    log "already running"
    install_crds
    print_summary
    return 0
  fi
  local start=$SECONDS kwok_was_running="" since
  [[ -n "$(kwok_pid kwok-controller)" ]] && kwok_was_running=1
  since="$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)"  # the format of a lease's renewTime
  if kube_running; then
    log "control plane already running"
  elif [[ -f "$KWOK_CLUSTER_DIR/kwok.yaml" ]]; then
    local recorded; recorded="$(kwok_ports | awk '$1 == "kubeApiserverPort" {print $2}')"
    [[ -z "$recorded" || "$recorded" == "$KUBE_PORT" ]] ||
      warn "the cluster was created with API port $recorded; SANDBOX_INFRA_KUBE_PORT=$KUBE_PORT applies only after: tools/cluster.sh delete"
    step "starting control plane (kwokctl, binary runtime)" start_kube
  else
    step "creating control plane (kwokctl, binary runtime, port $KUBE_PORT)" create_kube
  fi
  # kwokctl starts what is missing; anything still down now (e.g. a crashed component) is an error.
  local missing; missing="$(kube_missing)"
  [[ -z "$missing" ]] || die "not running after start: $missing (logs: $KWOK_CLUSTER_DIR/logs/)
  fix: read the logs; tools/cluster.sh down && make cluster-up, or start over: tools/cluster.sh delete && make cluster-up"
  [[ -f "$KWOK_CLUSTER_DIR/kubeconfig.yaml" ]] || die "kwokctl wrote no kubeconfig; fix: tools/cluster.sh delete && make cluster-up"
  write_kubeconfig
  step "waiting for kube-apiserver" wait_kube_ready
  [[ -n "$kwok_was_running" ]] || step "handing the simulated nodes to the new kwok controller" reclaim_node_leases "$since"
  step "storage classes and $NODE_COUNT simulated nodes" apply_cluster_objects
  ready_again
  step "third-party CRDs (Istio, prometheus-operator)" install_crds
  step "volume provisioner" start_provisioner
  step "PostgreSQL on 127.0.0.1:$PG_PORT (data $PG_DATA)" start_postgres
  step "the dev environment's platform database and roles" prepare_platform_database
  log "up in $((SECONDS - start))s"
  print_summary
}

cmd_down() {
  local pid
  pid="$(provisioner_pid)"; [[ -n "$pid" ]] && stop_pid provisioner "$pid" TERM
  rm -f "$PID_DIR/provisioner.pid"
  if [[ -f "$KWOK_CLUSTER_DIR/kwok.yaml" ]]; then
    # Gracefully (SIGTERM), dependents first and etcd last; `kwokctl stop` alone would SIGKILL each one.
    # Stale pid files are dropped by kwok_pid, so kwokctl then finds nothing of a stranger's to kill.
    local i c
    BIN_DIR="$("$TOOLS_DIR/controlplane.sh" bin-dir)"
    for ((i = ${#KWOK_COMPONENTS[@]} - 1; i >= 0; i--)); do
      c="${KWOK_COMPONENTS[i]}"
      pid="$(kwok_pid "$c")"
      [[ -n "$pid" ]] && stop_pid "$c" "$pid" TERM
      rm -f "$KWOK_CLUSTER_DIR/pids/$c.pid"
      if [[ "$c" == kwok-controller && -n "$(kwok_pid kube-apiserver)" ]]; then
        # Release the nodes, so the next kwok controller (a new identity) takes them over at once.
        local nodes=()
        mapfile -t nodes < <(kubectl --request-timeout=5s get nodes -l type=kwok \
          -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' 2>/dev/null)
        ((${#nodes[@]} == 0)) ||
          kubectl --request-timeout=5s delete lease -n kube-node-lease "${nodes[@]}" --ignore-not-found >/dev/null 2>&1 || true
      fi
    done
    kwokctl stop cluster >/dev/null 2>&1 || warn "kwokctl stop cluster failed (the components are stopped)"
  fi
  stop_postgres
  log "stopped (data kept; tools/cluster.sh delete removes it)"
}

cmd_delete() {
  cmd_down
  rm -rf "$KWOK_CLUSTER_DIR" "$KUBECONFIG_FILE" "$DATABASE_URL_FILE" "$PG_PASSWORD_FILE" "$STATE_DIR/volumes"
  rm -rf "$PG_ROOT"
  log "deleted cluster and database state"
}

cmd_status() {
  local c pid rc=0
  for c in "${KWOK_COMPONENTS[@]}" provisioner postgres; do
    case "$c" in
      provisioner) pid="$(provisioner_pid 2>/dev/null)" ;;
      postgres) pid="$(postgres_pid 2>/dev/null)" ;;
      *) pid="$(kwok_pid "$c" 2>/dev/null)" ;;
    esac
    if [[ -n "$pid" ]]; then printf '%-24s running (pid %s)\n' "$c" "$pid"; else printf '%-24s stopped\n' "$c"; rc=1; fi
  done
  printf 'PostgreSQL: 127.0.0.1:%s, data %s\n' "$PG_PORT" "$PG_DATA"
  if ((rc == 0)); then
    BIN_DIR="$("$TOOLS_DIR/controlplane.sh" bin-dir)"
    kubectl --request-timeout=3s get nodes -o wide 2>&1 || rc=1
    printf 'KUBECONFIG=%s\nDATABASE_URL file: %s\n' "$KUBECONFIG_FILE" "$DATABASE_URL_FILE"
  fi
  return "$rc"
}

# One change of the local platform at a time: two runs of `up` at once (a test run and a soak, each with
# `make cluster-up`) would both start what is missing and race on the same files. flock -o: the lock is
# held by flock itself, not by the daemons `up` starts (they would hold it for their whole life).
if [[ "${1:-}" =~ ^(up|down|delete)$ && "${SANDBOX_INFRA_CLUSTER_LOCKED:-}" != 1 ]]; then
  mkdir -p "$STATE_DIR"
  flock -n "$STATE_DIR/lock" true || log "waiting for another tools/cluster.sh run to finish"
  SANDBOX_INFRA_CLUSTER_LOCKED=1 exec flock -o "$STATE_DIR/lock" "${BASH_SOURCE[0]}" "$@"
fi

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  delete) cmd_delete ;;
  crds) BIN_DIR="$("$TOOLS_DIR/controlplane.sh" bin-dir)"; install_crds ;;
  *) die "usage: $0 up|down|status|delete|crds" ;;
esac
