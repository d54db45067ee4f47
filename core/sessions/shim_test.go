package sessions_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dls-project/dls/core/sessions"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
)

// TestShimStages: a client whose image boots through shim goes dhcp →
// shim → grub → script → ...; its session fails at the first of them that
// does not arrive (the firmware refused shim: grub; shim refused GRUB:
// script; GRUB refused the kernel: iscsi_login). The same client's BIOS
// boot (iPXE) and other clients skip the loader stages.
func TestShimStages(t *testing.T) {
	efi := map[string]string{sessions.AttrVendorClass: "PXEClient:Arch:00007:UNDI:003000", sessions.AttrArch: "7"}
	loader := func(l, mac string, at time.Time) host.Event {
		return host.Event{Type: host.EventFileServed, MAC: mac, Time: at, Attrs: map[string]string{host.AttrLoader: l, host.AttrFile: l + ".efi"}}
	}
	for _, tc := range []struct {
		name    string
		arch    map[string]string
		reached []string // after dhcp
		failed  string
	}{
		{"shim refused by the firmware", efi, []string{sessions.StageShim}, sessions.StageGRUB},
		{"GRUB refused by shim", efi, []string{sessions.StageShim, sessions.StageGRUB}, sessions.StageScript},
		{"kernel refused by GRUB", efi, []string{sessions.StageShim, sessions.StageGRUB, sessions.StageScript}, sessions.StageISCSILogin},
		{"no shim at all", efi, nil, sessions.StageShim},
		{"BIOS: iPXE, no loader stages", firmware, nil, sessions.StageScript},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			if err := e.st.PutImage(ctx, store.Image{Name: "signed", Storage: "tank", Boot: &store.BootProfile{
				Kernel: "signed/vmlinuz", Confirm: true, Loader: store.LoaderShim}}); err != nil {
				t.Fatal(err)
			}
			if err := e.st.PutClient(ctx, store.Client{Name: "sb-01", MAC: "52:54:00:5b:00:01", Image: "signed", Persistent: true}); err != nil {
				t.Fatal(err)
			}
			e.report(host.Event{Type: host.EventDHCPDiscover, MAC: "52:54:00:5b:00:01", Time: e.at(0), Attrs: tc.arch})
			for i, st := range tc.reached {
				at := e.at(time.Duration(i+1) * time.Second)
				switch st {
				case sessions.StageScript:
					e.report(ev(host.EventScriptServed, "52:54:00:5b:00:01", at))
				default:
					e.report(loader(st, "52:54:00:5b:00:01", at))
				}
			}
			e.at(time.Duration(len(tc.reached))*time.Second + timeout + time.Second)
			e.tr.Sweep(ctx)
			s := e.only("sb-01")
			if s.State != store.SessionFailed || s.FailedStage != tc.failed {
				t.Errorf("session %s at %q, stages %v; want failed at %s", s.State, s.FailedStage, s.Stages, tc.failed)
			}
			for _, st := range tc.reached {
				if s.Stages[st].IsZero() {
					t.Errorf("stage %s not recorded: %v", st, s.Stages)
				}
			}
		})
	}

	// A sanboot client's session never waits for shim, and a loader's
	// file_served never starts a session.
	e := newEnv(t)
	e.report(loader(sessions.StageShim, mac1, e.at(0)))
	if n := len(e.st.all()); n != 0 {
		t.Errorf("file_served of shim started %d sessions", n)
	}
	e.report(discover(mac1, e.at(time.Second)))
	e.at(timeout + 2*time.Second)
	e.tr.Sweep(context.Background())
	if s := e.only("pc-01"); s.FailedStage != sessions.StageScript {
		t.Errorf("sanboot client failed at %q, want script", s.FailedStage)
	}
}

// TestLoaderFailed: GRUB's report that the kernel was refused fails the
// session at grub at once, given the boot's token and a bound reporter;
// a wrong token, an unbound reporter or a second report change nothing.
func TestLoaderFailed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.st.PutImage(ctx, store.Image{Name: "signed", Storage: "tank", Boot: &store.BootProfile{
		Kernel: "signed/vmlinuz", Confirm: true, Loader: store.LoaderShim}}); err != nil {
		t.Fatal(err)
	}
	const mac = "52:54:00:5b:00:01"
	if err := e.st.PutClient(ctx, store.Client{Name: "sb-01", MAC: mac, Image: "signed", Persistent: true}); err != nil {
		t.Fatal(err)
	}
	e.report(host.Event{Type: host.EventDHCPDiscover, MAC: mac, Time: e.at(0), Attrs: map[string]string{sessions.AttrVendorClass: "PXEClient:Arch:00007:UNDI:003000", sessions.AttrArch: "7"}})
	for i, l := range []string{sessions.StageShim, sessions.StageGRUB} {
		e.report(host.Event{Type: host.EventFileServed, MAC: mac, Time: e.at(time.Duration(i+1) * time.Second), Attrs: map[string]string{host.AttrLoader: l}})
	}
	token, err := e.tr.Token(ctx, "sb-01")
	if err != nil {
		t.Fatal(err)
	}
	e.report(ev(host.EventScriptServed, mac, e.at(3*time.Second)))
	yes := func(string) bool { return true }
	if err := e.tr.LoaderFailed(ctx, "not-the-token", sessions.StageGRUB, yes); !errors.Is(err, sessions.ErrTokenUnknown) {
		t.Errorf("wrong token: %v", err)
	}
	if err := e.tr.LoaderFailed(ctx, token, sessions.StageGRUB, func(string) bool { return false }); err == nil {
		t.Error("an unbound reporter failed the session")
	}
	if s := e.only("sb-01"); s.State == store.SessionFailed {
		t.Fatalf("session failed by a refused report: %+v", s)
	}
	e.at(4 * time.Second)
	if err := e.tr.LoaderFailed(ctx, token, sessions.StageGRUB, yes); err != nil {
		t.Fatal(err)
	}
	s := e.only("sb-01")
	if s.State != store.SessionFailed || s.FailedStage != sessions.StageGRUB || !s.Ended.Equal(e.at(4*time.Second)) {
		t.Errorf("session %s at %q ended %v; want failed at grub, at once", s.State, s.FailedStage, s.Ended)
	}
	if err := e.tr.LoaderFailed(ctx, token, sessions.StageGRUB, yes); !errors.Is(err, sessions.ErrTokenUnknown) {
		t.Errorf("second report: %v", err)
	}
}
