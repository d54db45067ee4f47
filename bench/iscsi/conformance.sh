#!/usr/bin/env bash
# libiscsi's conformance suite (iscsi-test-cu, package libiscsi-bin)
# against DLS's target and against tgt, each on its own 64 MiB file, in
# the same run; prints passed/total for both and the tests DLS fails.
# Both of iscsi-test-cu's default initiator names are the client's
# initiators, and both answer CHAP as the client's initiator IQN with a
# generated secret, as every DLS client does by default. Root (tgtd);
# under a minute.
#
#   bash bench/iscsi/conformance.sh [TEST]     # TEST: ALL (default) or FAMILY[.SUITE[.TEST]]
source "$(dirname "$0")/lib.sh"

TEST="${1:-ALL}"
need iscsi-test-cu libiscsi-bin
INITIATORS="$(iscsi-test-cu --help 2>&1 | sed -n 's/.*Initiatorname to use \[\(.*\)\]/\1/p' | paste -sd, -)"
[ -n "$INITIATORS" ] || INITIATORS="iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test,iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2"
truncate -s 64M "$WORK/dls.img" "$WORK/tgt.img"
CHAP_USER="iqn.2026-11.io.dls:initiator:bench"
CHAP_SECRET="$(head -c 1024 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 20)"
start_dls "$WORK/dls.img" "$INITIATORS" "$CHAP_USER" "$CHAP_SECRET"
DLS_URL="iscsi://$CHAP_USER%$CHAP_SECRET@127.0.0.1:$DLS_PORT/$IQN_DLS/0"
start_tgt "$WORK/tgt.img"

run() { # NAME URL: run the suite, print "passed total"
	timeout 900 iscsi-test-cu -d --test="$TEST" "$2" >"$WORK/$1.log" 2>&1 || true
	awk '$1 == "tests" {print $4, $2}' "$WORK/$1.log"
}
read -r dls_pass dls_total <<<"$(run dls "$DLS_URL")"
read -r tgt_pass tgt_total <<<"$(run tgt "$TGT_URL")"
echo "DLS: ${dls_pass:-0}/${dls_total:-?} passed"
echo "tgt: ${tgt_pass:-0}/${tgt_total:-?} passed"
failures() { # LOG: Suite.Test of each failed test
	awk '/^Suite: /{suite=$2} /^ *Test: /{t=$2} /FAILED$/ && t != "" {print "  " suite "." t; t=""}' "$1"
}
echo "tests DLS fails:"
failures "$WORK/dls.log"
echo "tests tgt fails:"
failures "$WORK/tgt.log"
[ "${dls_pass:-0}" -ge "${tgt_pass:-0}" ] && [ "${dls_pass:-0}" -gt 0 ]
