package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/core/internal/hostprobe"
)

// TestPluginGrants is the acceptance test of least privilege: real plugin
// subprocesses of each kind call every host service through the raw gRPC
// stubs on their brokered host connection (core/internal/hostprobe). What
// their grant leaves out is PermissionDenied, naming the instance and the
// method, and counted; what it includes works, and CHAP secrets reach
// only the iSCSI instance.
func TestPluginGrants(t *testing.T) {
	// The protocol test plugin takes its type from its binary's name.
	bin := t.TempDir()
	for _, typ := range []string{"dhcp", "tftp", "iscsi"} {
		if err := os.Symlink(filepath.Join(pluginDir, "dls-protocol-test"), filepath.Join(bin, "dls-protocol-"+typ)); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "lab.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	probe := func(typ string) string {
		return fmt.Sprintf("  source = %q\n  config {\n    probe_host = true\n  }\n", filepath.Join(bin, "dls-protocol-"+typ))
	}
	h := start(t, fmt.Sprintf(`
protocol "dhcp" "p-dhcp" {
%s}
protocol "tftp" "p-tftp" {
%s}
protocol "iscsi" "p-iscsi" {
%s}
protocol "test" "p-vendor" {
  config {
    probe_host = true
  }
}
protocol "test" "p-granted" {
  host_services = ["lookup", "scripts", "volumes", "leases", "events"]
  config {
    probe_host = true
  }
}
storage "probe" "p-storage" {}
auth "probe" "p-auth" {}
image "lab" {
  storage = "p-storage"
  source  = %q
}
client "probed" {
  mac   = %q
  image = "lab"
  chap {
    secret        = "probe-secret-0123"
    mutual_secret = "probe-mutual-0123"
  }
}
`, probe("dhcp"), probe("tftp"), probe("iscsi"), img, hostprobe.MAC))
	h.waitFor(20*time.Second, "ready", func() bool { c, _ := h.readyz(); return c == 200 })

	// The client is reconciled after the plugins first start: a reload
	// with a changed config {} reconfigures the protocols, which probe
	// again, now with the client in the store.
	b, err := os.ReadFile(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.ReplaceAll(string(b), "probe_host = true", "probe_host = true\n    tick = \"20ms\"")
	if err := os.WriteFile(h.cfg, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	h.hup <- syscall.SIGHUP

	all := []string{"Clients.Lookup", "Clients.Script", "Events.Report", "Volumes.Attach", "Volumes.Detach", "Leases.Load", "Leases.Commit"}
	for _, tc := range []struct {
		plugin  string
		allowed []string
		secrets bool
	}{
		{"p-dhcp", []string{"Clients.Lookup", "Leases.Load", "Leases.Commit", "Events.Report"}, false},
		{"p-tftp", []string{"Clients.Script", "Events.Report"}, false},
		{"p-iscsi", []string{"Clients.Lookup", "Volumes.Attach", "Volumes.Detach", "Events.Report"}, true},
		{"p-vendor", []string{"Events.Report"}, false},
		{"p-granted", []string{"Clients.Lookup", "Clients.Script", "Volumes.Attach", "Volumes.Detach", "Leases.Load", "Leases.Commit", "Events.Report"}, false},
		{"p-storage", nil, false},
		{"p-auth", nil, false},
	} {
		t.Run(tc.plugin, func(t *testing.T) {
			dir := filepath.Join(filepath.Dir(h.cfg), "var", "plugins", tc.plugin)
			var r hostprobe.Report
			h.waitFor(20*time.Second, tc.plugin+"'s probe report", func() bool {
				r, err = hostprobe.Read(dir)
				if err != nil {
					return false
				}
				lookup := r["Clients.Lookup"]
				return lookup.Code == "PermissionDenied" || lookup.Known
			})
			allowed := map[string]bool{}
			for _, m := range tc.allowed {
				allowed[m] = true
			}
			for _, m := range all {
				res, ok := r[m]
				if !ok {
					t.Errorf("%s: no answer to %s", tc.plugin, m)
					continue
				}
				if !allowed[m] {
					if res.Code != "PermissionDenied" || !strings.Contains(res.Message, "plugin "+tc.plugin+" ") || !strings.Contains(res.Message, m) {
						t.Errorf("%s calling %s: %s %q, want PermissionDenied naming the plugin and the method", tc.plugin, m, res.Code, res.Message)
					}
					continue
				}
				switch {
				case res.Code == "PermissionDenied":
					t.Errorf("%s calling granted %s: %s", tc.plugin, m, res.Message)
				case m == "Volumes.Attach" || m == "Volumes.Detach":
					// An unknown client's volume: the host looked and refused.
					if res.Code == "OK" || res.Code == "Unimplemented" {
						t.Errorf("%s calling %s for an unknown client: %s", tc.plugin, m, res.Code)
					}
				case res.Code != "OK":
					t.Errorf("%s calling granted %s: %s %q", tc.plugin, m, res.Code, res.Message)
				}
			}
			if lk := r["Clients.Lookup"]; allowed["Clients.Lookup"] && (!lk.Known || lk.Secrets != tc.secrets) {
				t.Errorf("%s: Lookup known %v with secrets %v, want known with secrets %v", tc.plugin, lk.Known, lk.Secrets, tc.secrets)
			}
		})
	}

	// Each refusal is counted per plugin and method.
	_, m := h.get("/metrics")
	if !strings.Contains(m, "# HELP dls_host_service_denied_total ") {
		t.Error("dls_host_service_denied_total has no HELP")
	}
	for _, series := range []string{
		`dls_host_service_denied_total{method="Clients.Lookup",plugin="p-auth"}`,
		`dls_host_service_denied_total{method="Volumes.Attach",plugin="p-storage"}`,
		`dls_host_service_denied_total{method="Leases.Commit",plugin="p-iscsi"}`,
		`dls_host_service_denied_total{method="Clients.Lookup",plugin="p-tftp"}`,
	} {
		if v, ok := metric(m, series); !ok || v < 1 {
			t.Errorf("%s = %v (present %v), want at least 1", series, v, ok)
		}
	}
	if _, ok := metric(m, `dls_host_service_denied_total{method="Clients.Lookup",plugin="p-iscsi"}`); ok {
		t.Error("a granted call was counted as denied")
	}
}
