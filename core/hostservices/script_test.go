package hostservices_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/core/bootscript"
	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlite"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
)

// fakeSessions records events and hands out one token per client.
type fakeSessions struct {
	mu     sync.Mutex
	events []host.Event
	tokens map[string]string
	failed map[string]string // client → stage, from LoaderFailed
}

func (f *fakeSessions) LoaderFailed(_ context.Context, token, stage string, bound func(string) bool) error {
	f.mu.Lock()
	client := ""
	for c, t := range f.tokens {
		if t == token {
			client = c
		}
	}
	f.mu.Unlock()
	if client == "" {
		return errors.New("unknown token")
	}
	if !bound(client) {
		return errors.New("not bound")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed == nil {
		f.failed = map[string]string{}
	}
	f.failed[client] = stage
	return nil
}

func (f *fakeSessions) Report(_ context.Context, events []host.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, events...)
	return nil
}

func (f *fakeSessions) Token(_ context.Context, client string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tokens == nil {
		f.tokens = map[string]string{}
	}
	if f.tokens[client] == "" {
		f.tokens[client] = "tok-" + client
	}
	return f.tokens[client], nil
}

// bootStore is a SQLite store with pc-01 (sanboot image lab), pc-02
// (image linux: kernel, confirms) and pc-03 (CHAP, mutual).
func bootStore(t *testing.T) store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "dls.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for _, img := range []store.Image{
		{Name: "lab", Storage: "tank"},
		{Name: "linux", Storage: "tank", Boot: &store.BootProfile{Kernel: "linux/vmlinuz", Initrd: "linux/initrd.img", Cmdline: "iscsi_auto root=/dev/sda rw", Confirm: true}},
	} {
		if err := st.PutImage(ctx, img); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []store.Client{
		{Name: "pc-01", MAC: "52:54:00:aa:00:01", Image: "lab", Persistent: true},
		{Name: "pc-02", MAC: "52:54:00:aa:00:02", Image: "linux", Persistent: true},
		{Name: "pc-03", MAC: "52:54:00:aa:00:03", Image: "lab", CHAPSecret: "pc03-secret-1", CHAPMutualSecret: "target-secret-1"},
	} {
		if err := st.PutClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// leaseOf commits a bound lease of mac (any spelling) through s, as the
// DHCP plugin does before its ACK, and returns the leased address: one per
// MAC (10.0.<fifth byte>.<last byte>).
func leaseOf(t *testing.T, s *hostservices.Services, mac string) string {
	t.Helper()
	m, err := store.CanonicalMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	var fifth, last int
	_, _ = fmt.Sscanf(m[12:], "%x:%x", &fifth, &last)
	addr := fmt.Sprintf("10.0.%d.%d", fifth, last)
	rs, err := s.Commit(context.Background(), []host.Lease{{Pool: "lan", Address: addr, MAC: m, Expires: time.Now().Add(time.Hour), State: host.LeaseBound}})
	if err != nil || !rs[0].OK {
		t.Fatalf("lease %s for %s: %+v, %v", addr, m, rs, err)
	}
	return addr
}

// scriptOf asks s for the script of mac from the address leased to it;
// "" when none is found.
func scriptOf(t *testing.T, s *hostservices.Services, mac, platform string) string {
	t.Helper()
	sc, err := s.Script(context.Background(), host.ScriptQuery{MAC: mac, Peer: leaseOf(t, s, mac), Platform: platform})
	if err != nil {
		t.Fatalf("Script(%s, %q): %v", mac, platform, err)
	}
	return sc.Body
}

func TestScriptKernelWithToken(t *testing.T) {
	st := bootStore(t)
	fs := &fakeSessions{}
	s := hostservices.New(boot, st, resolver{err: errNoStorage}, hclog.NewNullLogger(), hostservices.WithSessions(fs))
	ctx := context.Background()

	// iPXE says its platform: UEFI.
	script := scriptOf(t, s, "52:54:00:aa:00:02", hostservices.PlatformEFI)
	for _, part := range []string{
		"set initiator-iqn " + prefix + ":initiator:pc-02\n",
		"sanhook iscsi:10.0.0.1:::0:" + prefix + ":pc-02\n",
		"kernel http://10.0.0.1:9180/boot/files/linux/vmlinuz iscsi_auto root=/dev/sda rw initrd=initrd.img dls.url=http://10.0.0.1:9180 dls.token=tok-pc-02\n",
		"initrd http://10.0.0.1:9180/boot/files/linux/initrd.img\n",
	} {
		if !strings.Contains(script, part) {
			t.Errorf("script lacks %q:\n%s", part, script)
		}
	}
	// BIOS: no initrd=.
	if script = scriptOf(t, s, "52:54:00:aa:00:02", hostservices.PlatformBIOS); !strings.Contains(script, "rw dls.url=") {
		t.Errorf("BIOS script:\n%s", script)
	}
	// From TFTP: not known, ${platform} decides.
	if script = scriptOf(t, s, "52:54:00:aa:00:02", ""); !strings.Contains(script, "iseq ${platform} efi") {
		t.Errorf("script for an unknown architecture:\n%s", script)
	}
	// A sanboot image has no token.
	if script = scriptOf(t, s, "52:54:00:aa:00:01", ""); strings.Contains(script, "dls.token") || !strings.Contains(script, "sanboot ") {
		t.Errorf("sanboot script:\n%s", script)
	}
	// Decisions carry no script, by MAC or by target.
	if d, _ := s.Lookup(ctx, host.Query{Target: prefix + ":pc-02"}); !d.Known {
		t.Errorf("lookup by target: %+v", d)
	}
}

func TestLookupCHAP(t *testing.T) {
	s := hostservices.New(boot, bootStore(t), nil, hclog.NewNullLogger())
	d, err := s.Lookup(context.Background(), host.Query{MAC: "52:54:00:aa:00:03"})
	if err != nil {
		t.Fatal(err)
	}
	if d.CHAPUser != prefix+":initiator:pc-03" || d.CHAPSecret != "pc03-secret-1" || d.CHAPMutualSecret != "target-secret-1" {
		t.Errorf("CHAP in the decision: %q %q %q", d.CHAPUser, d.CHAPSecret, d.CHAPMutualSecret)
	}
	script := scriptOf(t, s, "52:54:00:aa:00:03", "")
	for _, part := range []string{
		"set username " + prefix + ":initiator:pc-03\nset password pc03-secret-1\n",
		"set reverse-username " + prefix + ":pc-03\nset reverse-password target-secret-1\n",
	} {
		if !strings.Contains(script, part) {
			t.Errorf("script lacks %q:\n%s", part, script)
		}
	}
	d, _ = s.Lookup(context.Background(), host.Query{MAC: "52:54:00:aa:00:01"})
	if d.CHAPUser != "" || d.CHAPSecret != "" || strings.Contains(scriptOf(t, s, "52:54:00:aa:00:01", ""), "password") {
		t.Errorf("client without CHAP: %+v", d)
	}
}

func TestScriptCustomTemplates(t *testing.T) {
	dir := t.TempDir()
	global := filepath.Join(dir, "site.tmpl")
	own := filepath.Join(dir, "pc-01.tmpl")
	_ = os.WriteFile(global, []byte("#!ipxe\necho site {{.Client}}\nsanboot iscsi:{{.Server}}:::0:{{.TargetIQN}}\n"), 0o644)
	_ = os.WriteFile(own, []byte("#!ipxe\necho own {{.Client}}\n"), 0o644)
	ts, err := bootscript.LoadTemplates(global, map[string]string{"pc-01": own})
	if err != nil {
		t.Fatal(err)
	}
	s := hostservices.New(boot, bootStore(t), nil, hclog.NewNullLogger(), hostservices.WithTemplates(ts))
	if got := scriptOf(t, s, "52:54:00:aa:00:01", ""); got != "#!ipxe\necho own pc-01\n" {
		t.Errorf("pc-01 script %q", got)
	}
	if got := scriptOf(t, s, "52:54:00:aa:00:02", ""); !strings.HasPrefix(got, "#!ipxe\necho site pc-02\n") {
		t.Errorf("pc-02 script %q", got)
	}
	s.SetTemplates(nil)
	if got := scriptOf(t, s, "52:54:00:aa:00:01", ""); !strings.Contains(got, "sanboot iscsi:10.0.0.1:::0:") {
		t.Errorf("built-in after SetTemplates(nil): %q", got)
	}
}

func TestScriptByMAC(t *testing.T) {
	s := hostservices.New(boot, bootStore(t), nil, hclog.NewNullLogger(), hostservices.WithSessions(&fakeSessions{}))
	ctx := context.Background()
	sc, err := s.Script(ctx, host.ScriptQuery{MAC: "52-54-00-AA-00-02", Peer: leaseOf(t, s, "52:54:00:aa:00:02"), Platform: hostservices.PlatformEFI})
	if err != nil || !sc.Found || sc.Client != "pc-02" || !strings.Contains(sc.Body, " initrd=initrd.img ") {
		t.Errorf("Script(efi) = %+v, %v", sc, err)
	}
	if script := scriptOf(t, s, "52:54:00:aa:00:02", hostservices.PlatformBIOS); strings.Contains(script, "initrd=") {
		t.Errorf("Script(pcbios) = %q", script)
	}
	if script := scriptOf(t, s, "52:54:00:aa:00:02", ""); !strings.Contains(script, "${dls-initrd}") {
		t.Errorf("Script(\"\") = %q", script)
	}
	// Unknown (even with a lease) and malformed MACs are not found, not
	// errors: no oracle.
	for _, mac := range []string{"52:54:00:ff:ff:ff", "not-a-mac"} {
		peer := "10.0.0.99"
		if mac != "not-a-mac" {
			peer = leaseOf(t, s, mac)
		}
		if sc, err := s.Script(ctx, host.ScriptQuery{MAC: mac, Peer: peer}); err != nil || sc.Found || sc.Body != "" {
			t.Errorf("Script(%s) = %+v, %v; want not found", mac, sc, err)
		}
	}
}

func TestRegisterUnknown(t *testing.T) {
	st := bootStore(t)
	b := boot
	b.UnknownClients, b.DefaultImage = hostservices.UnknownRegister, "linux"
	s := hostservices.New(b, st, nil, hclog.NewNullLogger(), hostservices.WithSessions(&fakeSessions{}))
	ctx := context.Background()

	// An OS's DHCP client is never registered.
	for _, q := range []host.Query{
		{MAC: "52:54:00:bb:00:01"},
		{MAC: "52:54:00:bb:00:01", VendorClass: "MSFT 5.0"},
		{Target: prefix + ":auto-525400bb0001"},
	} {
		d, err := s.Lookup(ctx, q)
		if err != nil || d.Known {
			t.Errorf("Lookup(%+v) = %+v, %v; want unknown", q, d, err)
		}
	}
	if _, err := st.ClientByMAC(ctx, "52:54:00:bb:00:01"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("registered from a non-firmware query: %v", err)
	}

	d, err := s.Lookup(ctx, host.Query{MAC: "52:54:00:bb:00:01", Arch: 7, VendorClass: "PXEClient:Arch:00007:UNDI:003016"})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Known || d.Client != "auto-525400bb0001" || d.TargetIQN != prefix+":auto-525400bb0001" ||
		d.ScriptURL != "http://10.0.0.1:9180/boot/52-54-00-bb-00-01.ipxe" || !strings.Contains(scriptOf(t, s, "52:54:00:bb:00:01", ""), "linux/vmlinuz") {
		t.Errorf("registered decision %+v", d)
	}
	c, err := st.GetClient(ctx, "auto-525400bb0001")
	if err != nil || c.MAC != "52:54:00:bb:00:01" || c.Image != "linux" || !c.Persistent || c.Labels["dls.origin"] != "register" {
		t.Errorf("registered client %+v, %v", c, err)
	}
	// CHAP is on for registered clients too: a generated secret, which
	// the client's script carries and the audit entry does not.
	if len(c.CHAPSecret) < 16 || strings.Trim(c.CHAPSecret, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" {
		t.Errorf("registered client's secret %q, want >= 16 of [A-Za-z0-9]", c.CHAPSecret)
	}
	if script := scriptOf(t, s, "52:54:00:bb:00:01", ""); !strings.Contains(script, "set password "+c.CHAPSecret) {
		t.Errorf("registered client's script does not carry its secret:\n%s", script)
	}
	audit, _ := st.ListAudit(ctx, 10)
	if len(audit) == 1 && strings.Contains(audit[0].Detail, c.CHAPSecret) {
		t.Errorf("registration audit holds the secret: %+v", audit[0])
	}
	if len(audit) != 1 || audit[0].Action != "client.register" || audit[0].Object != "client/auto-525400bb0001" {
		t.Errorf("audit %+v", audit)
	}
	// Again: the same client, no second registration.
	d, _ = s.Lookup(ctx, host.Query{MAC: "52:54:00:bb:00:01", UserClass: "iPXE"})
	if d.Client != "auto-525400bb0001" {
		t.Errorf("second lookup %+v", d)
	}
	if audit, _ := st.ListAudit(ctx, 10); len(audit) != 1 {
		t.Errorf("registered twice: %+v", audit)
	}
	// The script URL registers too (iPXE is asking), from the bound address.
	sc, err := s.Script(ctx, host.ScriptQuery{MAC: "52-54-00-bb-00-02", Peer: leaseOf(t, s, "52:54:00:bb:00:02")})
	if err != nil || !sc.Found || sc.Client != "auto-525400bb0002" || !strings.HasPrefix(sc.Body, "#!ipxe") {
		t.Errorf("Script of an unknown MAC = %+v, %v", sc, err)
	}
	// A name taken by another MAC is not overwritten.
	if err := st.PutClient(ctx, store.Client{Name: "auto-525400bb0003", MAC: "52:54:00:cc:00:03", Image: "lab"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(ctx, host.Query{MAC: "52:54:00:bb:00:03", UserClass: "iPXE"}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("registration onto a taken name: %v, want ErrConflict", err)
	}
	if c, _ := st.GetClient(ctx, "auto-525400bb0003"); c.MAC != "52:54:00:cc:00:03" {
		t.Errorf("taken name overwritten: %+v", c)
	}
}

func TestIgnoreUnknownScript(t *testing.T) {
	b := boot
	b.UnknownClients = hostservices.UnknownIgnore
	s := hostservices.New(b, bootStore(t), nil, hclog.NewNullLogger())
	if sc, err := s.Script(context.Background(), host.ScriptQuery{MAC: "52:54:00:bb:00:01", Peer: leaseOf(t, s, "52:54:00:bb:00:01")}); err != nil || sc.Found {
		t.Errorf("ignore mode: %+v, %v", sc, err)
	}
	if d, _ := s.Lookup(context.Background(), host.Query{MAC: "52:54:00:bb:00:01", UserClass: "iPXE"}); d.Known {
		t.Errorf("ignore mode answered %+v", d)
	}
}

func TestReportForwardsToSessions(t *testing.T) {
	fs := &fakeSessions{}
	s := hostservices.New(boot, bootStore(t), nil, hclog.NewNullLogger(), hostservices.WithSessions(fs))
	err := s.Report(context.Background(), []host.Event{
		{Type: host.EventDHCPDiscover, MAC: "52:54:00:aa:00:01"},
		{Type: "made_up"},
		{Type: host.EventScriptServed, MAC: "52:54:00:aa:00:01"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs.events) != 2 || fs.events[0].Type != host.EventDHCPDiscover || fs.events[1].Type != host.EventScriptServed {
		t.Errorf("tracker got %+v, want the two known events", fs.events)
	}
	if len(s.Recent()) != 2 {
		t.Errorf("recent %+v", s.Recent())
	}
}

// TestRegisterBound: a flood of firmware DISCOVERs from random MACs
// registers boot.max_registered machines and no more; the rest stay
// unknown (not an error), known clients are still answered, and deleting
// registered clients makes room again.
func TestRegisterBound(t *testing.T) {
	st := bootStore(t)
	b := boot
	b.UnknownClients, b.DefaultImage, b.MaxRegistered = hostservices.UnknownRegister, "lab", 3
	s := hostservices.New(b, st, nil, hclog.NewNullLogger(), hostservices.WithSessions(&fakeSessions{}))
	ctx := context.Background()
	known := 0
	for i := range 50 {
		d, err := s.Lookup(ctx, host.Query{MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256), UserClass: "iPXE"})
		if err != nil {
			t.Fatalf("flood lookup %d: %v", i, err)
		}
		if d.Known {
			known++
		}
	}
	if known != 3 {
		t.Errorf("%d flooding MACs registered, want 3 (max_registered)", known)
	}
	if d, err := s.Lookup(ctx, host.Query{MAC: "52:54:00:aa:00:01", UserClass: "iPXE"}); err != nil || !d.Known || d.Client != "pc-01" {
		t.Errorf("known client during the flood: %+v, %v", d, err)
	}
	if sc, err := s.Script(ctx, host.ScriptQuery{MAC: "02-00-00-00-01-00", Peer: leaseOf(t, s, "02:00:00:00:01:00")}); err != nil || sc.Found {
		t.Errorf("script of a MAC past the bound: %+v, %v; want not found", sc, err)
	}
	// The admin deletes the registered clients: registration resumes
	// once the count is taken again (at most every 10 s).
	cs, _ := st.ListClients(ctx)
	for _, c := range cs {
		if c.Labels["dls.origin"] == "register" {
			if err := st.DeleteClient(ctx, c.Name); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		d, err := s.Lookup(ctx, host.Query{MAC: "52:54:00:dd:00:01", UserClass: "iPXE"})
		if err != nil {
			t.Fatal(err)
		}
		if d.Known {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("registration did not resume after the registered clients were deleted")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestScriptCarriesISCSIPort: the iSCSI listener's port reaches the
// script, for a sanboot image and a kernel image alike, and a template
// that writes {{.ISCSIURI}} gets it too.
func TestScriptCarriesISCSIPort(t *testing.T) {
	b := boot
	b.ISCSIPort = 3261
	s := hostservices.New(b, bootStore(t), resolver{err: errNoStorage}, hclog.NewNullLogger(), hostservices.WithSessions(&fakeSessions{}))
	if got := scriptOf(t, s, "52:54:00:aa:00:01", ""); !strings.Contains(got, "\nsanboot iscsi:10.0.0.1::3261:0:"+prefix+":pc-01\n") {
		t.Errorf("sanboot script:\n%s", got)
	}
	if got := scriptOf(t, s, "52:54:00:aa:00:02", hostservices.PlatformEFI); !strings.Contains(got, "\nsanhook iscsi:10.0.0.1::3261:0:"+prefix+":pc-02\n") {
		t.Errorf("kernel script:\n%s", got)
	}
	global := filepath.Join(t.TempDir(), "site.tmpl")
	_ = os.WriteFile(global, []byte("#!ipxe\nsanboot {{.ISCSIURI}}\n"), 0o644)
	ts, err := bootscript.LoadTemplates(global, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetTemplates(ts)
	if got := scriptOf(t, s, "52:54:00:aa:00:01", ""); got != "#!ipxe\nsanboot iscsi:10.0.0.1::3261:0:"+prefix+":pc-01\n" {
		t.Errorf("site template script %q", got)
	}
}
