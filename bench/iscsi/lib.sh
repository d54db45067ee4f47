# Shared by bench/iscsi/run.sh and conformance.sh: start DLS's target
# (bench/iscsi/dlstarget, the plugin's target code without the host) and
# tgt on the same backing file, on loopback, and stop them at exit.
# Sourced, not run. Needs root for tgtd.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PATH="/usr/local/go/bin:$PATH"
source "$ROOT/.ci/packages.sh"
WORK="$(mktemp -d /tmp/dls-iscsi-bench.XXXXXX)"
DLS_PORT="${DLS_PORT:-13260}"
TGT_PORT="${TGT_PORT:-13261}"
TGT_CONTROL="${TGT_CONTROL:-$((RANDOM % 1000 + 2000))}"
IQN_DLS="iqn.2026-11.io.dls:bench"
IQN_TGT="iqn.2026-11.io.dls:bench-tgt"
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true # tgtd may ignore SIGTERM with sessions open
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT

# need CMD PACKAGE: install PACKAGE when CMD is missing (root only).
need() {
	install_missing "$1 $2" || exit 1
	command -v "$1" >/dev/null 2>&1 || { echo "$1 not found (package $2)" >&2; exit 1; }
}

# wait_port PORT: until something listens on 127.0.0.1:PORT.
wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on 127.0.0.1:$1" >&2
	exit 1
}

# start_dls FILE [INITIATORS [CHAP_USER CHAP_SECRET]]: DLS's target
# serving FILE as $IQN_DLS LUN 0, with CHAP when a secret is given.
start_dls() {
	(cd "$ROOT" && go build -o "$WORK/dlstarget" ./bench/iscsi/dlstarget)
	"$WORK/dlstarget" -listen "127.0.0.1:$DLS_PORT" -file "$1" -iqn "$IQN_DLS" -initiators "${2:-}" \
		-chap-user "${3:-}" -chap-secret "${4:-}" >"$WORK/dlstarget.log" 2>&1 &
	PIDS+=($!)
	wait_port "$DLS_PORT"
}

# start_tgt FILE: tgtd serving FILE as $IQN_TGT LUN 1 (tgt's LUN 0 is its
# controller).
start_tgt() {
	need tgtd tgt
	tgtd -f -C "$TGT_CONTROL" --iscsi "portal=127.0.0.1:$TGT_PORT" >"$WORK/tgtd.log" 2>&1 &
	PIDS+=($!)
	wait_port "$TGT_PORT"
	local t="tgtadm -C $TGT_CONTROL --lld iscsi"
	for _ in $(seq 50); do
		$t --op show --mode target >/dev/null 2>&1 && break
		sleep 0.1
	done
	$t --op new --mode target --tid 1 -T "$IQN_TGT"
	$t --op new --mode logicalunit --tid 1 --lun 1 -b "$1"
	$t --op bind --mode target --tid 1 -I ALL
}

DLS_URL="iscsi://127.0.0.1:$DLS_PORT/$IQN_DLS/0"
TGT_URL="iscsi://127.0.0.1:$TGT_PORT/$IQN_TGT/1"
