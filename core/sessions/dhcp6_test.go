package sessions_test

import (
	"context"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/dls-project/dls/core/sessions"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
)

// solicit6 is the dhcp_discover the DHCPv6 plugin reports for a Solicit
// with the given class attributes (family ipv6, as dhcp6d sets it).
func solicit6(mac string, at time.Time, attrs map[string]string) host.Event {
	a := map[string]string{host.AttrFamily: host.FamilyIPv6}
	for k, v := range attrs {
		a[k] = v
	}
	return host.Event{Type: host.EventDHCPDiscover, MAC: mac, Time: at, Attrs: a}
}

// reached lists the stages s recorded, in time order.
func reached(s store.Session) []string {
	out := make([]string, 0, len(s.Stages))
	for st := range s.Stages {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return s.Stages[out[i]].Before(s.Stages[out[j]]) })
	return out
}

var ipxe6 = map[string]string{sessions.AttrUserClass: "iPXE", sessions.AttrArch: "0"}

// TestDHCP6Stage: a boot that starts with a firmware DHCPv6 Solicit (iPXE
// on an IPv6-only segment) starts a session whose first stage is dhcp6,
// records its IPv6 lease as the session's address and ends done; the
// stage list has no dhcp.
func TestDHCP6Stage(t *testing.T) {
	e := newEnv(t)
	e.report(solicit6(mac1, e.at(0), ipxe6))
	e.report(host.Event{Type: host.EventDHCPAck, MAC: mac1, Address: "fd00:77::1:5", Time: e.at(time.Second),
		Attrs: map[string]string{host.AttrFamily: host.FamilyIPv6}})
	e.report(host.Event{Type: host.EventScriptServed, MAC: mac1, Client: "pc-01", Address: "fd00:77::1:5", Time: e.at(2 * time.Second)})
	e.report(clientEv(host.EventISCSILogin, "pc-01", e.at(3*time.Second)))
	e.report(clientEv(host.EventISCSIHandoff, "pc-01", e.at(4*time.Second)))
	s := e.only("pc-01")
	want := []string{sessions.StageDHCP6, sessions.StageScript, sessions.StageISCSILogin, sessions.StageHandoff}
	if s.State != store.SessionDone || !slices.Equal(reached(s), want) {
		t.Fatalf("session %s, stages %v; want done with %v", s.State, reached(s), want)
	}
	if s.Address != "fd00:77::1:5" || !s.Started.Equal(t0) || !s.Ended.Equal(t0.Add(4*time.Second)) {
		t.Errorf("address %q, started %s, ended %s", s.Address, s.Started, s.Ended)
	}
	if h := e.histogram(); h.GetSampleCount() != 1 || h.GetSampleSum() != 4 {
		t.Errorf("boot time: %d samples, sum %v; want one of 4 s", h.GetSampleCount(), h.GetSampleSum())
	}
}

// TestDHCP6NotFromFirmware: an OS's DHCPv6 Solicit (no vendor class, user
// class or arch) neither starts a session nor restarts a running one.
func TestDHCP6NotFromFirmware(t *testing.T) {
	e := newEnv(t)
	e.report(solicit6(mac1, e.at(0), nil))
	if n := len(e.st.all()); n != 0 {
		t.Fatalf("an OS's Solicit started %d sessions", n)
	}
	e.report(solicit6(mac1, e.at(time.Second), ipxe6))
	e.report(ev(host.EventScriptServed, mac1, e.at(2*time.Second)))
	e.report(solicit6(mac1, e.at(time.Minute), nil)) // the booted OS asks for an address
	s := e.only("pc-01")
	if s.State != store.SessionActive || !slices.Equal(reached(s), []string{sessions.StageDHCP6, sessions.StageScript}) {
		t.Errorf("session %s, stages %v; want active at dhcp6, script", s.State, reached(s))
	}
}

// TestDualStackDiscovers: iPXE configures IPv4 and IPv6 at once; its
// DHCPv4 discover and DHCPv6 Solicit, in either order and beyond the
// restart grace, belong to one boot, whose address stays the one of the
// family that answered first.
func TestDualStackDiscovers(t *testing.T) {
	for _, v6first := range []bool{false, true} {
		e := newEnv(t)
		first, second := discover(mac1, e.at(0)), solicit6(mac1, t0.Add(15*time.Second), ipxe6)
		if v6first {
			first, second = solicit6(mac1, e.at(0), ipxe6), discover(mac1, t0.Add(15*time.Second))
		}
		e.report(first)
		acks := []host.Event{
			{Type: host.EventDHCPAck, MAC: mac1, Address: "192.168.77.21", Time: t0.Add(time.Second)},
			{Type: host.EventDHCPAck, MAC: mac1, Address: "fd00:77::1:5", Time: t0.Add(15 * time.Second)},
		}
		want := "192.168.77.21"
		if v6first {
			acks[0].Address, acks[1].Address, want = acks[1].Address, acks[0].Address, "fd00:77::1:5"
		}
		e.report(acks[0])
		e.report(second)
		e.report(acks[1])
		e.report(ev(host.EventScriptServed, mac1, e.at(16*time.Second)))
		s := e.only("pc-01")
		if got := reached(s); s.State != store.SessionActive || len(got) != 3 || got[2] != sessions.StageScript {
			t.Errorf("v6 first %v: session %s, stages %v; want one active session with dhcp, dhcp6, script", v6first, s.State, got)
		}
		// The session keeps the address of the family it got first.
		if s.Address != want {
			t.Errorf("v6 first %v: session address %q, want %q", v6first, s.Address, want)
		}
	}
}

// TestDHCP6Reboot: a firmware Solicit after the session went past its
// DHCP stages (beyond the grace) is a new boot: the old session fails at
// its pending stage and a new one starts at dhcp6.
func TestDHCP6Reboot(t *testing.T) {
	e := newEnv(t)
	e.report(solicit6(mac1, e.at(0), ipxe6))
	e.report(ev(host.EventScriptServed, mac1, e.at(time.Second)))
	e.report(solicit6(mac1, e.at(time.Minute), ipxe6))
	var failed, active []store.Session
	for _, s := range e.st.all() {
		switch s.State {
		case store.SessionFailed:
			failed = append(failed, s)
		case store.SessionActive:
			active = append(active, s)
		}
	}
	if len(failed) != 1 || failed[0].FailedStage != sessions.StageISCSILogin {
		t.Errorf("failed sessions %+v, want one at iscsi_login", failed)
	}
	if len(active) != 1 || !slices.Equal(reached(active[0]), []string{sessions.StageDHCP6}) {
		t.Errorf("active sessions %+v, want one at dhcp6", active)
	}
}

// TestDHCP6IsNoFailureStage: dhcp6 is optional. A boot at dhcp6 that goes
// no further fails at script; an IPv4 boot never waits for dhcp6; no
// failure series exists for it.
func TestDHCP6IsNoFailureStage(t *testing.T) {
	e := newEnv(t)
	e.report(solicit6(mac1, e.at(0), ipxe6))
	e.report(discover(mac3, e.at(0)))
	e.at(timeout + time.Second)
	e.tr.Sweep(context.Background())
	for _, c := range []string{"pc-01", "pc-03"} {
		if s := e.only(c); s.State != store.SessionFailed || s.FailedStage != sessions.StageScript {
			t.Errorf("%s: session %s at %q, want failed at script", c, s.State, s.FailedStage)
		}
	}
	if n := e.counter("dls_boot_failures_total", "stage", "script"); n != 2 {
		t.Errorf("failures at script = %v, want 2", n)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" && l.GetValue() == sessions.StageDHCP6 {
					t.Errorf("%s has a dhcp6 series", mf.GetName())
				}
			}
		}
	}
}
