package initiator

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/plugins/protocol/iscsi/target"
)

const (
	tgtName  = "iqn.2026-11.io.dls:pc-01"
	initName = "iqn.2026-11.io.dls:initiator:pc-01"
	secret   = "Pc1Secret12345"
	mutual   = "Pc1Mutual12345"
)

// fileVolume is a target.Volume over a temporary file.
type fileVolume struct{ *os.File }

func (v fileVolume) Size() int64                { return 1 << 20 }
func (v fileVolume) BlockSize() uint32          { return 512 }
func (v fileVolume) Flush() error               { return v.Sync() }
func (v fileVolume) Discard(off, n int64) error { return nil }

// resolver serves one CHAP-protected target, with a mutual secret when
// mutual is set, and remembers the peers that asked.
type resolver struct {
	dir    string
	mutual string
	mu     sync.Mutex
	peers  []netip.Addr
}

func (r *resolver) Authorize(_ context.Context, q target.Request) (target.Access, error) {
	r.mu.Lock()
	r.peers = append(r.peers, q.Peer)
	r.mu.Unlock()
	return target.Access{
		Known: q.Target == "" || q.Target == tgtName, Allowed: q.Initiator == initName, Client: "pc-01", Name: tgtName,
		CHAPUser: initName, CHAPSecret: secret, MutualSecret: r.mutual,
	}, nil
}

func (r *resolver) Discover(context.Context, string) ([]string, error) { return []string{tgtName}, nil }

func (r *resolver) Attach(context.Context, string, target.Access) (target.Volume, error) {
	f, err := os.CreateTemp(r.dir, "vol")
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(1 << 20); err != nil {
		f.Close()
		return nil, err
	}
	return fileVolume{f}, nil
}

func (r *resolver) Detach(context.Context, string, target.Access) {}

func (r *resolver) lastPeer() netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.peers[len(r.peers)-1]
}

func serve(t *testing.T, mutual string) (string, *resolver) {
	t.Helper()
	r := &resolver{dir: t.TempDir(), mutual: mutual}
	srv := &target.Server{Resolver: r, LoginTimeout: 5 * time.Second, RefusedLoginLimit: -1}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(t.Context(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	})
	return ln.Addr().String(), r
}

func status(err error) uint16 {
	var le *LoginError
	if errors.As(err, &le) {
		return le.Status
	}
	return 0
}

func TestCHAPOneWayAndLocalAddress(t *testing.T) {
	addr, r := serve(t, "")
	ctx := context.Background()
	cfg := Config{Addr: addr, InitiatorName: initName, TargetName: tgtName, CHAPUser: initName, CHAPSecret: secret, LocalAddr: "127.0.0.2"}
	s, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.TestUnitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.Conn().LocalAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.2" {
		t.Errorf("connection from %s, want 127.0.0.2", got)
	}
	if p := r.lastPeer(); p != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("target saw the peer %s, want 127.0.0.2", p)
	}
	_ = s.Logout(ctx)

	// Discovery with the same CHAP.
	list, err := Discover(ctx, Config{Addr: addr, InitiatorName: initName, CHAPUser: initName, CHAPSecret: secret})
	if err != nil || len(list) != 1 || list[0].Name != tgtName {
		t.Errorf("discovery: %+v %v", list, err)
	}

	for _, c := range []struct {
		name string
		mod  func(*Config)
	}{
		{"wrong secret", func(c *Config) { c.CHAPSecret = "WrongSecret123" }},
		{"wrong name", func(c *Config) { c.CHAPUser = "iqn.2026-11.io.dls:initiator:pc-02" }},
		{"no CHAP", func(c *Config) { c.CHAPUser, c.CHAPSecret = "", "" }},
	} {
		cfg := cfg
		c.mod(&cfg)
		if _, err := Dial(ctx, cfg); status(err) != LoginAuthFailure {
			t.Errorf("%s: %v, want a login refused with 0x0201", c.name, err)
		}
	}
	cfg.LocalAddr = "not-an-ip"
	if _, err := Dial(ctx, cfg); err == nil || !strings.Contains(err.Error(), "not-an-ip") {
		t.Errorf("bad local address: %v", err)
	}
}

func TestCHAPMutual(t *testing.T) {
	ctx := context.Background()
	addr, _ := serve(t, mutual)
	cfg := Config{Addr: addr, InitiatorName: initName, TargetName: tgtName, CHAPUser: initName, CHAPSecret: secret,
		MutualUser: tgtName, MutualSecret: mutual}
	s, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Logout(ctx)
	// The target answers with another secret, or as another name: the
	// initiator refuses it.
	for _, mod := range []func(*Config){
		func(c *Config) { c.MutualSecret = "NotTheMutual123" },
		func(c *Config) { c.MutualUser = "iqn.2026-11.io.dls:pc-02" },
	} {
		cfg := cfg
		mod(&cfg)
		if _, err := Dial(ctx, cfg); err == nil || !strings.Contains(err.Error(), "mutual") {
			t.Errorf("%+v: %v, want the target's mutual CHAP refused", cfg, err)
		}
	}
	// A target with no mutual secret refuses to be challenged.
	addr2, _ := serve(t, "")
	cfg.Addr = addr2
	if _, err := Dial(ctx, cfg); status(err) != LoginAuthFailure {
		t.Errorf("mutual CHAP against a target without a mutual secret: %v", err)
	}
}
