package hostservices_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dls-project/dls/core/bootscript"
	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
)

// TestGRUBConfiguration: platform "grub" is the machine's GRUB
// configuration, with its iSCSI target, CHAP and boot token on the
// kernel line, for the address bound to its boot only; custom iPXE
// templates do not apply to it; a sanboot image has none.
func TestGRUBConfiguration(t *testing.T) {
	st := bootStore(t)
	fs := &fakeSessions{}
	dir := t.TempDir()
	global := filepath.Join(dir, "site.tmpl")
	if err := os.WriteFile(global, []byte("#!ipxe\necho site {{.Client}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ts, err := bootscript.LoadTemplates(global, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := boot
	b.ISCSIPort = 3261
	s := hostservices.New(b, st, resolver{err: errNoStorage}, hclog.NewNullLogger(), hostservices.WithSessions(fs), hostservices.WithTemplates(ts))
	ctx := context.Background()

	cfg := scriptOf(t, s, "52:54:00:aa:00:02", host.PlatformGRUB)
	want := "linux '/files/linux/vmlinuz' 'iscsi_auto' 'root=/dev/sda' 'rw'" +
		" 'iscsi_initiator=" + prefix + ":initiator:pc-02' 'iscsi_target_name=" + prefix + ":pc-02'" +
		" 'iscsi_target_ip=10.0.0.1' 'iscsi_target_port=3261'" +
		" 'dls.url=http://10.0.0.1:9180' 'dls.token=tok-pc-02'\n" +
		"echo 'DLS: pc-02: loading linux/initrd.img'\ninitrd '/files/linux/initrd.img'\nboot\n"
	if !strings.Contains(cfg, want) || strings.Contains(cfg, "#!ipxe") || strings.Contains(cfg, "site") {
		t.Errorf("GRUB configuration:\n%s\nwant it to hold:\n%s", cfg, want)
	}

	// Another address gets nothing, and the binding holds.
	leaseOf(t, s, "52:54:00:aa:00:02")
	if sc, err := s.Script(ctx, host.ScriptQuery{MAC: "52:54:00:aa:00:02", Peer: "10.9.9.9", Platform: host.PlatformGRUB}); err != nil || sc.Found {
		t.Errorf("GRUB configuration for another address: %+v, %v", sc, err)
	}
	// A sanboot image has nothing for GRUB to boot: an error, not a
	// configuration that would leave GRUB at its prompt.
	if _, err := s.Script(ctx, host.ScriptQuery{MAC: "52:54:00:aa:00:01", Peer: leaseOf(t, s, "52:54:00:aa:00:01"), Platform: host.PlatformGRUB}); err == nil {
		t.Error("GRUB configuration of a sanboot image: no error")
	}
}
