package hostservices_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/examples/storage-file/file"
	"github.com/dls-project/dls/internal/pluginrpc/storagerpc"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
	"github.com/hashicorp/go-hclog"
)

// countingStorage counts the volumes a storage plugin really creates and
// how many creations run at once; while gate is open (not nil and not
// closed) each creation waits for it.
type countingStorage struct {
	storage.Storage
	gate     chan struct{}
	calls    atomic.Int32 // CreateVolume calls
	made     atomic.Int32 // volumes created (not ErrExists)
	running  atomic.Int32
	maxAtOne atomic.Int32
}

func (c *countingStorage) CreateVolume(ctx context.Context, req storage.VolumeRequest) (storage.Volume, error) {
	c.calls.Add(1)
	n := c.running.Add(1)
	defer c.running.Add(-1)
	for {
		m := c.maxAtOne.Load()
		if n <= m || c.maxAtOne.CompareAndSwap(m, n) {
			break
		}
	}
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return storage.Volume{}, ctx.Err()
		}
	}
	v, err := c.Storage.CreateVolume(ctx, req)
	if err == nil {
		c.made.Add(1)
	}
	return v, err
}

// prepFixture is host services on a file storage plugin wrapped in a
// countingStorage, holding image "lab", with the clients of newServices
// plus extra ones; its volume preparation runs until the test ends.
func prepFixture(t *testing.T, gate chan struct{}, extra int, opts ...hostservices.Option) (*hostservices.Services, store.Store, *storagerpc.Client, *countingStorage) {
	t.Helper()
	ctx := context.Background()
	cs := &countingStorage{Storage: file.New(), gate: gate}
	start, _ := plugintest.StorageInProcess(func() storage.Storage { return cs })
	st := start(t)
	src := filepath.Join(t.TempDir(), "lab.img")
	if err := os.WriteFile(src, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: src}); err != nil {
		t.Fatal(err)
	}
	_, db := newServices(t)
	for i := 0; i < extra; i++ {
		if err := db.PutClient(ctx, store.Client{Name: fmt.Sprintf("m-%03d", i), MAC: fmt.Sprintf("52:54:00:bb:00:%02x", i), Image: "lab"}); err != nil {
			t.Fatal(err)
		}
	}
	s := hostservices.New(boot, db, oneStorage{st}, hclog.NewNullLogger(), opts...)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.RunVolumePrep(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	return s, db, st, cs
}

// volumeExists reports whether the storage holds volume name.
func volumeExists(t *testing.T, st *storagerpc.Client, name string) bool {
	t.Helper()
	vs, err := st.ListVolumes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Name == name {
			return true
		}
	}
	return false
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestDeclaredClientVolumeExistsWithoutLogin: a declared client's clone is
// made in the background; no Attach (iSCSI login) is needed for it.
func TestDeclaredClientVolumeExistsWithoutLogin(t *testing.T) {
	s, _, st, cs := prepFixture(t, nil, 0)
	if volumeExists(t, st, "pc-01") {
		t.Fatal("pc-01's volume exists before anything asked for it")
	}
	s.PrepareVolume("pc-01")
	waitFor(t, "pc-01's volume", func() bool { return volumeExists(t, st, "pc-01") })
	if volumeExists(t, st, "pc-02") {
		t.Fatal("pc-02's volume was made: only pc-01 was declared")
	}
	// The login now only opens it.
	if _, err := s.Attach(context.Background(), "pc-01"); err != nil {
		t.Fatal(err)
	}
	if got := cs.made.Load(); got != 1 {
		t.Fatalf("%d volumes created, want 1", got)
	}
}

// TestPrepareAllVolumesAndBootEvent: the first DHCP event of a boot
// makes the volume of a client nobody prepared yet; at start every client
// of the store is prepared; a volume known to exist costs a boot event no
// call to the storage.
func TestPrepareAllVolumesAndBootEvent(t *testing.T) {
	ctx := context.Background()
	s, _, st, cs := prepFixture(t, nil, 0)
	discover := func(client, mac string) {
		t.Helper()
		if err := s.Report(ctx, []host.Event{{Type: host.EventDHCPDiscover, MAC: mac, Client: client, Time: time.Now()}}); err != nil {
			t.Fatal(err)
		}
	}
	discover("pc-02", "52:54:00:aa:00:02")
	waitFor(t, "pc-02's volume after its DHCP discover", func() bool { return volumeExists(t, st, "pc-02") })
	if volumeExists(t, st, "pc-01") {
		t.Fatal("pc-01's volume was made: neither declared nor booting")
	}
	if err := s.PrepareAllVolumes(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both volumes", func() bool {
		return volumeExists(t, st, "pc-01") && s.VolumesPending() == 0 && cs.running.Load() == 0
	})
	calls := cs.calls.Load()
	discover("pc-01", "52:54:00:aa:00:01")
	discover("pc-02", "52:54:00:aa:00:02")
	time.Sleep(50 * time.Millisecond)
	if got := cs.calls.Load(); got != calls {
		t.Fatalf("boot events of prepared clients made %d CreateVolume calls, want none", got-calls)
	}
	if got := cs.made.Load(); got != 2 {
		t.Fatalf("%d volumes created, want 2", got)
	}
}

// TestLoginWaitsForBackgroundCreation: a login that comes while the
// background creation of its volume runs waits for it and opens that
// volume; the clone is made once.
func TestLoginWaitsForBackgroundCreation(t *testing.T) {
	gate := make(chan struct{})
	s, _, _, cs := prepFixture(t, gate, 0)
	s.PrepareVolume("pc-01")
	waitFor(t, "the background creation to start", func() bool { return cs.calls.Load() == 1 })
	attached := make(chan error, 1)
	go func() {
		_, err := s.Attach(context.Background(), "pc-01")
		attached <- err
	}()
	select {
	case err := <-attached:
		t.Fatalf("Attach returned (%v) while its volume was still being created", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(gate)
	if err := <-attached; err != nil {
		t.Fatal(err)
	}
	if got := cs.calls.Load(); got != 1 {
		t.Fatalf("%d CreateVolume calls, want 1: the login must not create a second time", got)
	}
	if got := cs.made.Load(); got != 1 {
		t.Fatalf("%d volumes created, want 1", got)
	}
}

// TestPrepareIsIdempotent: preparing, again and again and concurrently with
// logins, never makes a volume twice nor replaces one holding writes.
func TestPrepareIsIdempotent(t *testing.T) {
	ctx := context.Background()
	s, _, _, cs := prepFixture(t, nil, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); s.PrepareVolume("pc-01") }()
		go func() {
			defer wg.Done()
			if _, err := s.Attach(ctx, "pc-01"); err != nil && !errors.Is(err, storage.ErrInUse) {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitFor(t, "the queue to drain", func() bool { return s.VolumesPending() == 0 })
	if got := cs.made.Load(); got != 1 {
		t.Fatalf("%d volumes created, want 1", got)
	}
	// Writes survive a later preparation.
	_ = s.Detach(ctx, "pc-01")
	d, err := s.Attach(ctx, "pc-01")
	if err != nil {
		t.Fatal(err)
	}
	v, err := volume.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt([]byte("MARK"), 0); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	v.Close()
	if err := s.Detach(ctx, "pc-01"); err != nil {
		t.Fatal(err)
	}
	calls := cs.calls.Load()
	s.PrepareVolume("pc-01")
	waitFor(t, "the preparation to run", func() bool { return cs.calls.Load() > calls && s.VolumesPending() == 0 })
	if d, err = s.Attach(ctx, "pc-01"); err != nil {
		t.Fatal(err)
	}
	v, err = volume.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	b := make([]byte, 4)
	if _, err := v.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, []byte("MARK")) {
		t.Fatalf("after preparing again the volume holds %q, want the write MARK", b)
	}
	if got := cs.made.Load(); got != 1 {
		t.Fatalf("%d volumes created, want 1", got)
	}
}

// TestPrepareIsBounded: a storm of declared clients is cloned at most
// WithVolumeWorkers at a time, and every one gets its volume.
func TestPrepareIsBounded(t *testing.T) {
	ctx := context.Background()
	gate := make(chan struct{})
	s, _, st, cs := prepFixture(t, gate, 20, hostservices.WithVolumeWorkers(3))
	if err := s.PrepareAllVolumes(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 creations running", func() bool { return cs.running.Load() == 3 })
	time.Sleep(50 * time.Millisecond) // a fourth would start now if it could
	if got := cs.maxAtOne.Load(); got != 3 {
		t.Fatalf("%d creations at once, want 3", got)
	}
	close(gate)
	waitFor(t, "22 volumes", func() bool { return cs.made.Load() == 22 })
	if got := cs.maxAtOne.Load(); got != 3 {
		t.Fatalf("%d creations at once, want at most 3", got)
	}
	if !volumeExists(t, st, "m-019") {
		t.Fatal("m-019 has no volume")
	}
}

// TestBootingClientFirst: a client whose boot has started (its DHCP) is
// prepared before clients merely declared, queued earlier.
func TestBootingClientFirst(t *testing.T) {
	ctx := context.Background()
	gate := make(chan struct{})
	s, _, st, cs := prepFixture(t, gate, 5, hostservices.WithVolumeWorkers(1))
	if err := s.PrepareAllVolumes(ctx); err != nil { // m-000 … m-004, pc-01, pc-02
		t.Fatal(err)
	}
	waitFor(t, "the first creation", func() bool { return cs.running.Load() == 1 })
	if err := s.Report(ctx, []host.Event{{Type: host.EventDHCPDiscover, MAC: "52:54:00:aa:00:02", Client: "pc-02", Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	gate <- struct{}{} // the first one (m-000) finishes
	gate <- struct{}{} // the next one is let through: pc-02's
	waitFor(t, "two volumes", func() bool { return cs.made.Load() == 2 })
	if !volumeExists(t, st, "pc-02") {
		t.Fatal("pc-02, booting, was not prepared next")
	}
	if volumeExists(t, st, "m-001") {
		t.Fatal("m-001 was prepared before the booting pc-02")
	}
	close(gate)
	waitFor(t, "every volume", func() bool { return cs.made.Load() == 7 })
}
