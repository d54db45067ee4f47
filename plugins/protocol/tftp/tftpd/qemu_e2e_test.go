//go:build e2e

package tftpd

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/plugintest"
)

// TestQEMUiPXE boots a QEMU machine whose NIC ROM is iPXE (packages
// qemu-system-x86, ipxe-qemu; TCG, no root): user-mode networking's DHCP
// hands it tftp://10.0.2.2:<port>/mac/<mac>.ipxe, 10.0.2.2 being the
// host's loopback, so the real iPXE fetches its script from the plugin,
// runs it, and the script fetches a 300 KiB file over TFTP too.
//
//	go test -tags e2e -run QEMU ./plugins/protocol/tftp/tftpd
func TestQEMUiPXE(t *testing.T) {
	qemu := needTool(t, "qemu-system-x86_64")
	fh := plugintest.NewFakeHost()
	s := startTFTP(t, map[string]any{"timeout": "1s"}, plugintest.WithHost(fh))
	port := s.addr.Port()
	s.file(t, "boot.bin", 300*1024)
	// QEMU's user network reaches the host from 127.0.0.1.
	fh.SetScript("52:54:00:12:34:56", "pc-01", fmt.Sprintf(
		"#!ipxe\nimgfetch tftp://10.0.2.2:%d/boot.bin && echo DLS-FETCHED-${mac:hexhyp}\n", port), "127.0.0.1")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
		"-boot", "n", "-netdev", fmt.Sprintf("user,id=n0,bootfile=tftp://10.0.2.2:%d/mac/52-54-00-12-34-56.ipxe", port),
		"-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var log strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := strings.ReplaceAll(sc.Text(), "\r", "")
		log.WriteString(line + "\n")
		if strings.Contains(line, "DLS-FETCHED-52-54-00-12-34-56") {
			ev := fh.WaitEvent(t, host.EventScriptServed, 5*time.Second)
			if ev.MAC != "52:54:00:12:34:56" || ev.Attrs[host.AttrFile] != "mac/52-54-00-12-34-56.ipxe" {
				t.Errorf("script_served %+v", ev)
			}
			fh.WaitEvent(t, host.EventFileServed, 5*time.Second)
			return
		}
	}
	t.Fatalf("iPXE never ran the script's fetch; serial output:\n%s", log.String())
}
