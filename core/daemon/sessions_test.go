package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
)

// trigger makes the test plugin report its next event.
func trigger(t *testing.T, addr string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// The plugin reports, then closes: reading EOF means it arrived.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.Read(make([]byte, 1))
	c.Close()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestBootSessionFromPluginEvents drives one boot through events a real
// plugin process reports and the host's own script endpoint, and lets a
// second boot stall.
func TestBootSessionFromPluginEvents(t *testing.T) {
	a, b := freePort(t), freePort(t)
	img := filepath.Join(t.TempDir(), "lab.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, fmt.Sprintf(`
boot {
  stage_timeout = "1s"
}
auth "local" "admins" {
  config {
    hash_memory_kib = 8192
    hash_iterations = 1
  }
}
storage "file" "files" {}
image "lab" {
  storage = "files"
  source  = %q
}
client "pc1" {
  mac   = "52:54:00:00:00:01"
  image = "lab"
}
client "pc2" {
  mac   = "52:54:00:00:00:02"
  image = "lab"
}
protocol "test" "boots" {
  config {
    listen    = %q
    events    = ["dhcp_discover", "iscsi_login", "iscsi_handoff"]
    event_mac = "52:54:00:00:00:01"
  }
}
protocol "test" "stalls" {
  config {
    listen    = %q
    events    = ["dhcp_discover"]
    event_mac = "52:54:00:00:00:02"
  }
}
`, img, a, b))
	h.waitFor(10*time.Second, "ready", func() bool { c, _ := h.readyz(); return c == 200 })

	trigger(t, a) // dhcp_discover
	// The machine's lease, as a DHCP plugin commits it before its ACK: the
	// script goes only to the leased address (this test's 127.0.0.1).
	if rs, err := h.d.services.Commit(context.Background(), []host.Lease{{Pool: "lo", Address: "127.0.0.1", MAC: "52:54:00:00:00:01", Expires: time.Now().Add(time.Hour), State: host.LeaseBound}}); err != nil || !rs[0].OK {
		t.Fatalf("lease: %+v %v", rs, err)
	}
	if code, body := h.get("/boot/52-54-00-00-00-01.ipxe"); code != 200 || !strings.Contains(body, "sanboot") {
		t.Fatalf("script: %d %s", code, body)
	}
	trigger(t, a) // iscsi_login
	trigger(t, a) // iscsi_handoff
	trigger(t, b) // pc2: dhcp_discover, then nothing

	h.waitFor(10*time.Second, "boot time observed and pc2 failed", func() bool {
		_, m := h.get("/metrics")
		n, _ := metric(m, "dls_boot_time_seconds_count")
		f, _ := metric(m, `dls_boot_failures_total{stage="script"}`)
		return n == 1 && f == 1
	})
	_, m := h.get("/metrics")
	if v, _ := metric(m, "dls_boot_sessions_total"); v != 2 {
		t.Errorf("dls_boot_sessions_total = %v, want 2", v)
	}

	// The history through the API, as an admin sees it.
	h.d.mu.Lock()
	p := h.d.instances["admins"].sup.Process()
	h.d.mu.Unlock()
	if err := createUser(p, "alice", "correct horse battery", "viewer"); err != nil {
		t.Fatal(err)
	}
	_, body := h.do("POST", "/api/v1/auth/login", "", `{"username":"alice","password":"correct horse battery"}`)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal([]byte(body), &tok)
	code, body := h.do("GET", "/api/v1/sessions?client=pc1", tok.AccessToken, "")
	if code != 200 {
		t.Fatalf("sessions: %d %s", code, body)
	}
	for _, stage := range []string{"dhcp", "script", "iscsi_login", "handoff", "done"} {
		if !strings.Contains(body, stage) {
			t.Errorf("session of pc1 lacks %q: %s", stage, body)
		}
	}
	t.Logf("pc1 session: %s", body)
}
