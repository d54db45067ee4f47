package daemon

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dls-project/dls/core/config"
)

// TestBootSettingsISCSIPort: the scripts' iSCSI port is the iSCSI block's
// listen port, and 3260 without one.
func TestBootSettingsISCSIPort(t *testing.T) {
	for text, want := range map[string]int{
		"protocol \"iscsi\" \"disks\" {\n  config {\n    listen = \"192.0.2.1:3261\"\n  }\n}\n": 3261,
		"protocol \"iscsi\" \"disks\" {}\n":                                                     3260,
		"":                                                                                      3260,
	} {
		path := filepath.Join(t.TempDir(), "dls.hcl")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := bootSettings(cfg).ISCSIPort; got != want {
			t.Errorf("%q: ISCSIPort %d, want %d", text, got, want)
		}
	}
}
