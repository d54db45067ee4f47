#!/usr/bin/env bash
# A real diskless client: QEMU's iPXE (packages qemu-system-x86,
# ipxe-qemu) sanboots sector 0 of a volume from DLS's target, optionally
# with CHAP, and the boot sector proves it ran by writing to COM1 and
# leaving QEMU through isa-debug-exit. QEMU's user-mode network (DHCP, TFTP
# for the iPXE script, 10.0.2.2 = this machine's loopback): no root, no
# namespaces. About 10 s under TCG.
#
#   bash bench/iscsi/sanboot.sh [chap]
source "$(dirname "$0")/lib.sh"

need qemu-system-x86_64 qemu-system-x86
if [ ! -e /usr/lib/ipxe/qemu/efi-virtio.rom ] && [ "$(id -u)" = 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ipxe-qemu >/dev/null
fi

INITIATOR="iqn.2026-11.io.dls:initiator:pc-01"
# The boot sector: DS=0, print "DLS-SANBOOT-OK" on COM1, exit QEMU with
# status (0x21 << 1) | 1 = 67.
python3 - "$WORK/disk.img" <<'PY'
import sys
code = bytes([0x31,0xC0,0x8E,0xD8,0xFC,0xBA,0xF8,0x03,0xBE,0x1C,0x7C,0xAC,0x84,0xC0,0x74,0x03,
              0xEE,0xEB,0xF8,0xB0,0x21,0xBA,0xF4,0x00,0xEE,0xF4,0xEB,0xFD])
sector = bytearray(512)
sector[:len(code)] = code
msg = b"DLS-SANBOOT-OK\r\n\0"
sector[0x1c:0x1c + len(msg)] = msg
sector[510:512] = b"\x55\xaa"
with open(sys.argv[1], "wb") as f:
    f.write(sector + bytes((8 << 20) - 512))
PY
chap=""
{
	echo '#!ipxe'
	echo "set initiator-iqn $INITIATOR"
	if [ "${1:-}" = chap ]; then
		chap="s3cret-s3cret"
		echo "set username $INITIATOR"
		echo "set password $chap"
	fi
	echo "sanboot iscsi:10.0.2.2::$DLS_PORT:0:$IQN_DLS"
} >"$WORK/boot.ipxe"
(cd "$ROOT" && go build -o "$WORK/dlstarget" ./bench/iscsi/dlstarget)
"$WORK/dlstarget" -listen "127.0.0.1:$DLS_PORT" -file "$WORK/disk.img" -iqn "$IQN_DLS" \
	-initiators "$INITIATOR" -chap-secret "$chap" >"$WORK/dlstarget.log" 2>&1 &
PIDS+=($!)
wait_port "$DLS_PORT"
status=0
timeout 180 qemu-system-x86_64 -accel tcg -m 256 -nographic -no-reboot -boot n \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 \
	-netdev "user,id=n0,tftp=$WORK,bootfile=boot.ipxe" -device virtio-net-pci,netdev=n0 \
	>"$WORK/qemu.log" 2>&1 || status=$?
if [ "$status" = 67 ] && grep -aq DLS-SANBOOT-OK "$WORK/qemu.log"; then
	echo "sanboot: iPXE booted sector 0 from DLS's target${chap:+ with CHAP}"
	exit 0
fi
echo "sanboot failed (QEMU status $status):" >&2
tr -d '\r' <"$WORK/qemu.log" | tail -20 >&2
cat "$WORK/dlstarget.log" >&2
exit 1
