package sessions_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
)

// served is a file_served event as the host's /boot/files handler and the
// TFTP plugin report it: the file and the address it went to, no MAC.
func served(file, addr string, at time.Time) host.Event {
	return host.Event{Type: host.EventFileServed, Address: addr, Time: at, Attrs: map[string]string{host.AttrFile: file, "via": "http"}}
}

// httpFirmware is what OVMF's HTTP boot DISCOVER carries.
var httpFirmware = map[string]string{"vendor_class": "HTTPClient:Arch:00016:UNDI:003000", "arch": "16"}

// TestFirstStageOverHTTP: a UEFI HTTP boot client's download of iPXE from
// /boot/files records the ipxe stage of the session whose lease holds the
// address it came from, between dhcp and script; other files, other
// addresses and clients without a session record nothing.
func TestFirstStageOverHTTP(t *testing.T) {
	e := newEnv(t)
	e.report(host.Event{Type: host.EventDHCPDiscover, MAC: mac2, Time: e.at(0), Attrs: httpFirmware})
	e.report(host.Event{Type: host.EventDHCPAck, MAC: mac2, Address: "192.168.77.102", Time: e.at(time.Second)})
	e.report(discover(mac1, e.at(time.Second)))
	e.report(host.Event{Type: host.EventDHCPAck, MAC: mac1, Address: "192.168.77.101", Time: e.at(time.Second)})

	e.report(
		served("linux/vmlinuz", "192.168.77.102", e.at(2*time.Second)), // not a first stage
		served("ipxe.efi", "192.168.77.199", e.at(2*time.Second)),      // nobody's address
		served("ipxe.efi", "192.168.77.102", e.at(3*time.Second)),
	)
	a := e.tr.Active()
	for _, s := range a {
		switch s.Client {
		case "pc-02":
			if got, ok := s.Stages["ipxe"]; !ok || !got.Equal(t0.Add(3*time.Second)) {
				t.Errorf("pc-02 stages %v, want ipxe at +3s", s.Stages)
			}
		case "pc-01":
			if _, ok := s.Stages["ipxe"]; ok {
				t.Errorf("pc-01 got another address's first stage: %v", s.Stages)
			}
		}
	}
	e.report(host.Event{Type: host.EventScriptServed, MAC: mac2, Address: "192.168.77.102", Time: e.at(5 * time.Second)})
	e.report(clientEv(host.EventISCSILogin, "pc-02", e.at(6*time.Second)))
	e.report(clientEv(host.EventISCSIHandoff, "pc-02", e.at(7*time.Second)))
	e.report(clientEv(host.EventOSBooted, "pc-02", e.at(20*time.Second)))
	s := e.only("pc-02")
	if s.State != store.SessionDone || strings.Join(stagesOf(s), " ") != "dhcp ipxe script iscsi_login handoff booted" {
		t.Errorf("session %+v, want done through every stage", s)
	}
	// A first stage to an address with no session starts nothing.
	e.report(served("snponly.efi", "192.168.77.150", e.at(30*time.Second)))
	for _, s := range e.st.all() {
		if s.Client == "pc-03" {
			t.Errorf("a first-stage download started a session: %+v", s)
		}
	}
}

// TestFirstStageNamesAndOrder: the first-stage names (with a TFTP path's
// folder or leading slash, and an IPv4-mapped or IPv6 address) and a
// download reported after the script (events come in batches) filling the
// gap at its own time.
func TestFirstStageNamesAndOrder(t *testing.T) {
	for _, tc := range []struct{ file, lease, from string }{
		{"/undionly.kpxe", "192.168.77.21", "192.168.77.21"},
		{"ipxe/snponly.efi", "192.168.77.21", "::ffff:192.168.77.21"},
		{"ipxe.efi", "fd00:77::21", "fd00:77::21"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			e := newEnv(t)
			e.report(discover(mac1, e.at(0)))
			e.report(host.Event{Type: host.EventDHCPAck, MAC: mac1, Address: tc.lease, Time: e.at(time.Second)})
			e.report(host.Event{Type: host.EventScriptServed, MAC: mac1, Address: tc.lease, Time: e.at(5 * time.Second)})
			e.report(served(tc.file, tc.from, e.at(3*time.Second)))
			a := e.tr.Active()
			if len(a) != 1 || !a[0].Stages["ipxe"].Equal(t0.Add(3*time.Second)) {
				t.Errorf("active %+v, want pc-01 with ipxe at +3s", a)
			}
		})
	}
}

// TestFirstStageIsOptional: a session that reached only dhcp (a NIC whose
// ROM is iPXE fetches no first stage) or ipxe fails waiting for script;
// no dls_boot_failures_total series is labelled ipxe.
func TestFirstStageIsOptional(t *testing.T) {
	for _, withFile := range []bool{false, true} {
		e := newEnv(t)
		e.report(discover(mac1, e.at(0)))
		e.report(host.Event{Type: host.EventDHCPAck, MAC: mac1, Address: "192.168.77.21", Time: e.at(time.Second)})
		if withFile {
			e.report(served("undionly.kpxe", "192.168.77.21", e.at(2*time.Second)))
		}
		e.at(time.Hour)
		e.tr.Sweep(context.Background())
		if s := e.only("pc-01"); s.State != store.SessionFailed || s.FailedStage != "script" {
			t.Errorf("first stage fetched %v: session %+v, want failed at script", withFile, s)
		}
		if n := e.counter("dls_boot_failures_total", "stage", "script"); n != 1 {
			t.Errorf("dls_boot_failures_total{stage=script} = %v", n)
		}
		mfs, err := e.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "stage" && l.GetValue() == "ipxe" {
						t.Errorf("%s has an ipxe series", mf.GetName())
					}
				}
			}
		}
	}
}
