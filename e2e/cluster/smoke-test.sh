#!/usr/bin/env bash
# Proves the cluster runs an ordinary stateful workload that nobody in the project wrote:
#   - a StatefulSet of 2 pods, each with its own dynamically provisioned volume
#   - pods reach each other by DNS name through a headless Service
#   - a ClusterIP Service is reachable from the host and balances over both pods
#   - a deleted pod comes back with the data on its volume intact
#
# The workload image is riffle.local/toolbox:1 (built by build.sh, imported by up.sh or by
# e2e/kind/up.sh). Uses $KUBECONFIG, defaulting to the e2e cluster's.
#
# SMOKE_HOST_EXEC: command prefix that runs a command "on the host" able to reach ClusterIPs;
# empty for the host-process cluster, e.g. "docker exec riffle-control-plane" for kind.
# SMOKE_KEEP=1 leaves the namespace and its workload behind for inspection.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

export KUBECONFIG=${KUBECONFIG:-$KUBECONFIG_ADMIN}
KUBECTL=${KUBECTL:-$(type -P kubectl || echo "$STATE/bin/kubectl")}
NS=riffle-smoke
HOST_EXEC=${SMOKE_HOST_EXEC:-}
passed=0
failed=0

k() { "$KUBECTL" -n "$NS" "$@"; }

pass() { passed=$(( passed + 1 )); step "PASS: $*"; }

# fail reports the failed check with enough cluster state to see why, then stops: later
# checks build on earlier ones.
fail() {
  failed=$(( failed + 1 ))
  step "FAIL: $*"
  {
    echo "--- pods ---";   k get pods -o wide 2>&1
    echo "--- claims ---"; k get pvc 2>&1
    echo "--- events ---"; k get events --sort-by=.lastTimestamp 2>&1 | tail -20
  } >&2
  echo "smoke: $passed passed, $failed failed"
  exit 1
}

cleanup() {
  [[ -n ${SMOKE_KEEP:-} ]] && return 0  # leave the workload in place for debugging
  "$KUBECTL" delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}

# tb POD CMD...: run the toolbox inside a pod.
tb() { local pod=$1; shift; k exec "$pod" -- /toolbox "$@"; }

deploy() {
  "$KUBECTL" delete namespace "$NS" --ignore-not-found --wait=true --timeout=120s >/dev/null
  "$KUBECTL" create namespace "$NS" >/dev/null
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: 2
  selector: {matchLabels: {app: web}}
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Delete}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: $TOOLBOX_IMAGE
        imagePullPolicy: Never
        args: [serve, -addr, ":8080", -dir, /data]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe:
          httpGet: {path: /hostname, port: http}
          periodSeconds: 1
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 16Mi}}
EOF
}

check_rollout() {
  k rollout status statefulset/web --timeout=180s >/dev/null 2>&1 ||
    fail "StatefulSet web did not get 2 ready pods within 180s"
  pass "StatefulSet web has 2 ready pods"
}

check_claims() {
  local c phase
  for c in data-web-0 data-web-1; do
    phase=$(k get pvc "$c" -o jsonpath='{.status.phase}' 2>/dev/null || true)
    [[ $phase == Bound ]] || fail "claim $c is '$phase', want Bound"
  done
  pass "claims data-web-0 and data-web-1 are Bound to provisioned volumes"
}

check_dns_between_pods() {
  local fqdn=web-0.web.$NS.svc.cluster.local addrs ip0
  ip0=$(k get pod web-0 -o jsonpath='{.status.podIP}')
  addrs=$(tb web-1 lookup "$fqdn" 2>&1) || fail "web-1 cannot resolve $fqdn: $addrs"
  [[ $addrs == "$ip0" ]] || fail "$fqdn resolves to '$addrs', want web-0's IP $ip0"
  pass "web-1 resolves $fqdn to web-0's IP $ip0"
}

check_write_and_read_across_pods() {
  local got
  tb web-0 put "http://localhost:8080/file/greeting" "$NONCE" >/dev/null ||
    fail "writing to web-0's volume failed"
  # Short name through the pod's search path, as in-cluster clients use it.
  got=$(tb web-1 get "http://web-0.web:8080/file/greeting" 2>&1) ||
    fail "web-1 cannot GET web-0.web:8080: $got"
  [[ $got == "$NONCE" ]] || fail "web-1 read '$got' from web-0, want '$NONCE'"
  pass "web-1 read web-0's volume over the headless service (http://web-0.web:8080)"
}

check_clusterip_from_host() {
  local ip seen=() out i
  ip=$(k get service web-lb -o jsonpath='{.spec.clusterIP}')
  [[ -n $ip && $ip != None ]] || fail "service web-lb has no ClusterIP"
  # Bounded: at most 60 requests, 0.25 s apart (kube-proxy applies new endpoints within a
  # second or so), until both pods have answered.
  for (( i = 0; i < 60; i++ )); do
    if out=$($HOST_EXEC curl -fsS --max-time 2 "http://$ip/hostname" 2>/dev/null); then
      [[ " ${seen[*]} " == *" $out "* ]] || seen+=("$out")
      (( ${#seen[@]} == 2 )) && break
    fi
    sleep 0.25
  done
  (( ${#seen[@]} > 0 )) || fail "ClusterIP $ip:80 not reachable from the host"
  (( ${#seen[@]} == 2 )) || fail "ClusterIP $ip:80 only ever reached ${seen[*]}"
  pass "ClusterIP $ip:80 reachable from the host, answered by ${seen[*]}"
}

check_pod_restart_keeps_data() {
  local old new got
  old=$(k get pod web-0 -o jsonpath='{.metadata.uid}')
  k delete pod web-0 --wait=true --timeout=60s >/dev/null || fail "deleting web-0 timed out"
  wait_for 120 bash -c "[[ \$('$KUBECTL' -n $NS get pod web-0 -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}') == True ]]" ||
    fail "web-0 did not come back Ready within 120s"
  new=$(k get pod web-0 -o jsonpath='{.metadata.uid}')
  [[ $new != "$old" ]] || fail "web-0 was not replaced (same UID $old)"
  got=$(tb web-0 get "http://localhost:8080/file/greeting" 2>&1) ||
    fail "reading the file on web-0's volume after restart failed: $got"
  [[ $got == "$NONCE" ]] || fail "after restart web-0's volume holds '$got', want '$NONCE'"
  # The new pod has a new IP; its DNS record follows once the endpoints catch up.
  local ip
  ip=$(k get pod web-0 -o jsonpath='{.status.podIP}')
  wait_for 30 bash -c "[[ \$('$KUBECTL' -n $NS exec web-1 -- /toolbox lookup web-0.web) == '$ip' ]]" ||
    fail "web-0.web does not resolve to the restarted pod's IP $ip within 30s"
  got=$(tb web-1 get "http://web-0.web:8080/file/greeting" 2>&1) ||
    fail "web-1 cannot reach the restarted web-0 by name: $got"
  [[ $got == "$NONCE" ]] || fail "web-1 read '$got' from the restarted web-0, want '$NONCE'"
  pass "deleted pod web-0 came back (new UID) with its volume data intact"
}

main() {
  [[ -x $KUBECTL ]] || die "kubectl not found (set KUBECTL or run e2e/cluster/up.sh)"
  "$KUBECTL" get --raw /readyz >/dev/null 2>&1 || die "no cluster answers at KUBECONFIG=$KUBECONFIG"
  NONCE="riffle-smoke-$(date +%s)-$RANDOM"
  trap cleanup EXIT
  step "deploying StatefulSet web (2 replicas) in namespace $NS"
  deploy
  check_rollout
  check_claims
  check_dns_between_pods
  check_write_and_read_across_pods
  check_clusterip_from_host
  check_pod_restart_keeps_data
  echo "smoke: $passed passed, $failed failed"
}

main "$@"
