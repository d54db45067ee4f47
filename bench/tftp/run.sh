#!/usr/bin/env bash
# make bench-tftp: DLS's tftp plugin against tftp-hpa (in.tftpd), serving
# the same directory, fetched by the same clients, in the same run,
# interleaved. DLS runs as it does in production: the plugin under
# `dls serve` (which also serves the same files at /boot/files/ over HTTP,
# for the HTTP-vs-TFTP figure). Every fetch is compared with the original.
#
# Servers run on one CPU and clients on another (taskset), as they would
# on separate machines: on a small VM, where the scheduler happens to put
# a lock-step client and its server (same core, or two) changes a round
# trip from ~15 to ~50 us and makes unpinned runs bimodal. Both servers get
# the same placement.
#
# Needs: Debian packages tftpd-hpa, atftp, curl (apt-get install -y ...).
# Env: RUNS (timed runs per figure, median reported; default 5),
#      CLIENTS (boot-storm clients, default 200), HPA_PORT, DLS_PORT, HTTP_PORT,
#      SERVER_CPU, CLIENT_CPU (default 1 and 0 with two CPUs or more; "" to not pin).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:$PATH"

RUNS=${RUNS:-5}
CLIENTS=${CLIENTS:-200}
HPA_PORT=${HPA_PORT:-16969}
DLS_PORT=${DLS_PORT:-16970}
HTTP_PORT=${HTTP_PORT:-19181}

if [ "$(nproc)" -ge 2 ]; then
  SERVER_CPU=${SERVER_CPU-1}
  CLIENT_CPU=${CLIENT_CPU-0}
else
  SERVER_CPU=${SERVER_CPU-}
  CLIENT_CPU=${CLIENT_CPU-}
fi
on_server=()
on_client=()
[ -n "$SERVER_CPU" ] && on_server=(taskset -c "$SERVER_CPU")
[ -n "$CLIENT_CPU" ] && on_client=(taskset -c "$CLIENT_CPU")

for tool in in.tftpd atftp curl; do
  command -v "$tool" >/dev/null || { echo "bench-tftp: $tool missing (apt-get install -y tftpd-hpa atftp curl)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/dls-bench-tftp.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== build"
mkdir -p "$work/plugins" "$work/root"
go build -o "$work/dls" ./core/cmd/dls
go build -o "$work/plugins/dls-protocol-tftp" ./plugins/protocol/tftp
go build -o "$work/plugins/dls-storage-dir" ./plugins/storage/dir
go build -o "$work/load" ./bench/tftp/load

root="$work/root"
head -c $((64 << 20)) /dev/urandom >"$root/big.bin"
head -c $((1 << 20)) /dev/urandom >"$root/1m.bin"
head -c $((1 << 20)) /dev/zero >"$work/lab.img" # a client's image, for its boot script

echo "== servers"
"${on_server[@]}" in.tftpd -L -a "127.0.0.1:$HPA_PORT" -s "$root" &
pids+=($!)
cat >"$work/dls.hcl" <<HCL
data_dir   = "$work/var"
plugin_dir = "$work/plugins"
http {
  listen = "127.0.0.1:$HTTP_PORT"
}
boot {
  iqn_prefix = "iqn.2026-11.io.dls"
  files      = "$root"
}
database "sqlite" {}
storage "dir" "local" {
  config {
    root = "storage"
  }
}
image "lab" {
  storage = "local"
  source  = "$work/lab.img"
}
client "pc-01" {
  mac   = "52:54:00:12:34:56"
  image = "lab"
}
protocol "tftp" "boot" {
  config {
    listen = "127.0.0.1:$DLS_PORT"
    root   = "$root"
  }
}
HCL
"${on_server[@]}" "$work/dls" serve --config "$work/dls.hcl" >"$work/dls.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null || { echo "dls did not get ready:"; cat "$work/dls.log"; exit 1; }
echo "$(in.tftpd -V 2>&1 | head -1) on :$HPA_PORT; dls on :$DLS_PORT (tftp), :$HTTP_PORT (http)"
echo "$(nproc) CPUs; servers on CPU ${SERVER_CPU:-any}, clients on CPU ${CLIENT_CPU:-any}"

# timed OUT EXPECT CMD...: run CMD, check OUT against EXPECT, print seconds.
timed() {
  local out=$1 expect=$2
  shift 2
  rm -f "$out"
  local s e
  s=$(date +%s.%N)
  "${on_client[@]}" "$@" >/dev/null 2>"$work/err" || { echo "FAILED: $*" >&2; cat "$work/err" >&2; exit 1; }
  e=$(date +%s.%N)
  cmp -s "$out" "$expect" || { echo "FAILED: $* (output differs)" >&2; exit 1; }
  awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f\n", e - s }'
}
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
mibs() { awk -v t="$1" -v b="$2" 'BEGIN { printf "%.1f", b / 1048576 / t }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

big="$root/big.bin"
out="$work/out"
size=$(stat -c %s "$big")
declare -A T
run() { # run NAME CMD... : RUNS timed runs, median into T[NAME]
  local name=$1
  shift
  local ts=()
  for _ in $(seq "$RUNS"); do ts+=("$(timed "$out" "$big" "$@")"); done
  T[$name]=$(median "${ts[@]}")
  printf '  %-34s median %6.3f s  %7s MiB/s   runs: %s\n' "$name" "${T[$name]}" "$(mibs "${T[$name]}" "$size")" "${ts[*]}"
}
pair() { # pair NAME ARGS-with-PORT... : the same client against both servers, interleaved
  local name=$1
  shift
  local h=() d=()
  for _ in $(seq "$RUNS"); do
    h+=("$(timed "$out" "$big" "${@//PORT/$HPA_PORT}")")
    d+=("$(timed "$out" "$big" "${@//PORT/$DLS_PORT}")")
  done
  T["hpa $name"]=$(median "${h[@]}")
  T["dls $name"]=$(median "${d[@]}")
  printf '  %-34s median %6.3f s  %7s MiB/s   runs: %s\n' "tftp-hpa $name" "${T["hpa $name"]}" "$(mibs "${T["hpa $name"]}" "$size")" "${h[*]}"
  printf '  %-34s median %6.3f s  %7s MiB/s   runs: %s\n' "dls $name" "${T["dls $name"]}" "$(mibs "${T["dls $name"]}" "$size")" "${d[*]}"
}

echo
echo "== (a) 64 MiB, blksize 1468, lock-step ($RUNS runs each, interleaved)"
pair "curl 1468" curl -sS --tftp-blksize 1468 -o "$out" "tftp://127.0.0.1:PORT/big.bin"
pair "atftp 1468" atftp --option "blksize 1468" -g -r big.bin -l "$out" 127.0.0.1 PORT

echo
echo "== (b) 64 MiB, blksize 1468, windowsize 16 (tftp-hpa 5.2 does not grant windowsize: lock-step)"
pair "atftp 1468 w16" atftp --option "blksize 1468" --option "windowsize 16" -g -r big.bin -l "$out" 127.0.0.1 PORT

echo
echo "== (c) $CLIENTS concurrent clients x 1 MiB, blksize 1468 (pin/tftp client)"
"${on_client[@]}" "$work/load" -addr "127.0.0.1:$HPA_PORT" -file 1m.bin -want "$root/1m.bin" -n "$CLIENTS" | sed 's/^/  tftp-hpa  /' | tee "$work/storm-hpa"
"${on_client[@]}" "$work/load" -addr "127.0.0.1:$DLS_PORT" -file 1m.bin -want "$root/1m.bin" -n "$CLIENTS" | sed 's/^/  dls       /' | tee "$work/storm-dls"

echo
echo "== (d) HTTP /boot/files from the same dls host, curl"
run "http 64 MiB" curl -sS -o "$out" "http://127.0.0.1:$HTTP_PORT/boot/files/big.bin"
half=$((size / 2))
tail -c "$half" "$big" >"$work/half"
t=$(timed "$out" "$work/half" curl -sS -r "$half-" -o "$out" "http://127.0.0.1:$HTTP_PORT/boot/files/big.bin")
code=$(curl -s -r "$half-" -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$HTTP_PORT/boot/files/big.bin")
echo "  http Range: bytes=$half-              $t s, status and bytes: $code"
head -c 1048576 "$big" | tail -c 1024 >"$work/slice"
t=$(timed "$out" "$work/slice" curl -sS -r 1047552-1048575 -o "$out" "http://127.0.0.1:$HTTP_PORT/boot/files/big.bin")
echo "  http Range: bytes=1047552-1048575     $t s, identical"

echo
echo "== (e) the per-client iPXE script, by HTTP and by TFTP (curl, 100 fetches each)"
http_script="http://127.0.0.1:$HTTP_PORT/boot/52-54-00-12-34-56.ipxe"
tftp_script="tftp://127.0.0.1:$DLS_PORT/mac/52-54-00-12-34-56.ipxe"
curl -sSf -o "$work/script.http" "$http_script"
curl -sSf -o "$work/script.tftp" "$tftp_script"
cmp -s "$work/script.http" "$work/script.tftp" || { echo "FAILED: HTTP and TFTP scripts differ" >&2; diff "$work/script.http" "$work/script.tftp" >&2; exit 1; }
sed 's/^/  | /' "$work/script.tftp"
head -c 7 "$work/script.http" >"$work/script.head"
t=$(timed "$out" "$work/script.head" curl -sS -r 0-6 -o "$out" "$http_script")
echo "  http Range: bytes=0-6 of the script: identical ($t s)"
for via in http tftp; do
  url=$http_script
  [ "$via" = tftp ] && url=$tftp_script
  s=$(date +%s.%N)
  for _ in $(seq 100); do "${on_client[@]}" curl -sSf -o /dev/null "$url"; done
  e=$(date +%s.%N)
  awk -v s="$s" -v e="$e" -v v="$via" 'BEGIN { printf "  %-4s script: %.2f ms per fetch (curl process included)\n", v, (e - s) * 10 }'
done
curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | grep -E '^dls_tftp_(requests|errors|retransmits)_total' | grep -v ' 0$' | sed 's/^/  /'

storm() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" "$2"; }
echo
echo "== ratios (tftp-hpa time / dls time: above 1 means dls is faster)"
printf '  (a) lock-step 1468, curl:            %sx   (aim >= 1.0)\n' "$(ratio "${T["hpa curl 1468"]}" "${T["dls curl 1468"]}")"
printf '  (a) lock-step 1468, atftp:           %sx   (aim >= 1.0)\n' "$(ratio "${T["hpa atftp 1468"]}" "${T["dls atftp 1468"]}")"
printf '  (b) dls windowsize 16 vs tftp-hpa lock-step (atftp): %sx   (aim >= 4)\n' "$(ratio "${T["hpa atftp 1468"]}" "${T["dls atftp 1468 w16"]}")"
printf '  (c) %s clients, total:               %sx   (tftp-hpa %ss, dls %ss; all succeeded)\n' "$CLIENTS" \
  "$(ratio "$(storm total "$work/storm-hpa")" "$(storm total "$work/storm-dls")")" "$(storm total "$work/storm-hpa")" "$(storm total "$work/storm-dls")"
printf '  (c) %s clients, p99 per transfer:    %sx   (tftp-hpa %ss, dls %ss)\n' "$CLIENTS" \
  "$(ratio "$(storm p99 "$work/storm-hpa")" "$(storm p99 "$work/storm-dls")")" "$(storm p99 "$work/storm-hpa")" "$(storm p99 "$work/storm-dls")"
printf '  (d) HTTP vs dls TFTP lock-step:      %sx;  vs dls TFTP windowsize 16: %sx\n' \
  "$(ratio "${T["dls curl 1468"]}" "${T["http 64 MiB"]}")" "$(ratio "${T["dls atftp 1468 w16"]}" "${T["http 64 MiB"]}")"
