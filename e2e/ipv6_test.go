//go:build e2e

package e2e

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store/sqlite"
	"github.com/dls-project/dls/e2e/lab"
)

// TestIPv6: a machine on an IPv6-only segment (no IPv4 address on it at
// all) sanboots its clone over iSCSI on IPv6 from DLS alone. The segment
// is fd00:77::/64; the lab's router advertiser sends the Managed flag and
// the prefix (on-link, no autoconfiguration), as radvd would; DLS runs
// protocol "dhcp6" in full mode with a pool, and its HTTP, TFTP and iSCSI
// listeners on fd00:77::1. The NIC's iPXE ROM asks DHCPv6 (user class
// iPXE), gets its script URL (option 59,
// http://[fd00:77::1]:9180/boot/<mac>.ipxe), and the script sanboots
// iscsi:[fd00:77::1]::3260:0:<target>: the boot sector (e2e/testdata)
// reads and writes its clone. Checked: the DHCPv6 lease in the store, the
// session dhcp6 → script → iscsi_login → handoff, the iSCSI connection
// from the leased address, the boot sector's lines on the console. See
// README.md.

const (
	v6Prefix = "fd00:77::/64"
	v6IP     = "fd00:77::1" // DLS on br6, the segment's only server
)

var v6Machine = machine{name: "v6-1", mac: "52:54:00:e2:06:01"}

func TestIPv6(t *testing.T) {
	needRoot(t)
	l := newLab(t, "dls-e2e-ipv6-")
	root, err := lab.RepoRoot()
	must(t, err)
	start := time.Now()
	bin := filepath.Join(l.Dir, "bin")
	must(t, lab.Build(root, bin))
	image := filepath.Join(l.Dir, "disk.img")
	must(t, lab.Image(root, image))

	// The segment: a bridge with a ULA and no IPv4 address, no duplicate
	// address detection (the address is usable at once).
	ns, err := l.NS("v6dls")
	must(t, err)
	for _, k := range []string{"all", "default"} {
		must(t, ns.Run("sysctl", "-qw", "net.ipv6.conf."+k+".accept_dad=0"))
	}
	must(t, ns.Bridge("br6", ""))
	must(t, ns.Run("ip", "-6", "addr", "add", v6IP+"/64", "dev", "br6", "nodad"))
	vm, err := l.Machine(ns, "br6", "t-v6", v6Machine.name, v6Machine.mac)
	must(t, err)
	ra, err := l.ManagedRouter(ns, "br6", netip.MustParsePrefix(v6Prefix))
	must(t, err)
	host, err := l.StartHost(ns, bin, lab.HostConfig{
		BootIP:  v6IP,
		Image:   image,
		Clients: []lab.HostClient{{Name: v6Machine.name, MAC: v6Machine.mac}},
		DHCP6:   []lab.HostDHCP6{{Name: "lan6", Interface: "br6", ServerIP: v6IP, PoolStart: "fd00:77::1:100", PoolEnd: "fd00:77::1:1ff"}},
	}, adminPassword)
	must(t, err)
	if out, err := ns.Command("ip", "-4", "-o", "addr", "show", "dev", "br6").CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("br6 has IPv4 addresses (%v): %s", err, out)
	}
	t.Logf("setup done in %.1fs: %s", time.Since(start).Seconds(), host.Config)

	// While the boot sector waits at DLS-READY its iSCSI session is up:
	// the connection's peer is the machine's address.
	var mu sync.Mutex
	var conns string
	b, err := vm.Boot(context.Background(), lab.BootOptions{
		Timeout: 4 * time.Minute,
		OnReady: func() {
			out, _ := ns.Command("ss", "-Htn", "state", "established", "( sport = :3260 )").CombinedOutput()
			mu.Lock()
			conns = string(out)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot: %.1fs power-on to the boot sector's exit; payload ran %v, read %v, wrote %v", b.Wall.Seconds(), b.Ran, b.Payload, b.Wrote)
	if !b.Ran || !b.Payload || !b.Wrote {
		t.Errorf("the boot sector did not run to the end (ran %v, payload %v, wrote %v):\n%s", b.Ran, b.Payload, b.Wrote, b.Tail(30))
	}
	if !b.Has("http://[" + v6IP + "]:9180/boot/") {
		t.Errorf("the console shows no script fetched from http://[%s]:9180:\n%s", v6IP, b.Tail(40))
	}
	if ra.Answered.Load() == 0 {
		t.Error("no router advertisement was sent")
	}

	// The DHCPv6 lease, in the store.
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(host.Dir, "var", "dls.db"), nil)
	must(t, err)
	leases, err := st.LoadLeases(ctx, "")
	st.Close()
	must(t, err)
	var lease netip.Addr
	for _, ls := range leases {
		if ls.MAC == v6Machine.mac && ls.Address.Is6() && netip.MustParsePrefix(v6Prefix).Contains(ls.Address) {
			lease = ls.Address
		}
	}
	if !lease.IsValid() {
		t.Fatalf("no DHCPv6 lease of %s in the store: %+v", v6Machine.mac, leases)
	}
	t.Logf("lease: %s", lease)
	mu.Lock()
	if !strings.Contains(conns, "["+lease.String()+"]:") {
		t.Errorf("iSCSI connections at DLS-READY: %q; want one from [%s]", conns, lease)
	} else {
		t.Logf("iSCSI connection at DLS-READY: %s", strings.TrimSpace(conns))
	}
	mu.Unlock()

	// The session: dhcp6 → script → iscsi_login → handoff.
	token, err := host.Login(ctx, "admin", adminPassword)
	must(t, err)
	var s lab.Session
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		ss, err := host.Sessions(ctx, token, v6Machine.name)
		must(t, err)
		if len(ss) > 0 {
			s = ss[0]
		}
		if s.State == "done" || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("session %d: %s, %.2fs, address %s: %s", s.ID, s.State, s.Seconds(), s.Address, s.StageList(", "))
	for _, stage := range []string{"dhcp6", "script", "iscsi_login", "handoff"} {
		if _, ok := s.Stages[stage]; !ok {
			t.Errorf("session has no stage %s: %s", stage, s.StageList(", "))
		}
	}
	if _, ok := s.Stages["dhcp"]; ok {
		t.Errorf("session has a DHCPv4 stage on an IPv6-only segment: %s", s.StageList(", "))
	}
	if s.State != "done" || s.Address != lease.String() {
		t.Errorf("session %s, address %q; want done, %s", s.State, s.Address, lease)
	}
}
