#!/usr/bin/env bash
# DHCP throughput: DLS against kea-dhcp4, same machine, same namespaces,
# same run. perfdhcp (package kea-admin) plays a relay with 50000 distinct
# clients and 4-way exchanges (DISCOVER-OFFER-REQUEST-ACK); the rate steps
# up until more than 1 % of either exchange is lost. Each server starts
# from an empty lease store, serves a pool large enough for every client,
# and stores its leases before it ACKs: DLS in its SQLite state store
# (synchronous=FULL: fsynced before the ACK), Kea in its memfile
# (multi-threading on; the CSV is written, never fsynced).
#
# PG=1 adds a durable pair: DLS on its PostgreSQL store and Kea on its
# PostgreSQL lease backend, both in one throwaway cluster (fsync and
# synchronous_commit on, trust auth on the server namespace's loopback)
# that the run starts and deletes; needs postgresql. Rates for that pair
# step from START_PG=500 by STEP_PG=500.
#
# -first: first contact instead of renewals (make bench-dhcp-first). A
# ladder of offered rates (-rates, default 1000,2000,4000,8000,16000,32000),
# each rung against BOTH servers started fresh (empty lease store) for that
# rung alone, perfdhcp's clients out of CLIENTS (-R 50000), in two
# variants: "unknown" (no client declared: every MAC is a stranger) and
# "declared" (-declared N, default 1000, of perfdhcp's MACs declared: DLS
# client blocks, Kea host reservations by hw-address; none leased). A rung
# is clean when both exchanges (DISCOVER-OFFER, REQUEST-ACK) lose < 1 % and
# perfdhcp reached >= 95 % of the offered rate. -secs N sets the step
# length (default 10), -variants unknown,declared picks variants.
# perfdhcp 2.2's -R numbers its clients in order (0, 1, 2, ... wrapping at
# CLIENTS: every MAC of a rung is new until the wrap); -random draws each
# exchange's MAC at random from the same CLIENTS MACs (perfdhcp -M). A smoke:
#   make bench-dhcp-first ARGS='-rates 1000,4000 -secs 3'
#
# Needs root (network namespaces) and: apt-get install -y kea-admin kea-dhcp4-server
# Knobs (environment): START=2000 STEP=1000 MAX=30000 SECONDS_PER_STEP=10
#   COLD=1 (-first: load DLS at /readyz, while it still makes the declared clients' clones)
#   CLIENTS=50000 PIN=1 (servers on CPU 1, perfdhcp on CPU 0, when there are 2+ CPUs)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:/usr/sbin:/sbin:$PATH"

START=${START:-2000} STEP=${STEP:-1000} MAX=${MAX:-30000}
SECS=${SECONDS_PER_STEP:-10} CLIENTS=${CLIENTS:-50000} PIN=${PIN:-1}
PG=${PG:-0}
MODE=renew RATES=1000,2000,4000,8000,16000,32000 DECLARED=1000 VARIANTS=unknown,declared RANDOM_MACS=0
usage() { echo "usage: run.sh [-first [-rates R1,R2,...] [-secs N] [-declared N] [-variants unknown,declared] [-random]]" >&2; exit 2; }
ladder_flags=
while [ $# -gt 0 ]; do
  case $1 in
    -first) MODE=first ;;
    -random) RANDOM_MACS=1 ladder_flags+=" $1" ;;
    -rates) [ $# -ge 2 ] || usage; RATES=$2 ladder_flags+=" $1"; shift ;;
    -secs) [ $# -ge 2 ] || usage; SECS=$2 ladder_flags+=" $1"; shift ;;
    -declared) [ $# -ge 2 ] || usage; DECLARED=$2 ladder_flags+=" $1"; shift ;;
    -variants) [ $# -ge 2 ] || usage; VARIANTS=$2 ladder_flags+=" $1"; shift ;;
    *) echo "run.sh: unknown argument $1" >&2; usage ;;
  esac
  shift
done
[ "$MODE" = first ] || [ -z "$ladder_flags" ] || { echo "run.sh:$ladder_flags: only with -first (the renewal mode takes START, STEP, MAX from the environment)" >&2; exit 2; }
[[ $RATES =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "run.sh: -rates wants rates above 0 separated by commas, not $RATES" >&2; exit 2; }
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: -secs wants a whole number of seconds, not $SECS" >&2; exit 2; }
[[ $DECLARED =~ ^[0-9]+$ ]] && [ "$DECLARED" -le 65536 ] && [ "$DECLARED" -le "$CLIENTS" ] ||
  { echo "run.sh: -declared wants 0..min(65536, CLIENTS), not $DECLARED" >&2; exit 2; }
for v in ${VARIANTS//,/ }; do
  case $v in unknown|declared) ;; *) echo "run.sh: -variants knows unknown and declared, not $v" >&2; exit 2 ;; esac
done

[ "$(id -u)" = 0 ] || { echo "bench-dhcp: needs root (network namespaces)"; exit 1; }
for tool in perfdhcp kea-dhcp4 ip; do
  command -v $tool >/dev/null || { echo "bench-dhcp: $tool missing: apt-get install -y kea-admin kea-dhcp4-server"; exit 1; }
done

work=$(mktemp -d /tmp/dls-bench-dhcp.XXXXXX)
srv=dlsb-srv-$$ cli=dlsb-cli-$$
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  [ -n "${pg_data:-}" ] && runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -m immediate stop >/dev/null 2>&1 || true
  ip netns del "$srv" 2>/dev/null || true
  ip netns del "$cli" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== build"
nice -n 15 go build -o "$work/bin/dls" ./core/cmd/dls
nice -n 15 go build -o "$work/bin/plugins/dls-protocol-dhcp" ./plugins/protocol/dhcp
if [ "$MODE" = first ]; then # the declared variant's clients need an image, on a storage
  nice -n 15 go build -o "$work/bin/plugins/dls-storage-dir" ./plugins/storage/dir
fi

echo "== namespaces $srv (10.99.0.1/16) and $cli (perfdhcp, 10.99.0.2/16)"
ip netns add "$srv"; ip netns add "$cli"
ip link add "vb$$s" type veth peer name "vb$$c"
ip link set "vb$$s" netns "$srv" name vsrv; ip link set "vb$$c" netns "$cli" name vcli
ip netns exec "$srv" ip addr add 10.99.0.1/16 dev vsrv
ip netns exec "$cli" ip addr add 10.99.0.2/16 dev vcli
for n in "$srv" "$cli"; do ip netns exec "$n" ip link set lo up; done
ip netns exec "$srv" ip link set vsrv up; ip netns exec "$cli" ip link set vcli up

pin_server=() pin_load=()
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  pin_server=(taskset -c 1) pin_load=(taskset -c 0)
fi

# The pool: 10.99.1.0 - 10.99.255.250, 65000 addresses for 50000 clients.
cat > "$work/dls.hcl" <<HCL
data_dir   = "$work/dls-var"
plugin_dir = "$work/bin/plugins"
http {
  listen = "127.0.0.1:9180"
}
protocol "dhcp" "lan" {
  config {
    interface = "vsrv"
    server_ip = "10.99.0.1"
    pool {
      name       = "bench"
      start      = "10.99.1.0"
      end        = "10.99.255.250"
      netmask    = "255.255.0.0"
      router     = "10.99.0.1"
      lease_time = "1h"
    }
  }
}
HCL
cat > "$work/kea.json" <<JSON
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "vsrv" ] },
    "lease-database": { "type": "memfile", "persist": true, "name": "$work/kea-leases.csv" },
    "multi-threading": { "enable-multi-threading": true },
    "valid-lifetime": 3600,
    "subnet4": [ { "id": 1, "subnet": "10.99.0.0/16",
                   "pools": [ { "pool": "10.99.1.0 - 10.99.255.250" } ],
                   "option-data": [ { "name": "routers", "data": "10.99.0.1" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$work/kea.log" } ], "severity": "WARN" } ]
} }
JSON

start_dls() { # [CONFIG]
  rm -rf "$work/dls-var"
  ip netns exec "$srv" "${pin_server[@]}" "$work/bin/dls" serve --config "${1:-$work/dls.hcl}" >"$work/dls.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    ip netns exec "$srv" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9180 && printf "GET /readyz HTTP/1.0\r\n\r\n" >&3 && head -1 <&3' 2>/dev/null | grep -q 200 && return
    sleep 0.2
  done
  echo "DLS did not start:"; cat "$work/dls.log"; exit 1
}
# dls_volumes_ready: waits until the host has made every declared client's
# clone (dls_volumes_pending 0): a one-time cost of declaring clients, as
# Kea loads its reservations before it answers. COLD=1 skips the wait.
dls_volumes_ready() {
  [ "${COLD:-0}" = 1 ] && return
  local v
  for _ in $(seq 600); do
    v=$(ip netns exec "$srv" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9180 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' 2>/dev/null |
      awk '$1 == "dls_volumes_pending" { print $2 }')
    [ "$v" = 0 ] && return
    sleep 0.2
  done
  echo "DLS did not make its clients' volumes in 120 s:"; tail -20 "$work/dls.log"; exit 1
}
start_kea() { # [CONFIG]
  rm -f "$work"/kea-leases.csv*
  mkdir -p "$work/kea-run"
  KEA_PIDFILE_DIR="$work/kea-run" KEA_LOCKFILE_DIR="$work/kea-run" \
    ip netns exec "$srv" "${pin_server[@]}" kea-dhcp4 -c "${1:-$work/kea.json}" >"$work/kea.out" 2>&1 &
  server_pid=$!
  sleep 2
  kill -0 "$server_pid" 2>/dev/null || { echo "kea-dhcp4 did not start:"; cat "$work/kea.out"; exit 1; }
}
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  sleep 1
}

# step RATE: one perfdhcp run; prints "achieved worst_drop_percent".
step() {
  local out
  out=$(ip netns exec "$cli" "${pin_load[@]}" perfdhcp -4 -l vcli -r "$1" -R "$CLIENTS" -p "$SECS" 10.99.0.1 2>&1 || true)
  echo "$out" >>"$work/perfdhcp.log"
  local achieved drops
  achieved=$(echo "$out" | sed -n 's/^Rate: \([0-9.]*\) 4-way.*/\1/p' | head -1)
  drops=$(echo "$out" | sed -n 's/^drops ratio: \([0-9.e+-]*\) %.*/\1/p' | sort -g | tail -1)
  echo "${achieved:-0} ${drops:-100}"
}

# highest NAME: steps the rate up; sets BEST to the highest rate whose
# exchanges lost under 1 %.
highest() {
  local name=$1 rate=$START best=0 achieved drops
  while [ "$rate" -le "$MAX" ]; do
    read -r achieved drops < <(step "$rate")
    printf '  %-4s offered %6d/s  achieved %9.1f/s  worst drops %7.3f %%\n' "$name" "$rate" "$achieved" "$drops"
    if awk -v d="$drops" 'BEGIN { exit !(d < 1) }'; then
      best=$rate
      rate=$((rate + STEP))
    else
      break
    fi
  done
  # One half step between the last pass and the first failure.
  if [ "$best" -gt 0 ] && [ "$rate" -le "$MAX" ] && [ "$STEP" -ge 200 ]; then
    local mid=$((best + STEP / 2))
    read -r achieved drops < <(step "$mid")
    printf '  %-4s offered %6d/s  achieved %9.1f/s  worst drops %7.3f %%\n' "$name" "$mid" "$achieved" "$drops"
    awk -v d="$drops" 'BEGIN { exit !(d < 1) }' && best=$mid
  fi
  BEST=$best
}

if [ "$MODE" = first ]; then
  # shellcheck source=bench/dhcp/first.sh
  . bench/dhcp/first.sh
  first_contact
  exit 0
fi

echo "== DLS (dls serve + dls-protocol-dhcp, SQLite store)"
start_dls
highest DLS; dls_best=$BEST
stop_server

echo "== Kea $(kea-dhcp4 -v) (memfile, multi-threading)"
start_kea
highest Kea; kea_best=$BEST
stop_server

echo "== result: highest offered rate with < 1 % drops (perfdhcp, $CLIENTS clients, 4-way, ${SECS}s steps)"
printf 'DLS %6d exchanges/s\n' "$dls_best"
printf 'Kea %6d exchanges/s\n' "$kea_best"
awk -v a="$dls_best" -v b="$kea_best" 'BEGIN { if (b > 0) printf "ratio DLS/Kea %.2f\n", a / b; else print "ratio: Kea passed no step" }'

[ "$PG" = 1 ] || exit 0

# The durable pair: one PostgreSQL cluster in the server namespace.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pg_bin/initdb" ] || { echo "bench-dhcp: PG=1 needs postgresql (initdb)"; exit 1; }
pg_data=$(mktemp -d /tmp/dls-bench-pg.XXXXXX)
trap 'cleanup; rm -rf "$pg_data"' EXIT
chown postgres: "$pg_data"
runuser -u postgres -- "$pg_bin/initdb" -D "$pg_data" -A trust -U postgres >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; exit 1; }
ip netns exec "$srv" runuser -u postgres -- "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p 5433 -k $pg_data -c max_connections=200" start >/dev/null
pg_sql() { PGOPTIONS='-c client_min_messages=warning' ip netns exec "$srv" psql -h 127.0.0.1 -p 5433 -U postgres -qAt -v ON_ERROR_STOP=1 "$@"; }
pg_sql -c "CREATE DATABASE kea" -c "CREATE DATABASE dls"
ip netns exec "$srv" kea-admin db-init pgsql -h 127.0.0.1 -P 5433 -u postgres -p unused -n kea >"$work/kea-admin.log" 2>&1 || { cat "$work/kea-admin.log"; exit 1; }
{ cat "$work/dls.hcl"; printf 'database "postgres" {\n  dsn = "postgres://postgres@127.0.0.1:5433/dls?sslmode=disable"\n}\n'; } >"$work/dls-pg.hcl"
sed 's|"lease-database": { "type": "memfile", "persist": true, "name": "[^"]*" }|"lease-database": { "type": "postgresql", "name": "kea", "host": "127.0.0.1", "port": 5433, "user": "postgres", "password": "unused" }|' \
  "$work/kea.json" >"$work/kea-pg.json"
grep -q postgresql "$work/kea-pg.json" && grep -q 'database "postgres"' "$work/dls-pg.hcl" || { echo "bench-dhcp: could not write the PostgreSQL configs"; exit 1; }

START=${START_PG:-500} STEP=${STEP_PG:-500}
echo "== DLS (PostgreSQL store)"
start_dls "$work/dls-pg.hcl"
highest DLS; dls_pg=$BEST
stop_server

echo "== Kea (PostgreSQL lease backend, multi-threading)"
start_kea "$work/kea-pg.json"
highest Kea; kea_pg=$BEST
stop_server
leases=$(pg_sql -d kea -c "SELECT count(*) FROM lease4")

echo "== result, durable pair (PostgreSQL $("$pg_bin/postgres" -V | awk '{print $3}'), $leases leases in Kea's table at the end)"
printf 'DLS %6d exchanges/s\n' "$dls_pg"
printf 'Kea %6d exchanges/s\n' "$kea_pg"
awk -v a="$dls_pg" -v b="$kea_pg" 'BEGIN { if (b > 0) printf "ratio DLS/Kea %.2f\n", a / b; else print "ratio: Kea passed no step" }'
