#!/usr/bin/env bash
# Load test of `irsa-webhook serve` on loopback: start-up time, saturation throughput, server CPU
# per admission, latency single-request and at a paced 1000 req/s, and memory with 10 000 and
# 100 000 ServiceAccounts. See bench/README.md.
#
#   bench/load.sh [N]            N ServiceAccounts for the main runs (default 10000, or $N)
#
# Environment: PROFILE (the cargo profile measured: dist, the default, is what the image ships;
# release builds in half the time and costs a third more CPU per admission), BIG (ServiceAccounts of the memory run, default 100000), PORT / METRICS_PORT
# (default 18443 / 19999), REQUESTS (saturation run, default 200000), SKIP_BUILD=1,
# KEEP=1 (keep the temp dir with certs, fixtures, logs), PIN=1 (server on CPU 0, h2load and
# the paced client on CPU 1, so the clients do not steal the server's CPU; the server then has one
# core).
# Variables the server reads pass through, e.g. MIMALLOC_ALLOW_THP=0.
set -euo pipefail

N=${1:-${N:-10000}}
BIG=${BIG:-100000}
PORT=${PORT:-18443}
METRICS_PORT=${METRICS_PORT:-19999}
REQUESTS=${REQUESTS:-200000}
SINGLE_REQUESTS=${SINGLE_REQUESTS:-5000}
PACED_SECONDS=${PACED_SECONDS:-15}
export METRICS_PORT READY_TIMEOUT=${READY_TIMEOUT:-120}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROFILE=${PROFILE:-dist}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/irsa-webhook
TOOL=(python3 "$ROOT/bench/loadtool.py")
URL=https://127.0.0.1:$PORT/mutate
WORK=$(mktemp -d "${TMPDIR:-/tmp}/irsa-load.XXXXXX")
SERVER_PID=
SERVER_CPU=() CLIENT_CPU=()
if [[ ${PIN:-0} == 1 ]]; then
    command -v taskset >/dev/null || { echo "load.sh: PIN=1 needs taskset" >&2; exit 1; }
    SERVER_CPU=(taskset -c 0) CLIENT_CPU=(taskset -c 1)
fi

cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
die() { echo "load.sh: $*" >&2; exit 1; }

# verdict VALUE OP LIMIT: "ok" or "MISS" (OP is le or ge).
verdict() {
    if python3 -c "import sys; v,l=float(sys.argv[1]),float(sys.argv[3]); sys.exit(0 if (v<=l if sys.argv[2]=='le' else v>=l) else 1)" "$1" "$2" "$3"
    then echo ok; else echo MISS; fi
}
SUMMARY=()
OTHER= # CPU share other processes took during the last measured phase, for `record`
# record LABEL VALUE UNIT OP LIMIT
record() {
    local mark sign note=
    mark=$(verdict "$2" "$4" "$5")
    [[ $4 == le ]] && sign="<=" || sign=">="
    [[ -n $OTHER ]] && note="  (others used ${OTHER}% CPU meanwhile)"
    SUMMARY+=("$(printf '%-44s %12s %-5s  target %s %s %-5s  %-4s%s' "$1" "$2" "$3" "$sign" "$5" "$3" "$mark" "$note")")
    printf '   %-44s %12s %-5s  (target %s %s %s: %s)\n' "$1" "$2" "$3" "$sign" "$5" "$3" "$mark"
}

# --- tools -----------------------------------------------------------------------------------------
if ! command -v h2load >/dev/null; then
    say "installing h2load (nghttp2-client)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q nghttp2-client >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q nghttp2-client >/dev/null; }
fi
for tool in h2load curl python3; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    say "cargo build --profile $PROFILE"
    (cd "$ROOT" && cargo build --locked --profile "$PROFILE" --quiet)
fi
[[ -x $BIN ]] || die "$BIN not built"

for port in "$PORT" "$METRICS_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "127.0.0.1:$port is already in use; set PORT / METRICS_PORT"
    fi
done

say "certificates and fixtures in $WORK"
"$BIN" certs --out "$WORK/certs" --dns localhost --ip 127.0.0.1 >/dev/null
python3 "$ROOT/bench/make-fixtures.py" --out "$WORK/n" --service-accounts "$N"
python3 "$ROOT/bench/make-fixtures.py" --out "$WORK/big" --service-accounts "$BIG" | grep yaml
REVIEW=$WORK/n/admission-review.json

# start_server DIR: starts serve on DIR/service-accounts.yaml, sets SERVER_PID and READY_MS.
start_server() {
    local out
    out=$("${TOOL[@]}" start "$WORK/server.log" -- "${SERVER_CPU[@]}" "$BIN" serve \
        --tls-cert "$WORK/certs/tls.crt" --tls-key "$WORK/certs/tls.key" \
        --service-accounts-file "$1/service-accounts.yaml" \
        --bind-address 127.0.0.1 --port "$PORT" --metrics-port "$METRICS_PORT" \
        --log-level warn) || { tail -20 "$WORK/server.log" >&2; die "server did not start"; }
    read -r SERVER_PID READY_MS <<<"$out"
}

stop_server() {
    kill "$SERVER_PID"
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && { kill -9 "$SERVER_PID"; sleep 0.2; }
    SERVER_PID=
SERVER_CPU=() CLIENT_CPU=()
if [[ ${PIN:-0} == 1 ]]; then
    command -v taskset >/dev/null || { echo "load.sh: PIN=1 needs taskset" >&2; exit 1; }
    SERVER_CPU=(taskset -c 0) CLIENT_CPU=(taskset -c 1)
fi
}

# h2 ARGS...: h2load over TLS + HTTP/2 POSTing the fixture; output to $WORK/h2load.out.
h2() {
    timeout 600 "${CLIENT_CPU[@]}" h2load -d "$REVIEW" -H 'content-type: application/json' "$@" "$URL" \
        >"$WORK/h2load.out" 2>&1 || { cat "$WORK/h2load.out" >&2; die "h2load failed"; }
    grep -qi 'application protocol: h2' "$WORK/h2load.out" || die "h2load did not negotiate h2"
    local total ok
    read -r total ok < <(awk '/^requests:/ {print $2, $8}' "$WORK/h2load.out")
    [[ $total == "$ok" && $total -gt 0 ]] || { cat "$WORK/h2load.out" >&2; die "not every request succeeded"; }
    grep -q "status codes: $total 2xx" "$WORK/h2load.out" || { cat "$WORK/h2load.out" >&2; die "non-2xx answers"; }
}
h2_field() { # the h2load summary line starting with $1
    grep -E "^$1" "$WORK/h2load.out" | head -1
}

# idle_check SECONDS: how much CPU other processes use now (the figures assume an idle machine).
idle_check() {
    local b0 t0 b1 t1
    read -r b0 t0 < <("${TOOL[@]}" busy)
    sleep "$1"
    read -r b1 t1 < <("${TOOL[@]}" busy)
    python3 -c "import sys; b=(int(sys.argv[3])-int(sys.argv[1]))/(int(sys.argv[4])-int(sys.argv[2]))*100
print(f'   CPUs {b:.0f}% busy over {sys.argv[5]} s before the run' + ('  (something else is running: figures will be pessimistic)' if b > 10 else ''))" "$b0" "$t0" "$b1" "$t1" "$1"
}
# children_cpu FILE: user+sys µs used so far by this shell's finished children (h2load and the
# helpers), from the `times` output in FILE (`times` must run in this shell, not a subshell).
children_cpu() {
    tail -1 "$1" | python3 -c "import re,sys; print(sum(round((int(m)*60+float(s))*1e6) for m,s in re.findall(r'(\d+)m([\d.]+)s', sys.stdin.read())))"
}

# phase_begin / phase_end: CPU of the server, of the clients (h2load and helpers) and of everything
# else during a measured phase. phase_end prints it, sets PHASE_CPU (server µs) and OTHER (% of
# the machine the rest of the system took: near 0 on an idle machine).
phase_begin() {
    P_CPU0=$("${TOOL[@]}" cpu "$SERVER_PID")
    read -r P_BUSY0 P_TOTAL0 < <("${TOOL[@]}" busy)
    times >"$WORK/times0"
}
phase_end() {
    times >"$WORK/times1"
    local busy1 total1 cpu1 kids0 kids1 line
    read -r busy1 total1 < <("${TOOL[@]}" busy)
    cpu1=$("${TOOL[@]}" cpu "$SERVER_PID")
    kids0=$(children_cpu "$WORK/times0") kids1=$(children_cpu "$WORK/times1")
    PHASE_CPU=$((cpu1 - P_CPU0))
    line=$(python3 -c "import sys; s,k,b,t,n=(int(x) for x in sys.argv[1:]); w=t/n; o=max(0,b-s-k)
print(f'{o/t*100:.0f}', f'   CPU ({w/1e6:.1f} s wall x {n} CPUs): server {s/1e6:.2f} s ({s/w*100:.0f}% of a CPU), '
      f'clients {k/1e6:.2f} s ({k/w*100:.0f}%), others {o/1e6:.2f} s ({o/t*100:.0f}% of the machine), idle {(t-b)/1e6:.2f} s')" \
        "$PHASE_CPU" $((kids1 - kids0)) $((busy1 - P_BUSY0)) $((total1 - P_TOTAL0)) "$(nproc)")
    OTHER=${line%% *}
    echo "${line#* }"
    (( OTHER <= 10 )) || echo "   !! other processes were busy: the figures of this phase are pessimistic"
}

say "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), THP $(grep -o '\[[a-z]*\]' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo n/a), MIMALLOC_ALLOW_THP=${MIMALLOC_ALLOW_THP:-unset}, PIN=${PIN:-0}"
idle_check 2

# --- N ServiceAccounts ---------------------------------------------------------------------------------
say "serve with $N ServiceAccounts"
start_server "$WORK/n"
echo "   pid $SERVER_PID"
record "ready after start ($N SAs)" "$READY_MS" ms le 50
read -r rss hwm < <("${TOOL[@]}" mem "$SERVER_PID")
echo "   RSS when ready: $((rss / 1024)) MiB (VmRSS ${rss} kB, VmHWM ${hwm} kB)"

say "one real admission (curl, HTTP/2)"
curl -sS --max-time 5 --http2 --cacert "$WORK/certs/ca.crt" -H 'content-type: application/json' \
    --data-binary "@$REVIEW" -o "$WORK/response.json" -w '   HTTP %{http_code} over HTTP/%{http_version}, %{size_download} bytes\n' "$URL"
grep -q '"allowed":true' "$WORK/response.json" || die "response does not contain \"allowed\":true"
grep -q '"patch":"' "$WORK/response.json" || die "response has no patch"
"${TOOL[@]}" check-response "$WORK/response.json"

say "warm-up: 20000 requests, -c 16 -m 10"
h2 -n 20000 -c 16 -m 10
h2_field 'finished in'

say "saturation: $REQUESTS requests, h2load -c 16 -m 10 (TLS, HTTP/2)"
phase_begin
h2 -n "$REQUESTS" -c 16 -m 10
phase_end
h2_field 'finished in'
h2_field 'time for request'
rps=$(awk '/^finished in/ {print $4}' "$WORK/h2load.out")
cpu_per_req=$(python3 -c "print(f'{$PHASE_CPU / $REQUESTS:.1f}')")
record "saturated throughput" "$rps" req/s ge 25000
record "server CPU per admission at saturation" "$cpu_per_req" us le 40

say "single request: $SINGLE_REQUESTS requests, -c 1 -m 1"
rm -f "$WORK"/single.log
phase_begin
h2 -n "$SINGLE_REQUESTS" -c 1 -m 1 --log-file="$WORK/single.log"
phase_end
h2_field 'time for request'
read -r count p50 p99 max bad < <("${TOOL[@]}" percentiles "$WORK/single.log")
echo "   $count requests: p50 $p50 ms, p99 $p99 ms, max $max ms"
record "single-request p50" "$p50" ms le 0.5
record "single-request p99" "$p99" ms le 0.5

say "paced: 1000 req/s for ${PACED_SECONDS}s, h2load -c 4 --rps 250 (HTTP/2)"
# h2load paces each client by a timer and sends what is due in bursts (about 8 requests every
# 8 ms here), so its p99 includes queueing behind the rest of the burst.
rm -f "$WORK"/paced.log
phase_begin
h2 -c 4 --rps 250 -n $((1000 * PACED_SECONDS)) --log-file="$WORK/paced.log"
phase_end
h2_field 'finished in'
read -r count p50 p99 max bad < <("${TOOL[@]}" percentiles "$WORK/paced.log")
echo "   $count requests: p50 $p50 ms, p99 $p99 ms, max $max ms"
record "p99 at paced 1000 req/s (h2load, bursty)" "$p99" ms le 1

say "paced: 1000 req/s for ${PACED_SECONDS}s, evenly spaced, 4 TLS HTTP/1.1 connections (python client)"
phase_begin
"${CLIENT_CPU[@]}" "${TOOL[@]}" paced "$PORT" "$REVIEW" "$WORK/certs/ca.crt" 1000 "$PACED_SECONDS" 4 \
    >"$WORK/paced.out"
phase_end
read -r count p50 p99 max bad late <"$WORK/paced.out"
[[ $bad == 0 ]] || die "$bad non-2xx answers"
echo "   $count requests: p50 $p50 ms, p99 $p99 ms, max $max ms ($late sent over 1 ms late)"
record "p99 at even 1000 req/s (python client)" "$p99" ms le 1

OTHER=
read -r rss hwm < <("${TOOL[@]}" mem "$SERVER_PID")
echo "   VmRSS ${rss} kB, VmHWM ${hwm} kB after the runs"
record "RSS after the runs ($N SAs)" "$(python3 -c "print(f'{$rss / 1024:.1f}')")" MiB le 20
record "peak RSS ($N SAs, start-up included)" "$(python3 -c "print(f'{$hwm / 1024:.1f}')")" MiB le 20
curl -sS --max-time 5 "http://127.0.0.1:$METRICS_PORT/metrics" \
    | grep -E '^irsa_webhook_(admissions_total\{decision="mutated"\}|serviceaccounts |annotated_serviceaccounts )' \
    | sed 's/^/   /'
stop_server

# --- BIG ServiceAccounts -------------------------------------------------------------------------------
say "serve with $BIG ServiceAccounts"
start_server "$WORK/big"
echo "   ready after ${READY_MS} ms"
read -r rss hwm < <("${TOOL[@]}" mem "$SERVER_PID")
echo "   after ready: VmRSS ${rss} kB, VmHWM ${hwm} kB"
record "RSS when ready ($BIG SAs)" "$(python3 -c "print(f'{$rss / 1024:.1f}')")" MiB le 40
h2 -n 50000 -c 16 -m 10
h2_field 'finished in'
read -r rss hwm < <("${TOOL[@]}" mem "$SERVER_PID")
echo "   after 50000 requests: VmRSS ${rss} kB, VmHWM ${hwm} kB"
record "RSS after load ($BIG SAs)" "$(python3 -c "print(f'{$rss / 1024:.1f}')")" MiB le 40
record "peak RSS ($BIG SAs)" "$(python3 -c "print(f'{$hwm / 1024:.1f}')")" MiB le 40
stop_server

say "summary ($(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ), fixture $(wc -c <"$REVIEW") bytes)"
printf '   %s\n' "${SUMMARY[@]}"
