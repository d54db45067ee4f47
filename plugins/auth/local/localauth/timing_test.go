package localauth

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/base"
)

// TestUnknownUserCostsAHash: Verify of an unknown user, of an empty
// password and of a wrong password take as long as each other (one hash
// with the configured parameters), so timing does not tell which names
// exist. Medians of several runs, with a wide margin: it catches a
// missing hash (100x faster), not noise.
func TestUnknownUserCostsAHash(t *testing.T) {
	p := New()
	cfg := p.NewConfig().(*Config)
	cfg.HashMemoryKiB, cfg.HashIterations, cfg.HashParallelism = 8192, 1, 1
	ctx := context.Background()
	if err := p.Configure(ctx, base.ConfigureRequest{Config: cfg, DataDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateUser(ctx, "alice", "correct horse battery", nil); err != nil {
		t.Fatal(err)
	}
	median := func(user, password string) time.Duration {
		var ds []time.Duration
		for range 7 {
			start := time.Now()
			_, err := p.Verify(ctx, user, password)
			ds = append(ds, time.Since(start))
			if !errors.Is(err, auth.ErrInvalidCredentials) {
				t.Fatalf("Verify(%q, %q) = %v", user, password, err)
			}
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	wrong := median("alice", "wrong password")
	for _, tc := range []struct{ user, password string }{
		{"mallory", "wrong password"},
		{"alice", ""},
		{"Not A Name", "x"},
	} {
		got := median(tc.user, tc.password)
		if got < wrong/5 || got > wrong*5 {
			t.Errorf("Verify(%q, %q) took %v, a wrong password %v: timing tells them apart", tc.user, tc.password, got, wrong)
		}
	}
}
