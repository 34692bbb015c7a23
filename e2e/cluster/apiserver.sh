#!/usr/bin/env bash
# Stops and starts the running cluster's kube-apiserver, for tests of what survives an API
# server outage. `start` runs exactly the command line up.sh started it with (saved by `stop`
# from /proc), logging to the same file and recording the PID where down.sh looks for it.
#
#   e2e/cluster/apiserver.sh stop [SIGNAL]   kill it (SIGKILL by default) and wait until it is gone
#   e2e/cluster/apiserver.sh start           start it again and wait for /readyz
#   e2e/cluster/apiserver.sh restart         both
#   e2e/cluster/apiserver.sh status          prints running (PID) or stopped; exits 1 if stopped
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

[[ $EUID -eq 0 ]] || die "apiserver.sh must run as root (kube-apiserver runs as root)"

NAME=kube-apiserver
PIDFILE=$RUN/$NAME.pid
SAVED=$RUN/$NAME.cmdline

# The PID in the PID file, if that process is still this cluster's apiserver.
running_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # After a crash the number may belong to something else: it must be an apiserver started
  # with this cluster's state directory.
  [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") == *kube-apiserver*"$STATE"* ]] || return 1
  echo "$pid"
}

stop() {
  local signal=${1:-KILL} pid
  pid=$(running_pid) || die "$NAME is not running (no live PID in $PIDFILE)"
  # The exact argv, NUL-separated, so arguments with spaces survive.
  cp "/proc/$pid/cmdline" "$SAVED.tmp" && mv "$SAVED.tmp" "$SAVED"
  kill "-$signal" "$pid"
  local deadline=$(( $(date +%s) + 30 ))
  while kill -0 "$pid" 2>/dev/null; do
    (( $(date +%s) < deadline )) || die "$NAME (PID $pid) still running 30s after SIG$signal"
    sleep 0.1
  done
  rm -f "$PIDFILE"
  step "$NAME stopped (SIG$signal to PID $pid)"
}

start() {
  if pid=$(running_pid); then
    step "$NAME already running (PID $pid)"
    return 0
  fi
  [[ -s $SAVED ]] || die "no saved command line in $SAVED: stop it with this script first"
  local argv=()
  mapfile -d '' argv <"$SAVED"
  (( ${#argv[@]} )) || die "empty command line in $SAVED"
  echo "--- restarted by apiserver.sh at $(date -u +%FT%TZ) ---" >>"$LOGS/$NAME.log"
  setsid "${argv[@]}" >>"$LOGS/$NAME.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$(( $(date +%s) + 90 ))
  until kubectl get --raw /readyz >/dev/null 2>&1; do
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || die "$NAME exited during startup" "$LOGS/$NAME.log"
    (( $(date +%s) < deadline )) || die "$NAME not ready after 90s" "$LOGS/$NAME.log"
    sleep 0.2
  done
  step "$NAME started (PID $(cat "$PIDFILE")) and ready"
}

case ${1:-} in
  stop) stop "${2:-KILL}" ;;
  start) start ;;
  restart) stop "${2:-KILL}"; start ;;
  status)
    if pid=$(running_pid); then echo "running ($pid)"; else echo stopped; exit 1; fi ;;
  *) die "usage: $0 stop [SIGNAL] | start | restart [SIGNAL] | status" ;;
esac
