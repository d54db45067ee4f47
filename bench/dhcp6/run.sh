#!/usr/bin/env bash
# DHCPv6 first contact (make bench-dhcp6): DLS's dhcp6 plugin against
# kea-dhcp6, same machine, same namespaces, same run, modelled on
# bench/dhcp's -first mode (bench/dhcp/first.sh). A ladder of offered rates
# (-rates, default 1000,2000,4000,8000,16000), each rung against BOTH
# servers started fresh (empty lease store) for that rung alone, so every
# client perfdhcp -6 draws is one the server has never seen: the cost of a
# lab's first morning, on IPv6.
#
# perfdhcp -6 (package kea-admin) sends 4-way exchanges (SOLICIT-ADVERTISE,
# REQUEST-REPLY) to ff02::1:2 on the client namespace's veth, from its
# link-local address, one DUID-LLT per client out of CLIENTS (-R 50000).
# DLS stores each lease in its SQLite store (synchronous=FULL: fsynced)
# before the Reply; Kea in its memfile (multi-threading on; the CSV is
# written, never fsynced). No client is declared to DLS (none known: every
# DUID is a stranger, as for Kea). A rung is clean when both exchanges lose
# < 1 % and perfdhcp reached >= 95 % of the offered rate.
#
# Needs root (network namespaces) and:
#   apt-get install -y kea-admin kea-dhcp6-server
# Flags: -rates R1,R2,... -secs N (a rung's length, default 10).
# Knobs (environment): CLIENTS=50000 PIN=1 (servers on CPU 1, perfdhcp on
# CPU 0, when there are 2+ CPUs).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:/usr/sbin:/sbin:$PATH"

CLIENTS=${CLIENTS:-50000} PIN=${PIN:-1}
RATES=1000,2000,4000,8000,16000 SECS=10
usage() { echo "usage: run.sh [-rates R1,R2,...] [-secs N]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    -rates) [ $# -ge 2 ] || usage; RATES=$2; shift ;;
    -secs) [ $# -ge 2 ] || usage; SECS=$2; shift ;;
    *) echo "run.sh: unknown argument $1" >&2; usage ;;
  esac
  shift
done
[[ $RATES =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "run.sh: -rates wants rates above 0 separated by commas, not $RATES" >&2; exit 2; }
[[ $SECS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: -secs wants a whole number of seconds, not $SECS" >&2; exit 2; }

[ "$(id -u)" = 0 ] || { echo "bench-dhcp6: needs root (network namespaces)"; exit 1; }
for tool in perfdhcp kea-dhcp6 ip; do
  command -v $tool >/dev/null || { echo "bench-dhcp6: $tool missing: apt-get install -y kea-admin kea-dhcp6-server"; exit 1; }
done

work=$(mktemp -d /tmp/dls-bench-dhcp6.XXXXXX)
srv=dlsb6-srv-$$ cli=dlsb6-cli-$$
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  ip netns del "$srv" 2>/dev/null || true
  ip netns del "$cli" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== build"
nice -n 15 go build -o "$work/bin/dls" ./core/cmd/dls
nice -n 15 go build -o "$work/bin/plugins/dls-protocol-dhcp6" ./plugins/protocol/dhcp6

echo "== namespaces $srv (fd00:99::1/64) and $cli (perfdhcp -6, link-local only)"
ip netns add "$srv"; ip netns add "$cli"
for n in "$srv" "$cli"; do
  ip netns exec "$n" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  ip netns exec "$n" ip link set lo up
done
ip link add "vb6$$s" type veth peer name "vb6$$c"
ip link set "vb6$$s" netns "$srv" name vsrv; ip link set "vb6$$c" netns "$cli" name vcli
ip netns exec "$srv" ip addr add fd00:99::1/64 dev vsrv nodad
ip netns exec "$srv" ip link set vsrv up; ip netns exec "$cli" ip link set vcli up
for _ in $(seq 50); do
  ip netns exec "$cli" ip -6 addr show dev vcli scope link | grep -q fe80:: &&
    ip netns exec "$srv" ip -6 addr show dev vsrv scope link | grep -q fe80:: && break
  sleep 0.1
done

pin_server=() pin_load=()
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  pin_server=(taskset -c 1) pin_load=(taskset -c 0)
fi

# The pool: fd00:99::1:0 - fd00:99::ffff:ffff, far more than CLIENTS.
cat > "$work/dls.hcl" <<HCL
data_dir   = "$work/dls-var"
plugin_dir = "$work/bin/plugins"
http {
  listen = "127.0.0.1:9180"
}
protocol "dhcp6" "lan6" {
  config {
    interface = "vsrv"
    server_ip = "fd00:99::1"
    pool {
      name       = "bench"
      start      = "fd00:99::1:0"
      end        = "fd00:99::ffff:ffff"
      lease_time = "1h"
    }
  }
}
HCL
cat > "$work/kea.json" <<JSON
{ "Dhcp6": {
    "interfaces-config": { "interfaces": [ "vsrv" ] },
    "lease-database": { "type": "memfile", "persist": true, "name": "$work/kea-leases.csv" },
    "multi-threading": { "enable-multi-threading": true },
    "server-id": { "type": "LL", "persist": false },
    "preferred-lifetime": 3600,
    "valid-lifetime": 3600,
    "subnet6": [ { "id": 1, "subnet": "fd00:99::/64", "interface": "vsrv",
                   "pools": [ { "pool": "fd00:99::1:0 - fd00:99::ffff:ffff" } ] } ],
    "loggers": [ { "name": "kea-dhcp6", "output_options": [ { "output": "$work/kea.log" } ], "severity": "WARN" } ]
} }
JSON

start_dls() {
  rm -rf "$work/dls-var"
  ip netns exec "$srv" "${pin_server[@]}" "$work/bin/dls" serve --config "$work/dls.hcl" >"$work/dls.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    ip netns exec "$srv" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9180 && printf "GET /readyz HTTP/1.0\r\n\r\n" >&3 && head -1 <&3' 2>/dev/null | grep -q 200 && return
    sleep 0.2
  done
  echo "DLS did not start:"; cat "$work/dls.log"; exit 1
}
start_kea() {
  rm -f "$work"/kea-leases.csv*
  mkdir -p "$work/kea-run"
  KEA_PIDFILE_DIR="$work/kea-run" KEA_LOCKFILE_DIR="$work/kea-run" \
    ip netns exec "$srv" "${pin_server[@]}" kea-dhcp6 -c "$work/kea.json" >"$work/kea.out" 2>&1 &
  server_pid=$!
  sleep 2
  kill -0 "$server_pid" 2>/dev/null || { echo "kea-dhcp6 did not start:"; cat "$work/kea.out"; exit 1; }
}
# dls_errors: DLS's non-zero dls_dhcp6_errors_total and requests series,
# and its lease commits (count, average time, average batch), one line:
# why it dropped what it dropped, and what storing leases cost.
dls_errors() {
  ip netns exec "$srv" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9180 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' 2>/dev/null |
    awk '/^dls_dhcp6_errors_total/ && $2 > 0 { match($0, /reason="[^"]*"/); printf "%s=%s ", substr($0, RSTART + 8, RLENGTH - 9), $2 }
         /^dls_dhcp6_requests_total/ && $2 > 0 { match($0, /result="[^"]*",type="[^"]*"/); printf "%s=%s ", substr($0, RSTART, RLENGTH), $2 }
         /^dls_dhcp6_client_table_live/ { printf "table_live=%s ", $2 }
         /^dls_dhcp6_lease_commit_duration_seconds_sum/ { cs = $2 }
         /^dls_dhcp6_lease_commit_duration_seconds_count/ { cn = $2 }
         /^dls_dhcp6_lease_commit_batch_size_sum/ { bs = $2 }
         END { if (cn > 0) printf "commits=%d avg_commit_ms=%.1f avg_batch=%.1f", cn, 1000 * cs / cn, bs / cn; print "" }'
}
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  sleep 1
}

# perf_rung RATE: one perfdhcp -6 run of SECS seconds at RATE against the
# running server; prints "achieved sa_drop rr_drop sa_avg rr_avg sa_max
# rr_max" (rate in exchanges/s, drops in %, delays in ms; a figure perfdhcp
# did not give is "-", a drop it did not give 100).
perf_rung() {
  local out
  out=$(ip netns exec "$cli" "${pin_load[@]}" perfdhcp -6 -l vcli -r "$1" -R "$CLIENTS" -p "$SECS" 2>&1 || true)
  printf '### offered %s/s\n%s\n' "$1" "$out" >>"$work/perfdhcp.log"
  echo "$out" | awk '
    function num(v) { return v ~ /^[0-9.e+-]+$/ ? v : "-" }
    /^Rate: /                                  { rate = $2 }
    /^\*\*\*Statistics for: SOLICIT-ADVERTISE/ { x = "sa" }
    /^\*\*\*Statistics for: REQUEST-REPLY/     { x = "rr" }
    /^drops ratio:/ && x != ""                 { d[x] = $3 }
    /^avg delay:/ && x != ""                   { a[x] = $3 }
    /^max delay:/ && x != ""                   { m[x] = $3 }
    END {
      ds = num(d["sa"]); dr = num(d["rr"])
      printf "%s %s %s %s %s %s %s\n", (rate == "" ? 0 : rate), (ds == "-" ? 100 : ds), (dr == "-" ? 100 : dr),
        num(a["sa"]), num(a["rr"]), num(m["sa"]), num(m["rr"])
    }'
}

# clean RATE ACHIEVED SA_DROP RR_DROP: the rung's verdict.
clean() {
  awk -v r="$1" -v a="$2" -v d="$3" -v q="$4" 'BEGIN { exit !(d < 1 && q < 1 && a >= 0.95 * r) }'
}

echo "== first contact, DHCPv6: DLS (SQLite store, fsync per lease batch) and Kea $(kea-dhcp6 -v) (memfile, no fsync)"
echo "   ladder ${RATES//,/ }/s, ${SECS} s a rung, perfdhcp -6 clients 0..$((CLIENTS - 1)) in order, both servers fresh each rung"
declare -A best=([DLS]=0 [Kea]=0) top=([DLS]=0 [Kea]=0) broken=([DLS]=0 [Kea]=0)
rows=""
for rate in ${RATES//,/ }; do
  for server in DLS Kea; do
    if [ "$server" = DLS ]; then start_dls; else start_kea; fi
    read -r achieved ds dr as ar ms mr < <(perf_rung "$rate")
    [ "$server" = DLS ] && echo "    DLS at $rate/s: $(dls_errors)"
    stop_server
    if clean "$rate" "$achieved" "$ds" "$dr"; then
      verdict=clean
      top[$server]=$rate
      [ "${broken[$server]}" = 1 ] || best[$server]=$rate
    else
      verdict=no
      broken[$server]=1
    fi
    rows+=$(printf '| %6d | %-3s | %7.3f | %7.3f | %9.1f | %s / %s | %s / %s | %-5s |' \
      "$rate" "$server" "$ds" "$dr" "$achieved" "$as" "$ar" "$ms" "$mr" "$verdict")$'\n'
    printf '  %-3s offered %6d/s  achieved %9.1f/s  drops SA %7.3f %% RR %7.3f %%  avg %s/%s ms  max %s/%s ms  %s\n' \
      "$server" "$rate" "$achieved" "$ds" "$dr" "$as" "$ar" "$ms" "$mr" "$verdict"
  done
done
echo
echo "### DHCPv6 first contact"
echo
echo "| offered/s | server | SA drops % | RR drops % | achieved/s | avg delay SA / RR ms | max delay SA / RR ms | clean |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s' "$rows"
echo
printf 'highest clean rung: DLS %d/s, Kea %d/s; ' "${top[DLS]}" "${top[Kea]}"
awk -v a="${top[DLS]}" -v b="${top[Kea]}" 'BEGIN { if (b > 0) printf "DLS/Kea %.2f\n", a / b; else print "DLS/Kea: Kea had no clean rung" }'
printf 'highest clean rung with every rung below it clean: DLS %d/s, Kea %d/s; ' "${best[DLS]}" "${best[Kea]}"
awk -v a="${best[DLS]}" -v b="${best[Kea]}" 'BEGIN { if (b > 0) printf "DLS/Kea %.2f\n", a / b; else print "DLS/Kea: Kea had none" }'
