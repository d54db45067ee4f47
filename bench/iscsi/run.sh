#!/usr/bin/env bash
# make bench-iscsi: DLS's iSCSI target against tgt, same backing file, same
# run, loopback only. qemu-img bench (QEMU's libiscsi driver) for
# sequential 1 MiB reads and writes and 4 KiB reads and writes at queue
# depth 32 (strided across the disk: qemu-img bench has no random mode),
# and libiscsi's iscsi-perf for sequential and random reads. Prints MB/s,
# IOPS and the DLS/tgt ratio of each. Root (tgtd); about two minutes.
#
#   SIZE=1G ROUNDS=3 bash bench/iscsi/run.sh
source "$(dirname "$0")/lib.sh"

SIZE="${SIZE:-1G}"
ROUNDS="${ROUNDS:-3}"
PERF_SECONDS="${PERF_SECONDS:-5}"
need qemu-img qemu-utils
if ! qemu-img --help | grep -qw iscsi && [ "$(id -u)" = 0 ]; then
	# QEMU's libiscsi driver is a module of qemu-block-extra.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-block-extra >/dev/null
fi
need iscsi-perf libiscsi-bin

IMG="$WORK/disk.img"
echo "== backing file: $SIZE of random data" >&2
head -c "$SIZE" /dev/urandom >"$IMG"
BYTES=$(stat -c %s "$IMG")
start_dls "$IMG"
start_tgt "$IMG"

# qemu_once URL SIZE COUNT ARGS...: seconds of one qemu-img bench run.
qemu_once() {
	local url=$1 size=$2 count=$3
	shift 3
	sync # no dirty pages of the previous run left to throttle this one
	local out
	out=$(qemu-img bench -f raw -t none -d 32 -s "$size" -c "$count" "$@" "$url" 2>&1) || { echo "$out" >&2; exit 1; }
	sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' <<<"$out"
}

# qemu_pair SIZE COUNT ARGS...: "MB/s IOPS" of DLS and of tgt, the best
# of $ROUNDS runs each, DLS and tgt taking turns.
qemu_pair() {
	local size=$1 count=$2
	shift 2
	local bd= bt= s
	for _ in $(seq "$ROUNDS"); do
		s=$(qemu_once "$DLS_URL" "$size" "$count" "$@")
		if [ -z "$bd" ] || awk -v a="$s" -v b="$bd" 'BEGIN{exit !(a<b)}'; then bd=$s; fi
		s=$(qemu_once "$TGT_URL" "$size" "$count" "$@")
		if [ -z "$bt" ] || awk -v a="$s" -v b="$bt" 'BEGIN{exit !(a<b)}'; then bt=$s; fi
	done
	local bytes
	bytes=$(numfmt --from=iec "$size")
	awk -v c="$count" -v b="$bytes" -v d="$bd" -v t="$bt" 'BEGIN{printf "%.1f %.0f|%.1f %.0f\n", c*b/d/1e6, c/d, c*b/t/1e6, c/t}'
}

# perf URL BLOCKS [-r]: iscsi-perf MB/s and IOPS, queue depth 32.
perf() {
	local url=$1 blocks=$2
	shift 2
	local out
	out=$(timeout $((PERF_SECONDS + 20)) iscsi-perf -m 32 -b "$blocks" -t "$PERF_SECONDS" "$@" "$url" 2>&1 | tr '\r' '\n')
	local line
	line=$(grep -o 'iops average [0-9]* ([0-9]* MB/s)' <<<"$out" | tail -1)
	[ -n "$line" ] || { echo "iscsi-perf: $out" >&2; exit 1; }
	awk '{gsub(/\(/,"",$4); print $4, $3}' <<<"$line"
}

STEP=$((7919 * 512)) # a prime number of sectors: strided, cache-unfriendly offsets
SEQ_COUNT=$((BYTES / 1048576 * 2))
RAND_COUNT=100000
# Warm up: page cache and both targets' first sessions.
qemu-img bench -f raw -d 32 -s 1M -c "$((BYTES / 1048576))" "$DLS_URL" >/dev/null
qemu-img bench -f raw -d 32 -s 1M -c "$((BYTES / 1048576))" "$TGT_URL" >/dev/null
printf '%-34s %12s %12s %12s %12s %7s\n' workload "DLS MB/s" "DLS IOPS" "tgt MB/s" "tgt IOPS" ratio
row() {
	local name=$1 d=${2%|*} t=${2#*|}
	read -r dm di <<<"$d"
	read -r tm ti <<<"$t"
	printf '%-34s %12s %12s %12s %12s %7s\n' "$name" "$dm" "$di" "$tm" "$ti" "$(awk -v a="$di" -v b="$ti" 'BEGIN{printf "%.2fx", a/b}')"
}
# DLS and tgt take turns within each workload.
row "qemu-img seq read 1M qd32" "$(qemu_pair 1M $SEQ_COUNT)"
row "qemu-img seq write 1M qd32" "$(qemu_pair 1M $SEQ_COUNT -w)"
row "qemu-img strided read 4K qd32" "$(qemu_pair 4K $RAND_COUNT -S $STEP)"
row "qemu-img strided write 4K qd32" "$(qemu_pair 4K $RAND_COUNT -S $STEP -w)"
row "iscsi-perf seq read 1M qd32" "$(perf "$DLS_URL" 2048)|$(perf "$TGT_URL" 2048)"
row "iscsi-perf random read 4K qd32" "$(perf "$DLS_URL" 8 -r)|$(perf "$TGT_URL" 8 -r)"
