#!/usr/bin/env bash
# Measures Riffle against kinesalite on this machine, in one run, with the same parameters,
# and prints one table: workload | riffle | kinesalite | ratio | riffle RF3 | target | RF3
# target, the disk ceiling and the CPU each side used. "riffle RF3" is a replicated shard group
# (replicationFactor 3): three Riffle replicas on this machine, written through their leader.
# See BENCHMARKS.md for what each workload measures.
#
# Fails only on a broken setup (a build, install or server that does not come up, or a
# workload Riffle cannot complete), never on a number.
#
# Overridable by environment:
#   BENCH_SECONDS (10)          measured seconds per workload, after BENCH_WARMUP_SECONDS (1)
#   BENCH_CONCURRENCY (8)       calls in flight in the throughput workloads
#   BENCH_DRAIN_MB (512)        MiB preloaded before each drain
#   BENCH_PRELOAD_MAX_SECONDS (90)  stop a (slow) preload early
#   BENCH_DISK_SECONDS (5)      seconds per disk-ceiling test
#   BENCH_PUT_RATE_BYTES (1048576), BENCH_READ_RATE (100)
#   BENCH_ONLY                  comma-separated cases, e.g. put-1k,drain
#   BENCH_SYSTEMS (riffle,kinesalite,rf3)  the columns to run (and servers to start): any of
#                               riffle, kinesalite, nosync, rf3; e.g. BENCH_SYSTEMS=rf3
#                               BENCH_ONLY=put-1k,put-record for the replicated group alone
#   BENCH_NOSYNC=1              also run a Riffle with --sync none (NOT durable), own column
#   BENCH_DIR                   parent of the servers' temporary data directories ($TMPDIR)
#   BENCH_WAIT_QUIET (0)        wait up to this many seconds for the CPUs to be 80 % idle first
#   BENCH_NO_BUILD=1            use the binaries already in target/release (quick iterations)
#   BENCH_RF3_SYNC (fdatasync)  --sync of the replicas: their raft logs always fdatasync, and
#                               with "fdatasync" a replica syncs its stream logs before it
#                               stores its applied position; "none" never syncs them
#   RIFFLE_CACHE                where kinesalite is installed (~/.cache/riffle)
#   KINESALITE_VERSION (3.3.3)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
CARGO=${CARGO:-cargo}
KINESALITE_VERSION=${KINESALITE_VERSION:-3.3.3}
CACHE=${RIFFLE_CACHE:-$HOME/.cache/riffle}
KINESALITE_PREFIX=$CACHE/kinesalite
KINESALITE_DIR=$KINESALITE_PREFIX/node_modules/kinesalite
BENCH=$ROOT/target/release/riffle-bench
RIFFLE=$ROOT/target/release/riffle
OUT=$ROOT/target/bench
SYSTEMS=,${BENCH_SYSTEMS:-riffle,kinesalite,rf3},
if [[ ${BENCH_NOSYNC:-0} == 1 ]]; then SYSTEMS+=nosync,; fi

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
# Whether column $1 is to be run.
runs() { [[ $SYSTEMS == *",$1,"* ]]; }
for system in ${SYSTEMS//,/ }; do
    case $system in
        riffle | kinesalite | nosync | rf3) ;;
        *) die "unknown system '$system' in BENCH_SYSTEMS (riffle, kinesalite, nosync, rf3)" ;;
    esac
done

# --- build ------------------------------------------------------------------------------------
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    log "building riffle and riffle-bench (release)"
    $CARGO build --release -p riffle -p riffle-bench
fi

# --- kinesalite -------------------------------------------------------------------------------
if runs kinesalite; then
    command -v node >/dev/null || die "node is required for kinesalite (install Node.js 18 or newer)"
    installed=$(node -p "try { require('$KINESALITE_DIR/package.json').version } catch (e) { '' }")
    if [[ $installed != "$KINESALITE_VERSION" ]]; then
        command -v npm >/dev/null || die "npm is required to install kinesalite"
        log "installing kinesalite@$KINESALITE_VERSION into $KINESALITE_PREFIX"
        mkdir -p "$KINESALITE_PREFIX"
        npm install --prefix "$KINESALITE_PREFIX" --no-audit --no-fund --loglevel=error \
            "kinesalite@$KINESALITE_VERSION" >&2
    fi
fi

# --- servers ----------------------------------------------------------------------------------
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/riffle-bench.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port nothing listens on and not handed out before in this run (the window until
# the server binds it is tiny), below the kernel's ephemeral range (32768 and up by default),
# where the replicas' own outgoing connections take their source ports.
TAKEN=" "
free_port() {
    local port
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 12768))
        if [[ $TAKEN != *" $port "* ]] && ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free loopback port found"
}
# take_port VAR: sets VAR to a fresh free port (in this shell, so that TAKEN remembers it).
take_port() {
    local fresh
    fresh=$(free_port)
    TAKEN+="$fresh "
    printf -v "$1" '%s' "$fresh"
}

# start_riffle NAME SYNC PORT [ARGS...]: starts a Riffle with its Kinesis API on loopback PORT
# and its gRPC API on a fresh port, sets RIFFLE_URL, GRPC_URL and SERVER_PID.
start_riffle() {
    local name=$1 sync=$2 http=$3 grpc
    shift 3
    take_port grpc
    mkdir -p "$WORK/$name"
    RIFFLE_LOG=warn "$RIFFLE" server --listen "127.0.0.1:$http" --grpc-listen "127.0.0.1:$grpc" \
        --data-dir "$WORK/$name" --throttle off --sync "$sync" "$@" >"$WORK/$name.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    RIFFLE_URL=http://127.0.0.1:$http
    GRPC_URL=http://127.0.0.1:$grpc
}

RIFFLE_ARGS=()
if runs riffle; then
    take_port port
    start_riffle riffle fdatasync "$port"
    RIFFLE_PID=$SERVER_PID R_URL=$RIFFLE_URL
    RIFFLE_ARGS=(--riffle "$RIFFLE_URL" --riffle-grpc "$GRPC_URL" --riffle-pid "$RIFFLE_PID")
fi

# A replicated shard group: replicas 1-3, each with its own data directory on the same disk,
# durable (fdatasync) like the single Riffle, and its raft port on loopback.
RF3_ARGS=()
if runs rf3; then
    raft_ports=() api_ports=()
    for id in 1 2 3; do
        take_port port
        raft_ports+=("$port")
        take_port port
        api_ports+=("$port")
    done
    peers="1=127.0.0.1:${raft_ports[0]},2=127.0.0.1:${raft_ports[1]},3=127.0.0.1:${raft_ports[2]}"
    apis="1=127.0.0.1:${api_ports[0]},2=127.0.0.1:${api_ports[1]},3=127.0.0.1:${api_ports[2]}"
    rf3_urls=() rf3_pids=()
    for id in 1 2 3; do
        start_riffle "rf3-$id" "${BENCH_RF3_SYNC:-fdatasync}" "${api_ports[id - 1]}" \
            --replica-id "$id" --peers "$peers" --raft-listen "127.0.0.1:${raft_ports[id - 1]}" \
            --peer-apis "$apis"
        rf3_pids+=("$SERVER_PID")
        rf3_urls+=("$RIFFLE_URL")
    done
fi

K_ARGS=()
if runs kinesalite; then
    # cli.js listens on every interface and has no host option: start the same server on loopback.
    take_port KPORT
    mkdir -p "$WORK/kinesalite"
    node -e '
const [dir, path, port] = process.argv.slice(1);
const server = require(dir + "/index.js")({
  path, createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0,
});
server.listen(Number(port), "127.0.0.1");
    ' "$KINESALITE_DIR" "$WORK/kinesalite" "$KPORT" >"$WORK/kinesalite.log" 2>&1 &
    KINESALITE_PID=$!
    PIDS+=("$KINESALITE_PID")
    K_URL=http://127.0.0.1:$KPORT
    K_ARGS=(--kinesalite "$K_URL" --kinesalite-pid "$KINESALITE_PID")
fi

NOSYNC_ARGS=()
if runs nosync; then
    take_port port
    start_riffle riffle-nosync none "$port"
    NOSYNC_ARGS=(--nosync "$RIFFLE_URL" --nosync-grpc "$GRPC_URL" --nosync-pid "$SERVER_PID")
    "$BENCH" wait --endpoint "$RIFFLE_URL" --pid "$SERVER_PID" ||
        { cat "$WORK/riffle-nosync.log" >&2; die "the --sync none Riffle did not start"; }
fi

if runs riffle; then
    "$BENCH" wait --endpoint "$R_URL" --pid "$RIFFLE_PID" ||
        { cat "$WORK/riffle.log" >&2; die "Riffle did not start"; }
fi
if runs kinesalite; then
    "$BENCH" wait --endpoint "$K_URL" --pid "$KINESALITE_PID" ||
        { cat "$WORK/kinesalite.log" >&2; die "kinesalite did not start"; }
fi
if runs rf3; then
    # Followers refuse some calls (naming the leader), so only the leader is waited for.
    urls=$(IFS=,; echo "${rf3_urls[*]}")
    pids=$(IFS=,; echo "${rf3_pids[*]}")
    read -r leader leader_url < <("$BENCH" leader --endpoints "$urls" --pids "$pids") ||
        { tail -n 20 "$WORK"/rf3-*.log >&2; die "the replicated group elected no leader"; }
    "$BENCH" wait --endpoint "$leader_url" --pid "${rf3_pids[leader]}" ||
        { tail -n 20 "$WORK"/rf3-*.log >&2; die "the replicated group's leader does not answer"; }
    # The leader's pid first, then the followers'.
    ordered=${rf3_pids[leader]}
    for i in 0 1 2; do
        if ((i != leader)); then ordered+=,${rf3_pids[i]}; fi
    done
    log "replicated group: replica $((leader + 1)) leads, at $leader_url"
    RF3_ARGS=(--replicated "$leader_url" --replicated-pids "$ordered" --replicated-endpoints "$urls")
fi

# --- run --------------------------------------------------------------------------------------
# Percent of CPU time idle over the next two seconds.
idle_pct() {
    local a b
    read -ra a < <(grep '^cpu ' /proc/stat)
    sleep 2
    read -ra b < <(grep '^cpu ' /proc/stat)
    local total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
    echo $(((b[4] - a[4] + b[5] - a[5]) * 100 / (total > 0 ? total : 1)))
}
if ((${BENCH_WAIT_QUIET:-0} > 0)); then
    deadline=$((SECONDS + BENCH_WAIT_QUIET))
    until (($(idle_pct) >= 80)) || ((SECONDS >= deadline)); do :; done
fi
mkdir -p "$OUT"
RESULTS=$OUT/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl
{
    echo "date:        $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit:      $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "cpus:        $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
    echo "memory:      $(free -h | awk '/^Mem:/ {print $2}')"
    echo "disk:        $(df -h "$WORK" | awk 'NR == 2 {print $1 ", " $2 " total, " $4 " free"}')"
    idle=$(idle_pct)
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) (CPU idle $idle %)"
    if ((idle < 80)); then
        echo "WARNING: the machine is busy with other work; expect noisy, pessimistic figures."
    fi
    if runs kinesalite; then
        echo "kinesalite:  $KINESALITE_VERSION on node $(node --version)"
    fi
    echo "columns:     ${SYSTEMS:1:-1}"
    if runs rf3; then
        if [[ ${BENCH_RF3_SYNC:-fdatasync} == fdatasync ]]; then
            echo "riffle RF3:  3 replicas, raft logs fdatasync, stream logs synced before each stored position"
        else
            echo "riffle RF3:  3 replicas, raft logs fdatasync, stream logs --sync ${BENCH_RF3_SYNC}"
        fi
    fi
    echo
} | tee "$OUT/last-table.md"

status=0
"$BENCH" suite \
    "${RIFFLE_ARGS[@]}" "${K_ARGS[@]}" "${NOSYNC_ARGS[@]}" "${RF3_ARGS[@]}" \
    --disk-dir "$WORK" --results "$RESULTS" | tee -a "$OUT/last-table.md" || status=$?

echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg) (CPU idle $(idle_pct) %, while the servers idle)" | tee -a "$OUT/last-table.md"
log "table in $OUT/last-table.md, every metric in $RESULTS"
if [[ $status != 0 ]]; then
    for name in riffle rf3-1 rf3-2 rf3-3; do
        if [[ -f $WORK/$name.log ]]; then
            log "last lines of $name.log:"
            tail -n 20 "$WORK/$name.log" >&2 || true
        fi
    done
fi
exit "$status"
