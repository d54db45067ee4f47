package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/core/config"
)

// TestBootListenerOnIPv6: boot.listen on an IPv6 address binds there and
// serves /boot; the boot URL the scripts use keeps the brackets.
func TestBootListenerOnIPv6(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	h := start(t, fmt.Sprintf("boot {\n  listen = \"[::1]:0\"\n  files = %q\n}\n", bootFiles(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bootAddr := h.d.BootAddr(ctx)
	if !strings.HasPrefix(bootAddr, "[::1]:") {
		t.Fatalf("boot listener %q, want [::1]:port", bootAddr)
	}
	if code := status(t, "GET", "http://"+bootAddr+"/boot/files/hello.txt"); code != 200 {
		t.Errorf("GET /boot/files/hello.txt over IPv6 = %d, want 200", code)
	}
}

// TestBootSettingsIPv6: with an IPv6 boot URL the scripts' server is the
// bare literal (the script templates bracket it) and the iSCSI port comes
// from a bracketed iSCSI listen address.
func TestBootSettingsIPv6(t *testing.T) {
	text := "boot {\n  listen = \"[fd00:77::1]:9184\"\n}\nprotocol \"iscsi\" \"disks\" {\n  config {\n    listen = \"[fd00:77::1]:3261\"\n  }\n}\n"
	path := filepath.Join(t.TempDir(), "dls.hcl")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	b := bootSettings(cfg)
	if b.URL != "http://[fd00:77::1]:9184" || b.ServerAddress != "fd00:77::1" || b.ISCSIPort != 3261 {
		t.Errorf("boot settings: URL %q, server %q, iSCSI port %d", b.URL, b.ServerAddress, b.ISCSIPort)
	}
}
