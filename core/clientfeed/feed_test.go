package clientfeed

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlite"
)

func open(t *testing.T) (store.Store, *Feed, store.Store) {
	t.Helper()
	raw, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "dls.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	f := New(raw)
	return Notify(raw, f), f, raw
}

func client(name, mac, addr string) store.Client {
	c := store.Client{Name: name, MAC: mac, Image: "lab"}
	if addr != "" {
		c.Address = netip.MustParseAddr(addr)
	}
	return c
}

// mirror is a watcher's table, built as a plugin builds it: by MAC,
// checking each version follows the last.
type mirror struct {
	mu      sync.Mutex
	version uint64
	byMAC   map[string]store.Client
	changes chan Change
	err     error
}

func newMirror() *mirror {
	return &mirror{byMAC: map[string]store.Client{}, changes: make(chan Change, 4096)}
}

func (m *mirror) apply(c Change) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !c.Full && c.Version != m.version+1 {
		m.err = fmt.Errorf("version %d after %d", c.Version, m.version)
		return m.err
	}
	if c.Full {
		m.byMAC = map[string]store.Client{}
	}
	for _, mac := range c.Removed {
		delete(m.byMAC, mac)
	}
	for _, cl := range c.Set {
		m.byMAC[cl.MAC] = cl
	}
	m.version = c.Version
	m.changes <- c
	return nil
}

func (m *mirror) get(mac string) (store.Client, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.byMAC[mac]
	return c, ok
}

func (m *mirror) next(t *testing.T) Change {
	t.Helper()
	select {
	case c := <-m.changes:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no change pushed")
	}
	return Change{}
}

func watch(t *testing.T, f *Feed) (*mirror, chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := newMirror()
	done := make(chan error, 1)
	go func() { done <- f.Watch(ctx, m.apply) }()
	t.Cleanup(func() { cancel(); <-done })
	return m, done
}

// TestEveryWritePathPushesTheNextVersion: a snapshot first, then each
// committed write (create, change, MAC change, rename, delete) reaches a
// watcher as the next version before the write returns.
func TestEveryWritePathPushesTheNextVersion(t *testing.T) {
	ctx := context.Background()
	st, f, _ := open(t)
	if err := st.PutClient(ctx, client("pc1", "52:54:00:00:00:01", "10.0.0.11")); err != nil {
		t.Fatal(err)
	}
	m, _ := watch(t, f)
	snap := m.next(t)
	if !snap.Full || len(snap.Set) != 1 || snap.Set[0].Name != "pc1" {
		t.Fatalf("snapshot %+v", snap)
	}
	v := snap.Version

	step := func(what string, write func() error, check func(Change)) {
		t.Helper()
		if err := write(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		// Pushed before the write returned: it is queued already.
		select {
		case c := <-m.changes:
			v++
			if c.Full || c.Version != v {
				t.Fatalf("%s: change %+v, want version %d", what, c, v)
			}
			check(c)
		case <-time.After(time.Second):
			t.Fatalf("%s: nothing pushed", what)
		}
	}
	step("create", func() error { return st.PutClient(ctx, client("pc2", "52:54:00:00:00:02", "")) }, func(c Change) {
		if len(c.Set) != 1 || c.Set[0].Name != "pc2" || len(c.Removed) != 0 {
			t.Errorf("create: %+v", c)
		}
	})
	step("image", func() error {
		c := client("pc1", "52:54:00:00:00:01", "10.0.0.11")
		c.Image = "lab-v2"
		return st.PutClient(ctx, c)
	}, func(c Change) {
		if len(c.Set) != 1 || c.Set[0].Image != "lab-v2" {
			t.Errorf("image: %+v", c)
		}
	})
	step("CHAP rotation", func() error {
		c := client("pc1", "52:54:00:00:00:01", "10.0.0.11")
		c.Image, c.CHAPSecret = "lab-v2", "rotated-secret-0123"
		return st.PutClient(ctx, c)
	}, func(c Change) {
		if c.Set[0].CHAPSecret != "rotated-secret-0123" {
			t.Errorf("chap: %+v", c)
		}
	})
	step("MAC change", func() error { return st.PutClient(ctx, client("pc2", "52:54:00:00:00:22", "")) }, func(c Change) {
		if len(c.Removed) != 1 || c.Removed[0] != "52:54:00:00:00:02" || c.Set[0].MAC != "52:54:00:00:00:22" {
			t.Errorf("mac change: %+v", c)
		}
	})
	step("rename", func() error { return st.RenameClient(ctx, "pc2", "pc3") }, func(c Change) {
		if len(c.Set) != 1 || c.Set[0].Name != "pc3" || len(c.Removed) != 1 || c.Removed[0] != "52:54:00:00:00:22" {
			t.Errorf("rename: %+v", c)
		}
	})
	if got, ok := m.get("52:54:00:00:00:22"); !ok || got.Name != "pc3" {
		t.Errorf("after rename the MAC is %+v %v, want pc3", got, ok)
	}
	step("delete", func() error { return st.DeleteClient(ctx, "pc3") }, func(c Change) {
		if len(c.Removed) != 1 || c.Removed[0] != "52:54:00:00:00:22" || len(c.Set) != 0 {
			t.Errorf("delete: %+v", c)
		}
	})
	// A write that changes nothing pushes nothing.
	if err := st.PutClient(ctx, client("pc1", "52:54:00:00:00:01", "10.0.0.11")); err != nil {
		t.Fatal(err)
	}
	<-m.changes // image back to lab: a change
	v++
	if err := st.PutClient(ctx, client("pc1", "52:54:00:00:00:01", "10.0.0.11")); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-m.changes:
		t.Errorf("an unchanged write pushed %+v", c)
	case <-time.After(100 * time.Millisecond):
	}
	if f.Version() != v {
		t.Errorf("feed version %d, want %d", f.Version(), v)
	}
}

// TestResyncPicksUpWritesThatBypassedTheFeed: another host writing a shared
// database is seen at the next Resync.
func TestResyncPicksUpWritesThatBypassedTheFeed(t *testing.T) {
	ctx := context.Background()
	_, f, raw := open(t)
	if err := raw.PutClient(ctx, client("pc1", "52:54:00:00:00:01", "")); err != nil {
		t.Fatal(err)
	}
	m, _ := watch(t, f)
	m.next(t)
	if err := raw.PutClient(ctx, client("pc2", "52:54:00:00:00:02", "")); err != nil {
		t.Fatal(err)
	}
	if err := raw.DeleteClient(ctx, "pc1"); err != nil {
		t.Fatal(err)
	}
	if err := f.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	c := m.next(t)
	if len(c.Set) != 1 || c.Set[0].Name != "pc2" || len(c.Removed) != 1 || c.Removed[0] != "52:54:00:00:00:01" {
		t.Fatalf("resync pushed %+v", c)
	}
	if _, ok := m.get("52:54:00:00:00:01"); ok {
		t.Error("deleted client still in the watcher's table")
	}
}

// TestSlowWatcherIsCutOffNotBlocking: a watcher that does not take its
// changes never blocks a write; it ends with ErrBehind, and watching
// again gives a snapshot with everything.
func TestSlowWatcherIsCutOffNotBlocking(t *testing.T) {
	ctx := context.Background()
	st, f, _ := open(t)
	stuck := make(chan struct{})
	done := make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	first := make(chan struct{})
	go func() {
		done <- f.Watch(wctx, func(c Change) error {
			if c.Full {
				close(first)
				return nil
			}
			<-stuck
			return nil
		})
	}()
	<-first
	start := time.Now()
	for i := range maxQueued + 10 {
		if err := st.PutClient(ctx, client(fmt.Sprintf("pc%d", i), fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff), "")); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d writes with a stuck watcher: %v", maxQueued+10, time.Since(start))
	close(stuck)
	select {
	case err := <-done:
		if !errors.Is(err, ErrBehind) {
			t.Fatalf("stuck watcher ended with %v, want ErrBehind", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stuck watcher was not cut off")
	}
	m, _ := watch(t, f)
	if snap := m.next(t); !snap.Full || len(snap.Set) != maxQueued+10 {
		t.Fatalf("snapshot after the cut has %d clients, want %d", len(snap.Set), maxQueued+10)
	}
}

// TestConcurrentWritersAndWatchersConverge (run with -race): watchers
// started while clients are written end with the store's table, every
// version in order.
func TestConcurrentWritersAndWatchersConverge(t *testing.T) {
	ctx := context.Background()
	st, f, raw := open(t)
	if err := st.PutClient(ctx, client("seed", "52:54:00:ff:00:00", "")); err != nil {
		t.Fatal(err)
	}
	var mirrors []*mirror
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				name := fmt.Sprintf("w%d-%d", w, i%10)
				mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", w, i%10, i%3)
				var err error
				if i%7 == 6 {
					err = st.DeleteClient(ctx, name)
					if errors.Is(err, store.ErrNotFound) {
						err = nil
					}
				} else {
					err = st.PutClient(ctx, client(name, mac, ""))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
		m, _ := watch(t, f)
		mirrors = append(mirrors, m)
	}
	wg.Wait()
	want, err := raw.ListClients(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range mirrors {
		deadline := time.Now().Add(5 * time.Second)
		for {
			m.mu.Lock()
			v, n, werr := m.version, len(m.byMAC), m.err
			m.mu.Unlock()
			if werr != nil {
				t.Fatalf("watcher %d: %v", i, werr)
			}
			if v == f.Version() && n == len(want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("watcher %d at version %d with %d clients; feed at %d, store has %d", i, v, n, f.Version(), len(want))
			}
			for len(m.changes) > 0 {
				<-m.changes
			}
			time.Sleep(5 * time.Millisecond)
		}
		for _, c := range want {
			if got, ok := m.get(c.MAC); !ok || got.Name != c.Name {
				t.Errorf("watcher %d: %s is %+v, want %s", i, c.MAC, got, c.Name)
			}
		}
	}
}

// TestNotifyKeepsTheSessionBatcher: the wrapped store still writes a boot
// storm's session changes in one transaction when the store can (the
// tracker asks for store.SessionBatcher), and does not claim it when the
// store cannot.
func TestNotifyKeepsTheSessionBatcher(t *testing.T) {
	wrapped, _, raw := open(t)
	if _, ok := raw.(store.SessionBatcher); !ok {
		t.Fatal("the SQLite store has no store.SessionBatcher")
	}
	b, ok := wrapped.(store.SessionBatcher)
	if !ok {
		t.Fatal("Notify hid the store's SessionBatcher")
	}
	out, err := b.WriteSessions(t.Context(), []store.Session{
		{Client: "pc-01", State: store.SessionActive, Started: time.Now()},
		{Client: "pc-02", State: store.SessionActive, Started: time.Now()},
	})
	if err != nil || len(out) != 2 || out[0].ID == 0 || out[1].ID == 0 {
		t.Fatalf("WriteSessions through the wrapper: %v %+v", err, out)
	}
	if _, ok := Notify(onlyStore{raw}, New(raw)).(store.SessionBatcher); ok {
		t.Error("Notify claims a SessionBatcher the store does not have")
	}
}

// onlyStore hides every optional interface of a store.
type onlyStore struct{ store.Store }
