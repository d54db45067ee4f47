package hostservices

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

// batches records what each transaction held; the first one waits on hold.
type batches struct {
	mu    sync.Mutex
	sizes []int
	names [][]string
	hold  chan struct{}
	bad   string // a client whose transaction fails with ErrConflict
}

func (b *batches) PutClientsAudited(_ context.Context, cs []store.Client, audit []store.AuditEntry) error {
	b.mu.Lock()
	first := len(b.sizes) == 0
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	b.sizes = append(b.sizes, len(cs))
	b.names = append(b.names, names)
	b.mu.Unlock()
	if first && b.hold != nil {
		<-b.hold
	}
	if len(audit) != len(cs) {
		return fmt.Errorf("%d entries for %d clients", len(audit), len(cs))
	}
	if slices.Contains(names, b.bad) {
		return fmt.Errorf("mac taken: %w", store.ErrConflict)
	}
	return nil
}

func reg(name string) (store.Client, store.AuditEntry) {
	return store.Client{Name: name}, store.AuditEntry{Action: "client.register", Object: "client/" + name}
}

// TestRegistrationsGroupCommit: what queues while a transaction is written
// goes in the next one, all together; a retransmit shares the first's
// write; one bad registration fails alone.
func TestRegistrationsGroupCommit(t *testing.T) {
	ctx := context.Background()
	b := &batches{hold: make(chan struct{}), bad: "pc-bad"}
	r := registrations{write: b.PutClientsAudited}

	errs := make(map[string]error)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := func(name string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, e := reg(name)
			joined, err := r.put(ctx, c, e)
			mu.Lock()
			if joined {
				name += " (joined)"
			}
			errs[name] = err
			mu.Unlock()
		}()
	}
	start("pc-0") // writes alone, held
	waitFor(t, func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.sizes) == 1 })
	for i := 1; i <= 20; i++ {
		start(fmt.Sprintf("pc-%d", i))
	}
	start("pc-bad")
	waitFor(t, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.pending) == 21 })
	start("pc-5") // the same machine again
	waitFor(t, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.byName["pc-5"].joined == 1 })
	close(b.hold)
	wg.Wait()

	// pc-0 alone, the 21 queued in one, which failed on pc-bad; then each
	// of them alone.
	if len(b.sizes) != 2+21 || b.sizes[0] != 1 || b.sizes[1] != 21 {
		t.Fatalf("transactions of %v clients, want 1, 21, then 21 of 1", b.sizes)
	}
	for name, err := range errs {
		if name == "pc-bad" {
			if !errors.Is(err, store.ErrConflict) {
				t.Errorf("pc-bad: %v, want ErrConflict", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, ok := errs["pc-5 (joined)"]; len(errs) != 23 || !ok {
		t.Errorf("%d outcomes, want 23 (pc-5 a second time, joined)", len(errs))
	}
	if r.writing || len(r.byName) != 0 || len(r.pending) != 0 {
		t.Errorf("left behind: writing %v, %d named, %d pending", r.writing, len(r.byName), len(r.pending))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}
