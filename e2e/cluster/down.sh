#!/usr/bin/env bash
# Stops the e2e cluster and undoes every change up.sh made to the host: processes (by PID
# file), pod containers and their cgroups, mounts, network namespaces, the bridge, iptables
# rules and sysctls. Keeps the binary cache and the logs of the last run ($STATE/logs).
# Safe to run at any point, including after a half-finished up.sh, and more than once.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

[[ $EUID -eq 0 ]] || die "down.sh must run as root"
# ** walks cgroup trees; unmatched globs expand to nothing.
shopt -s globstar nullglob

# pid_of NAME prints the PID in $RUN/NAME.pid if that process is still one of ours: after a
# crash or reboot the number may belong to something else, so the command line must name
# this cluster's state directory (every component is started with a path inside it).
pid_of() {
  local pid
  pid=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null && [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") == *"$STATE"* ]] &&
    echo "$pid"
}

# stop TIMEOUT NAME...: SIGTERM the named components together, wait up to TIMEOUT seconds
# for all of them, SIGKILL whatever lingers.
stop() {
  local timeout=$1; shift
  local name pid pids=() i t0=$SECONDS
  for name in "$@"; do
    if pid=$(pid_of "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  for (( i = 0; i < timeout * 10 && ${#pids[@]} > 0; i++ )); do
    for pid in "${!pids[@]}"; do kill -0 "${pids[$pid]}" 2>/dev/null || unset "pids[$pid]"; done
    (( ${#pids[@]} )) && sleep 0.1
  done
  if (( ${#pids[@]} )); then
    step "still running after ${timeout}s, killing: $(for pid in "${pids[@]}"; do tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | cut -d' ' -f1; done | xargs -n1 basename | xargs)"
    kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  for name in "$@"; do rm -f "$RUN/$name.pid"; done
  (( SECONDS - t0 < 2 )) || step "  $* stopped after $(( SECONDS - t0 ))s"
}

ctr_() { ctr --address "$RUN/containerd.sock" -n k8s.io "$@"; }

# Kill every pod container through containerd while it still runs, so shims exit cleanly.
stop_containers() {
  [[ -S $RUN/containerd.sock ]] && ctr_ version >/dev/null 2>&1 || return 0
  local id
  for id in $(ctr_ tasks ls -q 2>/dev/null); do
    ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  for id in $(ctr_ tasks ls -q 2>/dev/null); do
    ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true
  done
}

# Whatever survived (containerd crashed, shim orphaned): pod processes are found through the
# /riffle cgroups, shims through our containerd socket path in their command line.
kill_leftover_processes() {
  local pids pid
  pids=$(cat /dev/null /sys/fs/cgroup/*/riffle/**/cgroup.procs 2>/dev/null || true)
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") == *"containerd-shim"*"$RUN/containerd.sock"* ]] && pids+=" $pid"
  done
  for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
  return 0
}

remove_cgroups() {
  local d
  # Deepest first: a cgroup can only be removed once its children are gone.
  for d in $(printf '%s\n' /sys/fs/cgroup/*/riffle/**/ | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-); do
    rmdir "$d" 2>/dev/null || true
  done
}

unmount_state() {
  local m
  # Longest paths first so nested mounts (volumes inside pod dirs, shm inside sandboxes)
  # come off before their parents.
  for m in $(findmnt -rn -o TARGET | grep -F "$STATE/" | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || step "could not unmount $m"
  done
}

# Network namespaces CNI created for our pods: those that did not exist before up.sh.
remove_netns() {
  local ns
  [[ -f $STATE/host/netns ]] || return 0
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ $ns == cni-* ]] || continue
    grep -qxF "$ns" "$STATE/host/netns" && continue
    ip netns delete "$ns" 2>/dev/null || { umount -l "/var/run/netns/$ns" 2>/dev/null; rm -f "/var/run/netns/$ns" 2>/dev/null || step "could not remove network namespace $ns"; }
  done
  # up.sh's bind mount (see setup_netns_dir), unless someone else's namespaces are in it.
  [[ -f $STATE/host/netns-bind ]] && mountpoint -q /run/netns || return 0
  if findmnt -rn -o TARGET | grep -q '^/run/netns/'; then
    step "leaving the /run/netns bind mount: other network namespaces are mounted in it"
  else
    umount /run/netns 2>/dev/null || step "could not unmount /run/netns"
  fi
}

# Chains named KUBE-* (kube-proxy, kubelet), CNI-* (CNI plugins) and RIFFLE-* (ours), and
# every rule jumping to them, in both address families.
remove_iptables() {
  local k8s_bin=$1 cmd table chain rule
  if [[ -x $k8s_bin/kube-proxy ]]; then
    "$k8s_bin/kube-proxy" --cleanup >"$LOGS/kube-proxy-cleanup.log" 2>&1 || true
  fi
  for cmd in iptables ip6tables; do
    command -v $cmd >/dev/null || continue
    for table in filter nat mangle raw; do
      $cmd -w -t $table -S >/dev/null 2>&1 || continue
      while read -r rule; do
        eval "$cmd -w -t $table ${rule/#-A/-D}" 2>/dev/null || true
      done < <($cmd -w -t $table -S | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j (KUBE|CNI|RIFFLE)-')
      for chain in $($cmd -w -t $table -S | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI|RIFFLE)-/ {print $2}'); do
        $cmd -w -t $table -F "$chain" 2>/dev/null || true
      done
      for chain in $($cmd -w -t $table -S | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI|RIFFLE)-/ {print $2}'); do
        $cmd -w -t $table -X "$chain" 2>/dev/null || true
      done
    done
  done
}

remove_network() {
  ip route del "$SERVICE_CIDR" dev "$BRIDGE" 2>/dev/null || true
  # Any veth still attached (a pod whose namespace survived) goes with the bridge.
  local veth
  for veth in $(ip -o link show master "$BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip link del "$veth" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
}

restore_sysctls() {
  [[ -f $STATE/host/sysctl ]] || return 0
  local line
  while read -r line; do
    sysctl -qw "$line" 2>/dev/null || true
  done <"$STATE/host/sysctl"
}

# Paths the components create at fixed locations; removed only if up.sh found them absent.
remove_host_paths() {
  [[ -f $STATE/host/paths ]] || return 0
  local p
  for p in "${HOST_PATHS[@]}"; do
    [[ -e $p ]] || continue
    grep -qxF "$p" "$STATE/host/paths" && continue
    findmnt -rn -o TARGET | grep -q "^$p/" && { step "leaving $p: something is still mounted under it"; continue; }
    mountpoint -q "$p" && { step "leaving $p: it is a mount point"; continue; }
    rm -rf "$p"
  done
}

remove_nft_tables() {
  # iptables-nft leaves empty tables behind once their chains are gone; drop the ones that
  # did not exist before up.sh and hold no rules now.
  command -v nft >/dev/null && [[ -f $STATE/host/nft-tables ]] || return 0
  local cmd fam table
  for cmd in iptables ip6tables; do
    fam=ip; [[ $cmd == ip6tables ]] && fam=ip6
    for table in filter nat mangle raw; do
      nft list table $fam $table >/dev/null 2>&1 || continue
      grep -qxF "table $fam $table" "$STATE/host/nft-tables" && continue
      $cmd -w -t $table -S 2>/dev/null | grep -qv '^-P ' && continue
      nft delete table $fam $table 2>/dev/null || true
    done
  done
}

main() {
  local t0 k8s_bin; t0=$(date +%s)
  mkdir -p "$LOGS"
  k8s_bin=$CACHE/k8s-$(gomod_version "$TOOLS_DIR/kubernetes" k8s.io/kubernetes)/bin
  step "stopping kubelet, kube-proxy, CoreDNS, provisioner, scheduler, controller-manager"
  stop 10 kubelet kube-proxy coredns provisioner kube-scheduler kube-controller-manager
  step "stopping pod containers and containerd"
  stop_containers
  stop 10 containerd
  kill_leftover_processes
  step "stopping apiserver, etcd"
  # The apiserver's graceful shutdown sometimes idles ~10 s draining requests from clients
  # that are already gone; its state is discarded anyway, so it gets 3 s.
  stop 3 kube-apiserver
  stop 10 etcd
  step "unmounting, removing namespaces, cgroups, bridge and iptables rules"
  unmount_state
  remove_netns
  remove_cgroups
  remove_iptables "$k8s_bin"
  remove_network
  remove_nft_tables
  restore_sysctls
  remove_host_paths
  # Everything but the logs of this run, which explain a failed start.
  if [[ -d $STATE ]]; then
    find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf --one-file-system {} +
  fi
  step "cluster stopped in $(( $(date +%s) - t0 ))s"
}

main "$@"
