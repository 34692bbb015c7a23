#!/usr/bin/env bash
# Starts a one-node Kubernetes cluster from host processes: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd, kubelet, kube-proxy, CoreDNS and a
# hostPath volume provisioner. Binaries come from build.sh (cached outside the work tree).
#
# Writes e2e/.cluster/kubeconfig and e2e/.cluster/bin/kubectl. Running it again while the
# cluster is up does nothing. If any step fails, everything started so far is torn down.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

[[ $EUID -eq 0 ]] || die "up.sh must run as root (it starts kubelet and containerd, and sets up a bridge)"

# ---------------------------------------------------------------------------------------
# Process helpers

# start runs a component in the background, detached from this shell, logging to
# $LOGS/NAME.log and recording its PID for down.sh.
start() {
  local name=$1; shift
  : >"$LOGS/$name.log"
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

alive() {
  local pid
  pid=$(cat "$RUN/$1.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null
}

# await waits for a readiness probe of a started component; if the component exits or the
# probe times out, the failure names the component and shows its log.
await() {
  local name=$1 timeout=$2; shift 2
  local deadline=$(( $(date +%s) + timeout ))
  until "$@" >/dev/null 2>&1; do
    alive "$name" || die "$name exited during startup" "$LOGS/$name.log"
    (( $(date +%s) < deadline )) || die "$name not ready after ${timeout}s (probe: $*)" "$LOGS/$name.log"
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------
# Checks before anything is changed

already_running() {
  [[ -f $KUBECONFIG_ADMIN && -x $STATE/bin/kubectl ]] || return 1
  local c
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet \
           kube-proxy coredns provisioner; do
    alive "$c" || return 1
  done
  kubectl get --raw /readyz >/dev/null 2>&1
}

ensure_packages() {
  local missing=() pkg bin
  # binary:package pairs; only what is absent gets installed.
  for pair in containerd:containerd runc:runc ctr:containerd iptables:iptables \
              conntrack:conntrack nft:nftables ip:iproute2 openssl:openssl curl:curl nsenter:util-linux; do
    bin=${pair%%:*} pkg=${pair#*:}
    command -v "$bin" >/dev/null || missing+=("$pkg")
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
    missing+=(containernetworking-plugins)
  (( ${#missing[@]} )) || return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  step "installing Debian packages: ${missing[*]} (log: $LOGS/apt.log)"
  # policy-rc.d keeps the package from starting its own containerd service.
  local policy=/usr/sbin/policy-rc.d created_policy=
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; } \
    >"$LOGS/apt.log" 2>&1 || { [[ -n $created_policy ]] && rm -f "$policy"; die "apt-get install ${missing[*]} failed" "$LOGS/apt.log"; }
  [[ -n $created_policy ]] && rm -f "$policy"
  return 0
}

check_kernel() {
  grep -qw overlay /proc/filesystems || die "kernel lacks overlayfs (containerd's overlayfs snapshotter needs it)"
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] ||
    die "kernel lacks br_netfilter (/proc/sys/net/bridge missing): kube-proxy cannot see bridged pod traffic"
  [[ -e /dev/kmsg ]] || die "/dev/kmsg missing: kubelet's OOM watcher needs it"
  local c
  for c in cpu cpuacct cpuset memory pids devices freezer; do
    [[ -d /sys/fs/cgroup/$c ]] || die "cgroup v1 controller '$c' is not mounted at /sys/fs/cgroup/$c"
  done
  ip link add riffle-probe0 type veth peer name riffle-probe1 2>/dev/null ||
    die "cannot create veth pairs (kernel lacks CONFIG_VETH?): pods cannot be networked"
  ip link del riffle-probe0
  iptables -w -t nat -L >/dev/null 2>&1 || die "iptables nat table unusable: kube-proxy needs it ($(iptables -t nat -L 2>&1 | tail -1))"
}

check_ports() {
  # Address:port pairs this cluster binds; a clash fails here rather than as a crash loop.
  local busy=() p
  for p in 127.0.0.1:22379 127.0.0.1:22380 $NODE_IP:$APISERVER_PORT 127.0.0.1:10257 127.0.0.1:10259 \
           $NODE_IP:10250 127.0.0.1:10248 127.0.0.1:10249 127.0.0.1:10256 $NODE_IP:53 \
           127.0.0.1:18080 127.0.0.1:18181; do
    local port=${p##*:}
    if ss -Hltnu "( sport = :$port )" | grep -qE "(\*|0\.0\.0\.0|\[::\]|${p%:*}):$port\b"; then
      busy+=("$p ($(ss -Hltnup "( sport = :$port )" | grep -o 'users:.*' | head -1))")
    fi
  done
  (( ${#busy[@]} == 0 )) || die "ports already in use: ${busy[*]}"
}

# A bridge or PID files without a live cluster are what a killed session or a crashed
# up.sh leaves; they are cleaned up. A live cluster (ours half-running, or another
# checkout's) is never touched.
check_leftovers() {
  ip link show "$BRIDGE" >/dev/null 2>&1 || compgen -G "$RUN/*.pid" >/dev/null || return 0
  local pidfile pid
  for pidfile in "$RUN"/*.pid; do
    [[ -e $pidfile ]] || continue
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null &&
      die "part of a cluster is still running ($(basename "$pidfile" .pid), PID $pid) but it is not healthy; run e2e/cluster/down.sh first"
  done
  if ss -Hltn "( sport = :$APISERVER_PORT )" | grep -q "$NODE_IP:$APISERVER_PORT"; then
    die "another cluster is serving on $NODE_IP:$APISERVER_PORT ($(ss -Hltnp "( sport = :$APISERVER_PORT )" | grep -o 'users:.*' | head -1)); stop it with the down.sh of the checkout that started it"
  fi
  step "removing leftovers of a cluster that is no longer running"
  "$CLUSTER_DIR/down.sh" >"$LOGS/down-leftovers.log" 2>&1 ||
    die "cleaning up the previous cluster failed" "$LOGS/down-leftovers.log"
  mkdir -p "$LOGS" "$RUN" "$STATE/bin"
}

# Images, volumes and pod logs live on the host's disk, and the suites build release
# binaries while the cluster runs. Too little room fails pods in ways far from the cause,
# so say so up front.
check_disk() {
  local free_gib
  free_gib=$(( $(df -B1 --output=avail "$STATE" | tail -1) / 1024 / 1024 / 1024 ))
  (( free_gib >= 8 )) ||
    echo "up.sh: warning: only $free_gib GiB free on the disk of $STATE; image imports, volumes and builds may fail (free some: cargo's target/, old caches)" >&2
}

# CAP_SYS_RESOURCE is bit 24 of the effective capability set.
has_cap_sys_resource() {
  local eff
  eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
  (( (16#$eff >> 24) & 1 ))
}

# ---------------------------------------------------------------------------------------
# Host setup. Everything changed here is recorded under $STATE/host so down.sh can undo it.

SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
         vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
         kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet
         net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
         net.netfilter.nf_conntrack_tcp_timeout_close_wait)

record_host_state() {
  mkdir -p "$STATE/host"
  local s
  # kubelet rewrites the kernel.*/vm.* values it considers required; kube-proxy the conntrack ones.
  for s in "${SYSCTLS[@]}"; do
    if [[ -e /proc/sys/${s//./\/} ]]; then echo "$s=$(sysctl -n "$s")"; fi
  done >"$STATE/host/sysctl"
  for s in "${HOST_PATHS[@]}"; do if [[ -e $s ]]; then echo "$s"; fi; done >"$STATE/host/paths"
  ip netns list 2>/dev/null | awk '{print $1}' >"$STATE/host/netns"
  if command -v nft >/dev/null; then nft list tables >"$STATE/host/nft-tables" 2>/dev/null || true; fi
}

setup_host_network() {
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
  # The bridge exists before any pod so the node IP (its gateway address) can be bound by the
  # apiserver, kubelet and CoreDNS from the start; the CNI bridge plugin adopts it.
  ip link add "$BRIDGE" type bridge
  ip addr add "$NODE_IP/${POD_CIDR#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # Service IPs are virtual; routing them into the bridge (not the default route) means a
  # packet to a service without endpoints dies on the bridge instead of leaving the machine.
  ip route add "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
  # Pods only get routes to the pod and service ranges; this also drops anything forwarded
  # from the bridge to another interface, so pod traffic can never leave the machine.
  iptables -w -N RIFFLE-FORWARD
  iptables -w -A RIFFLE-FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  iptables -w -I FORWARD 1 -j RIFFLE-FORWARD
}

setup_cgroups() {
  # All pods live under /riffle in every hierarchy, so teardown knows exactly what to sweep.
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ -d $h && $h != /sys/fs/cgroup/unified/ ]] && mkdir -p "$h/riffle"
  done
  [[ -d /sys/fs/cgroup/unified ]] && mkdir -p /sys/fs/cgroup/unified/riffle
  return 0
}

# `ip netns add` (other tests on this machine use it) turns /run/netns into a shared bind mount
# of itself, recursively copying what is mounted there, whenever it is not a mount point yet.
# Done while our pods run, that stacks copies over their namespace mounts: containerd unmounts
# the copy, cannot unlink the file (EBUSY) and the pods stay Terminating for ever. A shared
# mount point made before any pod exists leaves `ip netns` nothing to stack.
setup_netns_dir() {
  mkdir -p /run/netns
  if ! mountpoint -q /run/netns; then
    mount --bind /run/netns /run/netns
    : >"$STATE/host/netns-bind"
  fi
  mount --make-shared /run/netns
}

# ---------------------------------------------------------------------------------------
# PKI: one CA signs every certificate; EC keys because they are generated in milliseconds.

gen_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# gen_cert NAME CN [O] [SANS] [EKU]: key and CA-signed certificate in $PKI.
gen_cert() {
  local name=$1 cn=$2 org=${3:-} sans=${4:-} eku=${5:-clientAuth}
  local subj="/CN=$cn"; [[ -n $org ]] && subj="/O=$org$subj"
  gen_key "$PKI/$name.key"
  local ext=$PKI/$name.ext
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [[ -n $sans ]] && echo "subjectAltName=$sans"
  } >"$ext"
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
}

# kubeconfig NAME USER: a kubeconfig authenticating with $PKI/USER.{crt,key}.
kubeconfig() {
  local file=$1 user=$2
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: riffle
  cluster:
    server: https://$NODE_IP:$APISERVER_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $user
  user:
    client-certificate: $PKI/$user.crt
    client-key: $PKI/$user.key
contexts:
- name: riffle
  context: {cluster: riffle, user: $user}
current-context: riffle
EOF
}

gen_pki() {
  mkdir -p "$PKI"
  gen_key "$PKI/ca.key"
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=riffle-e2e-ca" -days 365 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$PKI/ca.crt" 2>/dev/null
  # In-cluster clients reach the apiserver as kubernetes.default.svc via the service IP.
  local api_sans="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  api_sans+=",DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost,DNS:$NODE_NAME"
  api_sans+=",IP:$KUBERNETES_SVC_IP,IP:$NODE_IP,IP:127.0.0.1"
  gen_cert apiserver kube-apiserver "" "$api_sans" serverAuth
  gen_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  gen_cert admin kubernetes-admin system:masters
  gen_cert controller-manager system:kube-controller-manager
  gen_cert scheduler system:kube-scheduler
  gen_cert kube-proxy system:kube-proxy
  gen_cert kubelet "system:node:$NODE_NAME" system:nodes
  gen_cert kubelet-serving "$NODE_NAME" "" "DNS:$NODE_NAME,IP:$NODE_IP" serverAuth
  gen_key "$PKI/sa.key"
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  chmod 600 "$PKI"/*.key

  kubeconfig "$KUBECONFIG_ADMIN" admin
  local u
  for u in controller-manager scheduler kube-proxy kubelet; do kubeconfig "$STATE/$u.kubeconfig" "$u"; done
}

# ---------------------------------------------------------------------------------------
# Components

start_etcd() {
  # --unsafe-no-fsync: test data is disposable, and fsync latency on a shared disk is the
  # main cause of slow apiserver writes.
  start etcd "$ETCD_BIN/etcd" --name riffle --data-dir "$STATE/etcd" \
    --listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
    --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
    --initial-cluster "riffle=http://$ETCD_PEER" --initial-cluster-state new \
    --unsafe-no-fsync --log-level warn
  await etcd 30 curl -fsS "http://$ETCD_CLIENT/health"
}

start_apiserver() {
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://$ETCD_CLIENT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --client-ca-file "$PKI/ca.crt" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false
  await kube-apiserver 90 kubectl get --raw /readyz
}

start_controller_manager() {
  local kc=$STATE/controller-manager.kubeconfig
  # --root-ca-file and the service-account key let it mint the tokens and CA bundles pods
  # mount; the CIDR flags give the node exactly the bridge's subnet.
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
    --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size "${POD_CIDR#*/}" \
    --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false \
    --flex-volume-plugin-dir "$STATE/kubelet/volume-plugins"
}

start_scheduler() {
  local kc=$STATE/scheduler.kubeconfig
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false
}

start_containerd() {
  local dir=$STATE/containerd restrict_oom=false
  has_cap_sys_resource || restrict_oom=true
  mkdir -p "$dir" "$STATE/cni/net.d"
  cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
# Snapshotters and plugins the node does not use; they only log errors on this kernel.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$RUN/containerd.sock"
[ttrpc]
  address = "$RUN/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"

[plugins."io.containerd.grpc.v1.cri"]
  # No registry is reachable: the sandbox image is built locally and imported.
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  # Without CAP_SYS_RESOURCE (as in some VMs) runc cannot lower oom_score_adj below
  # containerd's own, and sandboxes ask for -998; clamp instead of failing every pod.
  restrict_oom_score_adj = $restrict_oom
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$dir/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
  # ipMasq off and routes only to the service range: pods can reach each other, services
  # and the node, and nothing beyond the bridge.
  cat >"$STATE/cni/net.d/10-riffle.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "riffle",
  "plugins": [{
    "type": "bridge",
    "bridge": "$BRIDGE",
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
      "routes": [{"dst": "$SERVICE_CIDR"}],
      "dataDir": "$STATE/cni/ipam"
    }
  }]
}
EOF
  start containerd containerd --config "$dir/config.toml"
  await containerd 30 ctr --address "$RUN/containerd.sock" version
}

import_image() {
  ctr --address "$RUN/containerd.sock" -n k8s.io images import "$1" >>"$LOGS/images.log" 2>&1 ||
    die "importing image $1 into containerd failed" "$LOGS/images.log"
}

start_kubelet() {
  local dir=$STATE/kubelet
  mkdir -p "$dir" "$STATE/pod-logs" "$dir/volume-plugins"
  cat >"$dir/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$RUN/containerd.sock
# This machine has the cgroup v1 hierarchy and no systemd.
cgroupDriver: cgroupfs
cgroupRoot: /riffle
failCgroupV1: false
failSwapOn: false
clusterDNS: [$DNS_IP]
clusterDomain: $CLUSTER_DOMAIN
# Pods never inherit the host's resolvers: names outside the cluster are not resolved.
resolvConf: ""
podLogsDir: $STATE/pod-logs
volumePluginDir: $dir/volume-plugins
# Images are imported, not pulled: never garbage-collect them. The disk is the host's,
# shared with builds that fill it for minutes at a time: never report disk pressure (which
# taints the node, so nothing new is scheduled) nor evict pods for it.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
shutdownGracePeriod: 0s
rotateCertificates: false
serializeImagePulls: false
EOF
  start kubelet "$K8S_BIN/kubelet" --config "$dir/config.yaml" \
    --kubeconfig "$STATE/kubelet.kubeconfig" --root-dir "$dir" --cert-dir "$dir/pki" \
    --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v 1
  await kubelet 60 curl -fsS http://127.0.0.1:10248/healthz
}

start_kube_proxy() {
  cat >"$STATE/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
detectLocalMode: ClusterCIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts only on the node (bridge) address, never on the machine's interfaces.
nodePortAddresses: [$NODE_IP/32]
iptables: {localhostNodePorts: false, masqueradeAll: false}
# Zero leaves the host's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy "$K8S_BIN/kube-proxy" --config "$STATE/kube-proxy.yaml"
  await kube-proxy 60 curl -fsS http://127.0.0.1:10256/healthz
}

start_coredns() {
  mkdir -p "$STATE/coredns"
  # Cluster names come from the API (no cache plugin, so answers follow pod changes at
  # once); everything else is answered NXDOMAIN right here: nothing may be forwarded off
  # the machine.
  cat >"$STATE/coredns/Corefile" <<EOF
$CLUSTER_DOMAIN:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $DNS_IP
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG_ADMIN
        pods insecure
        ttl 5
    }
}
.:53 {
    bind $DNS_IP
    errors
    template ANY ANY {
        rcode NXDOMAIN
    }
}
EOF
  start coredns "$COREDNS_BIN/coredns" -conf "$STATE/coredns/Corefile"
  await coredns 60 curl -fsS http://127.0.0.1:18181/ready
}

start_provisioner() {
  start provisioner "$NODEKIT/bin/hostpath-provisioner" -kubeconfig "$KUBECONFIG_ADMIN" \
    -name "$PROVISIONER_NAME" -root "$STATE/volumes"
  kubectl apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: $STORAGE_CLASS
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: $PROVISIONER_NAME
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
}

# ---------------------------------------------------------------------------------------
# Readiness checks of the whole node

node_ready() {
  [[ $(kubectl get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

dns_answers() {
  [[ $("$NODEKIT/bin/toolbox" lookup -server "$DNS_IP:53" "kubernetes.default.svc.$CLUSTER_DOMAIN") == "$KUBERNETES_SVC_IP" ]]
}

pvc_binds() {
  local ns=default claim=riffle-up-probe
  kubectl -n $ns delete pvc $claim --ignore-not-found --wait=false >/dev/null
  kubectl -n $ns apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $claim}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
EOF
  wait_for 60 bash -c "[[ \$('$STATE/bin/kubectl' --kubeconfig '$KUBECONFIG_ADMIN' -n $ns get pvc $claim -o jsonpath='{.status.phase}') == Bound ]]" ||
    die "PersistentVolumeClaim $ns/$claim did not bind within 60s" "$LOGS/provisioner.log"
  kubectl -n $ns delete pvc $claim --wait=false >/dev/null
}

# ---------------------------------------------------------------------------------------

main() {
  mkdir -p "$LOGS" "$RUN" "$STATE/bin"
  if already_running; then
    step "cluster already running; KUBECONFIG=$KUBECONFIG_ADMIN"
    exit 0
  fi
  check_leftovers
  step "checking the host"
  ensure_packages
  check_kernel
  check_ports
  check_disk

  step "building or reusing binaries (cache: $CACHE)"
  "$CLUSTER_DIR/build.sh"
  K8S_BIN=$CACHE/k8s-$(gomod_version "$TOOLS_DIR/kubernetes" k8s.io/kubernetes)/bin
  ETCD_BIN=$CACHE/etcd-$(gomod_version "$TOOLS_DIR/etcd" go.etcd.io/etcd/server/v3)/bin
  COREDNS_BIN=$CACHE/coredns-$(gomod_version "$TOOLS_DIR/coredns" github.com/coredns/coredns)/bin
  NODEKIT=$(readlink -f "$CACHE/nodekit-current")

  # From here on the host is being changed: any failure tears everything down again.
  trap 'rc=$?; if (( rc != 0 )); then echo "up.sh failed; tearing down (logs kept in $LOGS)" >&2; "$CLUSTER_DIR/down.sh" >&2 || true; fi' EXIT
  step "preparing the host: bridge $BRIDGE ($NODE_IP), cgroups, sysctls"
  record_host_state
  setup_host_network
  setup_cgroups
  setup_netns_dir
  ln -sfn "$K8S_BIN/kubectl" "$STATE/bin/kubectl"

  step "generating certificates and kubeconfigs"
  gen_pki
  step "starting etcd";                    start_etcd
  step "starting kube-apiserver";          start_apiserver
  step "starting controller-manager, scheduler"
  start_controller_manager
  start_scheduler
  step "starting containerd";              start_containerd
  step "importing pause and toolbox images"
  import_image "$NODEKIT/images/pause.tar"
  import_image "$NODEKIT/images/toolbox.tar"
  step "starting kubelet";                 start_kubelet
  step "starting kube-proxy";              start_kube_proxy
  step "starting CoreDNS on $DNS_IP:53";   start_coredns
  step "starting volume provisioner";      start_provisioner

  step "waiting for node $NODE_NAME to be Ready"
  wait_for 120 node_ready || die "node $NODE_NAME not Ready after 120s" "$LOGS/kubelet.log"
  step "waiting for DNS to answer"
  wait_for 60 dns_answers || die "CoreDNS does not resolve kubernetes.default.svc.$CLUSTER_DOMAIN" "$LOGS/coredns.log"
  step "waiting for a volume claim to bind"
  pvc_binds
  step "waiting for the default service account"
  wait_for 60 kubectl -n default get serviceaccount default ||
    die "no default service account after 60s" "$LOGS/kube-controller-manager.log"

  trap - EXIT
  step "cluster ready: export KUBECONFIG=$KUBECONFIG_ADMIN  (kubectl: $STATE/bin/kubectl)"
}

main "$@"
