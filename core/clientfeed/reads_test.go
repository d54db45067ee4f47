package clientfeed

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dls-project/dls/core/store"
)

// countReads counts the reads of one client that reach the store.
type countReads struct {
	store.Clients
	n atomic.Int64
}

func (c *countReads) GetClient(ctx context.Context, name string) (store.Client, error) {
	c.n.Add(1)
	return c.Clients.GetClient(ctx, name)
}

func (c *countReads) ClientByMAC(ctx context.Context, mac string) (store.Client, error) {
	c.n.Add(1)
	return c.Clients.ClientByMAC(ctx, mac)
}

func (c *countReads) ClientByInitiator(ctx context.Context, iqn string) (store.Client, error) {
	c.n.Add(1)
	return c.Clients.ClientByInitiator(ctx, iqn)
}

// same compares two answers to one read: the table's and the store's.
func same(t *testing.T, what string, got store.Client, gotErr error, want store.Client, wantErr error) {
	t.Helper()
	if errors.Is(wantErr, store.ErrNotFound) != errors.Is(gotErr, store.ErrNotFound) || (wantErr == nil) != (gotErr == nil) {
		t.Errorf("%s: error %v, the store says %v", what, gotErr, wantErr)
		return
	}
	if wantErr == nil && (!sameClient(got, want) || got.Name != want.Name) {
		t.Errorf("%s: %+v, the store says %+v", what, got, want)
	}
}

// TestReadsFollowEveryWrite: after each kind of write, the host's reads
// answered from the table are the store's answers, and none reached the
// store.
func TestReadsFollowEveryWrite(t *testing.T) {
	ctx := context.Background()
	st, f, raw := open(t)
	pc1 := client("pc1", "52:54:00:00:00:01", "10.0.0.11")
	pc1.Initiators = []string{"iqn.2026-12.lab:extra-1"}
	pc1.Labels = map[string]string{"ring": "canary"}
	if err := st.PutClient(ctx, pc1); err != nil {
		t.Fatal(err)
	}
	if err := f.Load(ctx); err != nil {
		t.Fatal(err)
	}
	counted := &countReads{Clients: st}
	r := Reads(counted, f)

	// Readers run beside the writers (go test -race).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				_, _ = r.ClientByMAC(ctx, "52:54:00:00:00:01")
				_, _ = r.GetClient(ctx, "pc2")
			}
		}
	}()

	names := []string{"pc1", "pc2", "pc3", "nobody"}
	macs := []string{"52:54:00:00:00:01", "52-54-00-00-00-02", "52:54:00:00:00:0A", "52:54:00:00:00:22", "02:00:00:00:00:99"}
	iqns := []string{"IQN.2026-12.LAB:EXTRA-1", "iqn.2026-12.lab:extra-2", "iqn.2026-12.lab:none"}
	check := func(step string) {
		t.Helper()
		for _, n := range names {
			got, gotErr := r.GetClient(ctx, n)
			want, wantErr := raw.GetClient(ctx, n)
			same(t, step+": GetClient "+n, got, gotErr, want, wantErr)
		}
		for _, m := range macs {
			got, gotErr := r.ClientByMAC(ctx, m)
			want, wantErr := raw.ClientByMAC(ctx, m)
			same(t, step+": ClientByMAC "+m, got, gotErr, want, wantErr)
		}
		for _, q := range iqns {
			got, gotErr := r.ClientByInitiator(ctx, q)
			want, wantErr := raw.ClientByInitiator(ctx, q)
			same(t, step+": ClientByInitiator "+q, got, gotErr, want, wantErr)
		}
	}
	write := func(step string, w func() error) {
		t.Helper()
		if err := w(); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		check(step)
	}
	check("loaded")
	write("create", func() error { return st.PutClient(ctx, client("pc2", "52:54:00:00:00:02", "")) })
	write("MAC change", func() error {
		c := pc1
		c.MAC = "52:54:00:00:00:0a"
		return st.PutClient(ctx, c)
	})
	write("old MAC taken by another client", func() error { return st.PutClient(ctx, client("pc2", "52:54:00:00:00:01", "")) })
	write("initiator moved", func() error {
		c := pc1
		c.MAC, c.Initiators = "52:54:00:00:00:0a", nil
		if err := st.PutClient(ctx, c); err != nil {
			return err
		}
		c2 := client("pc2", "52:54:00:00:00:01", "")
		c2.Initiators = []string{"iqn.2026-12.lab:extra-1", "iqn.2026-12.lab:extra-2"}
		return st.PutClient(ctx, c2)
	})
	write("rename", func() error { return st.RenameClient(ctx, "pc2", "pc3") })
	write("delete", func() error { return st.DeleteClient(ctx, "pc3") })
	close(stop)
	wg.Wait()
	if n := counted.n.Load(); n != 0 {
		t.Errorf("%d reads reached the store; the table should have answered them all", n)
	}

	// What a caller changes in its copy stays out of the table.
	c, err := r.GetClient(ctx, "pc1")
	if err != nil {
		t.Fatal(err)
	}
	c.Labels["ring"] = "changed"
	if again, _ := r.GetClient(ctx, "pc1"); again.Labels["ring"] != "canary" {
		t.Errorf("a caller's change reached the table: %v", again.Labels)
	}

	// A write that bypassed this host is seen at the next Resync.
	if err := raw.PutClient(ctx, client("pc4", "52:54:00:00:00:04", "")); err != nil {
		t.Fatal(err)
	}
	if err := f.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := r.ClientByMAC(ctx, "52:54:00:00:00:04"); err != nil || c.Name != "pc4" {
		t.Errorf("after Resync: %+v %v, want pc4", c, err)
	}
}

// TestReadsWithoutTableAskTheStore: before Load, and after a failed
// read-back dropped the table, every read goes to the store; Resync loads
// the table again.
func TestReadsWithoutTableAskTheStore(t *testing.T) {
	ctx := context.Background()
	st, f, _ := open(t)
	if err := st.PutClient(ctx, client("pc1", "52:54:00:00:00:01", "")); err != nil {
		t.Fatal(err)
	}
	counted := &countReads{Clients: st}
	r := Reads(counted, f)
	if c, err := r.GetClient(ctx, "pc1"); err != nil || c.Name != "pc1" {
		t.Fatalf("not loaded: %+v %v", c, err)
	}
	if counted.n.Load() != 1 {
		t.Fatalf("not loaded: %d store reads, want 1", counted.n.Load())
	}
	if err := f.Load(ctx); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.resetLocked() // what a failed read-back does
	f.mu.Unlock()
	if _, err := r.ClientByMAC(ctx, "52:54:00:00:00:01"); err != nil || counted.n.Load() != 2 {
		t.Fatalf("dropped table: %v, %d store reads, want 2", err, counted.n.Load())
	}
	if err := f.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ClientByMAC(ctx, "52:54:00:00:00:01"); err != nil || counted.n.Load() != 2 {
		t.Fatalf("after Resync: %v, %d store reads, want still 2", err, counted.n.Load())
	}
}

// TestNotifyBatchesClients: the wrapped store batches client writes
// (store.ClientBatcher, which the host's registrations use) and pushes
// the whole batch as one change.
func TestNotifyBatchesClients(t *testing.T) {
	ctx := context.Background()
	st, f, _ := open(t)
	b, ok := st.(store.ClientBatcher)
	if !ok {
		t.Fatal("Notify hides store.ClientBatcher")
	}
	m, _ := watch(t, f)
	m.next(t)
	entry := store.AuditEntry{Actor: "host", Action: "client.register", Object: "client/reg"}
	if err := b.PutClientsAudited(ctx, []store.Client{client("reg-1", "52:54:00:00:01:01", ""), client("reg-2", "52:54:00:00:01:02", "")},
		[]store.AuditEntry{entry, entry}); err != nil {
		t.Fatal(err)
	}
	if c := m.next(t); len(c.Set) != 2 {
		t.Errorf("pushed %+v, want both clients", c)
	}
	if c, found, ok := f.ClientByMAC("52:54:00:00:01:02"); !ok || !found || c.Name != "reg-2" {
		t.Errorf("table: %+v found %v loaded %v", c, found, ok)
	}
}
