package hostservices_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/examples/storage-file/file"
	"github.com/dls-project/dls/internal/pluginrpc/storagerpc"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
	"github.com/hashicorp/go-hclog"
)

// oneStorage resolves every image to one storage plugin.
type oneStorage struct{ st *storagerpc.Client }

func (o oneStorage) StorageForImage(context.Context, string) (*storagerpc.Client, error) {
	return o.st, nil
}

// TestResetWaitsForTheOldBootsDetach: a non-persistent machine reboots
// without logging out, so at its new boot's DHCP its volume is still
// attached. The reset waits for the next attach: refused while the old
// attach holds the volume, done once it is gone, and only once per boot.
func TestResetWaitsForTheOldBootsDetach(t *testing.T) {
	ctx := context.Background()
	start, _ := plugintest.StorageInProcess(func() storage.Storage { return file.New() })
	st := start(t)
	src := filepath.Join(t.TempDir(), "lab.img")
	if err := os.WriteFile(src, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: src}); err != nil {
		t.Fatal(err)
	}
	_, db := newServices(t)
	s := hostservices.New(boot, db, oneStorage{st}, hclog.NewNullLogger())

	write := func(d volume.Descriptor, b []byte) {
		t.Helper()
		v, err := volume.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		if _, err := v.WriteAt(b, 0); err != nil {
			t.Fatal(err)
		}
		if err := v.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	read := func(d volume.Descriptor) []byte {
		t.Helper()
		v, err := volume.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		b := make([]byte, 4)
		if _, err := v.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		return b
	}

	// Boot 1 attaches and writes; the machine never logs out.
	d, err := s.Attach(ctx, "pc-01")
	if err != nil {
		t.Fatal(err)
	}
	write(d, []byte("MARK"))
	// Boot 2 starts: the reset has to wait.
	if err := s.ResetVolume(ctx, "pc-01"); err != nil {
		t.Fatalf("ResetVolume while attached: %v, want nil (deferred)", err)
	}
	if _, err := s.Attach(ctx, "pc-01"); !errors.Is(err, storage.ErrInUse) {
		t.Fatalf("Attach while boot 1 still holds the volume: %v, want ErrInUse (never boot 1's writes)", err)
	}
	// The protocol plugin lets boot 1's session go.
	if err := s.Detach(ctx, "pc-01"); err != nil {
		t.Fatal(err)
	}
	if d, err = s.Attach(ctx, "pc-01"); err != nil {
		t.Fatal(err)
	}
	if got := read(d); !bytes.Equal(got, make([]byte, 4)) {
		t.Fatalf("boot 2 sees %q, want the image's zeros", got)
	}
	// Boot 2 writes, reconnects within the same boot: its write stays.
	write(d, []byte("TWO!"))
	if err := s.Detach(ctx, "pc-01"); err != nil {
		t.Fatal(err)
	}
	if d, err = s.Attach(ctx, "pc-01"); err != nil {
		t.Fatal(err)
	}
	if got := read(d); string(got) != "TWO!" {
		t.Fatalf("a reconnect within boot 2 sees %q, want its own write", got)
	}
	if err := s.Detach(ctx, "pc-01"); err != nil {
		t.Fatal(err)
	}
	// Boot 3 starts with the volume detached: reset at once.
	if err := s.ResetVolume(ctx, "pc-01"); err != nil {
		t.Fatal(err)
	}
	if d, err = s.Attach(ctx, "pc-01"); err != nil {
		t.Fatal(err)
	}
	if got := read(d); !bytes.Equal(got, make([]byte, 4)) {
		t.Fatalf("boot 3 sees %q, want the image's zeros", got)
	}
}

// TestMaintenanceKeepsTheVolume: a non-persistent client in maintenance
// mode keeps its volume's writes across boots (the boot-time reset is
// skipped) until the mode ends.
func TestMaintenanceKeepsTheVolume(t *testing.T) {
	ctx := context.Background()
	start, _ := plugintest.StorageInProcess(func() storage.Storage { return file.New() })
	st := start(t)
	src := filepath.Join(t.TempDir(), "lab.img")
	if err := os.WriteFile(src, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: src}); err != nil {
		t.Fatal(err)
	}
	_, db := newServices(t)
	s := hostservices.New(boot, db, oneStorage{st}, hclog.NewNullLogger())
	setMaintenance := func(on bool) {
		t.Helper()
		c, err := db.GetClient(ctx, "pc-01")
		if err != nil {
			t.Fatal(err)
		}
		c.Persistent = false
		c.Labels = nil
		if on {
			c.Labels = map[string]string{store.LabelMaintenance: "2026-12-06T03:00:00Z"}
		}
		if err := db.PutClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	first := func() []byte {
		t.Helper()
		d, err := s.Attach(ctx, "pc-01")
		if err != nil {
			t.Fatal(err)
		}
		v, err := volume.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4)
		if _, err := v.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := v.WriteAt([]byte("EDIT"), 0); err != nil {
			t.Fatal(err)
		}
		if err := v.Flush(); err != nil {
			t.Fatal(err)
		}
		v.Close()
		if err := s.Detach(ctx, "pc-01"); err != nil {
			t.Fatal(err)
		}
		return b
	}
	setMaintenance(true)
	first() // boot 1 edits
	if err := s.ResetVolume(ctx, "pc-01"); err != nil {
		t.Fatal(err)
	}
	if got := first(); string(got) != "EDIT" {
		t.Fatalf("boot 2 in maintenance sees %q, want boot 1's edit", got)
	}
	setMaintenance(false)
	if err := s.ResetVolume(ctx, "pc-01"); err != nil {
		t.Fatal(err)
	}
	if got := first(); !bytes.Equal(got, make([]byte, 4)) {
		t.Fatalf("a boot after maintenance sees %q, want the image's zeros", got)
	}
}

// TestPinnedVersion: a client pinned to a version (a staged rollout's
// ring) gets a clone of that version at its boot-time reset, not of the
// current one.
func TestPinnedVersion(t *testing.T) {
	ctx := context.Background()
	start, _ := plugintest.StorageInProcess(func() storage.Storage { return file.New() })
	st := start(t)
	src := filepath.Join(t.TempDir(), "lab.img")
	if err := os.WriteFile(src, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: src}); err != nil {
		t.Fatal(err)
	}
	v2 := filepath.Join(t.TempDir(), "lab-v2.img")
	if err := os.WriteFile(v2, append([]byte("NEW2"), make([]byte, 1<<20-4)...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: v2}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetCurrentVersion(ctx, "lab", 1); err != nil {
		t.Fatal(err)
	}
	_, db := newServices(t)
	s := hostservices.New(boot, db, oneStorage{st}, hclog.NewNullLogger())
	firstBytes := func() string {
		t.Helper()
		d, err := s.Attach(ctx, "pc-01")
		if err != nil {
			t.Fatal(err)
		}
		v, err := volume.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4)
		if _, err := v.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		v.Close()
		if err := s.Detach(ctx, "pc-01"); err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	pin := func(labels map[string]string) {
		t.Helper()
		c, err := db.GetClient(ctx, "pc-01")
		if err != nil {
			t.Fatal(err)
		}
		c.Labels = labels
		if err := db.PutClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := s.ResetVolume(ctx, "pc-01"); err != nil {
			t.Fatal(err)
		}
	}
	// pc-02, pinned before its volume exists: its first attach makes it
	// from the pinned version.
	c2, err := db.GetClient(ctx, "pc-02")
	if err != nil {
		t.Fatal(err)
	}
	c2.Labels = map[string]string{store.LabelVersion: "2"}
	if err := db.PutClient(ctx, c2); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Attach(ctx, "pc-02"); err != nil {
		t.Fatal(err)
	} else {
		v, err := volume.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4)
		if _, err := v.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		v.Close()
		if string(b) != "NEW2" {
			t.Errorf("pc-02's first volume, pinned to 2: %q, want version 2", b)
		}
	}
	pin(nil)
	if got := firstBytes(); got != "\x00\x00\x00\x00" {
		t.Fatalf("unpinned: %q, want version 1's zeros", got)
	}
	pin(map[string]string{store.LabelVersion: "2"})
	if got := firstBytes(); got != "NEW2" {
		t.Fatalf("pinned to 2: %q, want version 2", got)
	}
	c, _ := db.GetClient(ctx, "pc-01")
	c.Labels = map[string]string{store.LabelVersion: "two"}
	if err := db.PutClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := s.ResetVolume(ctx, "pc-01"); err == nil || !strings.Contains(err.Error(), "no version number") {
		t.Errorf("pin \"two\": %v, want an error naming the label", err)
	}
}
