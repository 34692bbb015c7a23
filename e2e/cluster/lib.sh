# Shared settings and helpers for the e2e cluster scripts. Sourced, never run.
# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_DIR=$E2E_DIR/cluster
TOOLS_DIR=$CLUSTER_DIR/tools

# Runtime state lives in the work tree (git-ignored) so each checkout has its own cluster;
# compiled binaries live in a cache outside it, keyed by version, so a fresh clone reuses them.
STATE=${RIFFLE_CLUSTER_STATE:-$E2E_DIR/.cluster}
CACHE=${RIFFLE_CACHE:-$HOME/.cache/riffle}
LOGS=$STATE/logs
RUN=$STATE/run
PKI=$STATE/pki
KUBECONFIG_ADMIN=$STATE/kubeconfig

# Addresses. Everything the cluster talks to is loopback or inside these ranges, which exist
# only on the bridge this cluster creates; nothing is routed to the machine's own interfaces.
NODE_NAME=riffle-node
BRIDGE=riffle0
POD_CIDR=10.244.0.0/24
NODE_IP=10.244.0.1          # bridge gateway: apiserver, kubelet and CoreDNS listen here
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
DNS_IP=$NODE_IP
CLUSTER_DOMAIN=cluster.local

# A proxy configured in the environment must never see cluster traffic: every component and
# probe inherits this.
_no_proxy="127.0.0.1,localhost,$NODE_IP,$POD_CIDR,$SERVICE_CIDR,.svc,.$CLUSTER_DOMAIN"
export NO_PROXY="${NO_PROXY:+$NO_PROXY,}$_no_proxy" no_proxy="${no_proxy:+$no_proxy,}$_no_proxy"

ETCD_CLIENT=127.0.0.1:22379  # off the default ports so a stray etcd on the machine can't collide
ETCD_PEER=127.0.0.1:22380
APISERVER_PORT=6443

PAUSE_IMAGE=riffle.local/pause:3.10
TOOLBOX_IMAGE=riffle.local/toolbox:1
STORAGE_CLASS=standard
PROVISIONER_NAME=riffle.local/hostpath

# Host paths kubelet, containerd and CNI create at fixed locations whatever they are told;
# up.sh records which existed before, down.sh removes the others.
HOST_PATHS=(/var/lib/kubelet /var/log/containers /var/log/pods /var/run/netns /run/containerd
            /var/lib/cni /etc/cni /opt/cni /opt/containerd /var/lib/containerd
            /usr/libexec/kubernetes /etc/kubernetes)

_t0=${_t0:-$(date +%s)}

# step prints a progress line prefixed with the seconds since the script started.
step() { printf '[%4ds] %s\n' "$(( $(date +%s) - _t0 ))" "$*"; }

# die prints an error (and optionally the tail of a log) to stderr and exits.
die() {
  local msg=$1 log=${2:-}
  printf '\nERROR: %s\n' "$msg" >&2
  if [[ -n $log && -f $log ]]; then
    printf -- '--- last lines of %s ---\n' "$log" >&2
    tail -n 25 "$log" >&2
    printf -- '--- end of %s ---\n' "$log" >&2
  fi
  exit 1
}

# wait_for runs a command until it succeeds or the timeout (seconds) passes.
wait_for() {
  local timeout=$1; shift
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < deadline )) || return 1
    sleep 1
  done
}

# gomod_version prints the version a tool module requires of a module path.
gomod_version() {
  local dir=$1 module=$2
  awk -v m="$module" '$1 == m && $2 ~ /^v/ {print $2; exit} $1 == "require" && $2 == m {print $3; exit}' \
    "$dir/go.mod"
}

kubectl() { "$STATE/bin/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
