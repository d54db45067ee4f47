package iscsid

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/internal/iscsi/initiator"
	"github.com/dls-project/dls/plugins/protocol/iscsi/pdu"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/plugintest"
)

// The tests' "second machine" is 127.0.0.2: Linux answers the whole of
// 127.0.0.0/8 on lo, so a socket bound to it is another source address.
const intruderAddr = "127.0.0.2"

// rawLogin sends one login request from local (any when "") to the portal
// and returns the status of the answer.
func rawLogin(t *testing.T, e *env, local string, csg, nsg byte, transit bool, kvs ...string) uint16 {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	nc, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	p := &pdu.PDU{}
	p.SetOpcode(pdu.OpLogin, true)
	p.Header[1] = csg << 2
	if transit {
		p.Header[1] |= pdu.FlagTransit | nsg
	}
	p.Header[8] = 0x80
	for i := 0; i+1 < len(kvs); i += 2 {
		p.Data = pdu.AppendText(p.Data, kvs[i], kvs[i+1])
	}
	if _, err := nc.Write(p.Encode(nil, false, false)); err != nil {
		t.Fatal(err)
	}
	r := pdu.Reader{R: nc}
	var resp pdu.PDU
	if err := r.Read(&resp); err != nil {
		t.Fatalf("no login response: %v", err)
	}
	return binary.BigEndian.Uint16(resp.Header[36:])
}

func (e *env) errs(t *testing.T, reason string) float64 {
	t.Helper()
	smp, _ := e.h.MetricSample(t, "dls_iscsi_errors_total", reason)
	return smp.Value
}

// TestCHAPBypassRefused is the CHAP bypass regression through the whole
// plugin over TCP: a first login request in the operational stage (as
// libiscsi sends without a CHAP user), straight to full feature phase, is
// refused with 0x0201 for a client with a secret, and nothing is attached.
func TestCHAPBypassRefused(t *testing.T) {
	pc := &client{name: "pc-01", mac: "52:54:00:00:00:01", secret: "pc1-secret-1234"}
	e := startTarget(t, nil, pc)
	ops := []string{"HeaderDigest", "None", "DataDigest", "None", "MaxRecvDataSegmentLength", "8192"}
	normal := append([]string{"InitiatorName", pc.initiator(), "TargetName", pc.target(), "SessionType", "Normal"}, ops...)
	if st := rawLogin(t, e, "", 1, 3, true, normal...); st != initiator.LoginAuthFailure {
		t.Errorf("normal login from the operational stage: status %#04x, want 0x0201", st)
	}
	discovery := append([]string{"InitiatorName", pc.initiator(), "SessionType", "Discovery"}, ops...)
	if st := rawLogin(t, e, "", 1, 3, true, discovery...); st != initiator.LoginAuthFailure {
		t.Errorf("discovery login from the operational stage: status %#04x, want 0x0201", st)
	}
	if n := e.host.AttachCount(pc.name); n != 0 {
		t.Errorf("volume attached %d times", n)
	}
	if v := e.errs(t, "chap_required"); v != 2 {
		t.Errorf("chap_required errors %v, want 2", v)
	}
	// With CHAP, the same client logs in.
	s := e.mustDial(t, pc)
	if err := s.TestUnitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestBindToLease: a normal session must come from one of the decision's
// AllowedAddresses (the lease, then extra_addresses), compared as IPs;
// elsewhere it is refused (0x0202) before anything changes. The owner's
// live session survives every failed login of an intruder, whatever its
// name, secret or address.
func TestBindToLease(t *testing.T) {
	owner := &client{name: "pc-01", mac: "52:54:00:00:00:01", secret: "pc1-secret-1234",
		extra: []string{"iqn.1991-05.com.microsoft:pc-01"}, addrs: []string{"127.0.0.1", "::ffff:127.0.0.3"}}
	unbound := &client{name: "pc-02", mac: "52:54:00:00:00:02", secret: "pc2-secret-1234", addrs: []string{}}
	e := startTarget(t, nil, owner, unbound)
	ctx := context.Background()

	live := e.mustDial(t, owner, func(c *initiator.Config) { c.LocalAddr = "127.0.0.1" })
	if err := live.TestUnitReady(ctx); err != nil {
		t.Fatal(err)
	}
	e.h.WaitMetricValue(t, 1, "dls_iscsi_sessions")
	lookups := len(e.host.Lookups())

	attempts := []struct {
		name   string
		mod    func(*initiator.Config)
		status uint16
		reason string
	}{
		{"right secret, another address", func(c *initiator.Config) { c.LocalAddr = intruderAddr }, initiator.LoginAuthzFailure, "not_bound"},
		{"no CHAP, another address", func(c *initiator.Config) { c.LocalAddr, c.CHAPSecret = intruderAddr, "" }, initiator.LoginAuthzFailure, "not_bound"},
		{"no CHAP, the owner's address", func(c *initiator.Config) { c.LocalAddr, c.CHAPSecret = "127.0.0.1", "" }, initiator.LoginAuthFailure, "chap_required"},
		{"wrong secret, the owner's address", func(c *initiator.Config) { c.LocalAddr, c.CHAPSecret = "127.0.0.1", "wrong-secret-123" }, initiator.LoginAuthFailure, "chap_failed"},
		{"another CHAP name, the owner's address", func(c *initiator.Config) { c.LocalAddr, c.CHAPUser = "127.0.0.1", "iqn.1991-05.com.microsoft:pc-01" }, initiator.LoginAuthFailure, "chap_failed"},
	}
	for _, a := range attempts {
		before := e.errs(t, a.reason)
		_, err := e.dial(t, owner, a.mod)
		if st := loginStatus(err); st != a.status {
			t.Errorf("%s: %v, want status %#04x", a.name, err, a.status)
		}
		if got := e.errs(t, a.reason); got != before+1 {
			t.Errorf("%s: %s errors %v, want %v", a.name, a.reason, got, before+1)
		}
	}
	// The bypass, from the owner's own address: refused.
	before := e.errs(t, "chap_required")
	if st := rawLogin(t, e, "127.0.0.1", 1, 3, true, "InitiatorName", owner.initiator(), "TargetName", owner.target(),
		"SessionType", "Normal", "MaxRecvDataSegmentLength", "8192"); st != initiator.LoginAuthFailure {
		t.Errorf("login from the operational stage: status %#04x, want 0x0201", st)
	}
	if got := e.errs(t, "chap_required"); got != before+1 {
		t.Errorf("chap_required errors %v, want %v", got, before+1)
	}
	// The owner never noticed: same session, volume attached once.
	if err := live.TestUnitReady(ctx); err != nil {
		t.Fatalf("the owner's session after the intruder's logins: %v", err)
	}
	if n := e.host.AttachCount(owner.name); n != 1 {
		t.Errorf("volume attached %d times, want 1", n)
	}
	if v := e.h.MetricValue(t, "dls_iscsi_sessions"); v != 1 {
		t.Errorf("sessions %v, want 1", v)
	}
	// The host was told who asked.
	qs := e.host.Lookups()[lookups:]
	if !slices.ContainsFunc(qs, func(q host.Query) bool { return q.Peer == intruderAddr && q.Target == owner.target() }) {
		t.Errorf("no Lookup carried the peer %s: %+v", intruderAddr, qs)
	}

	// An extra initiator from an extra address (given IPv4-mapped) logs
	// in, answering CHAP as the client's initiator IQN.
	s := e.mustDial(t, owner, func(c *initiator.Config) {
		c.LocalAddr, c.InitiatorName = "127.0.0.3", "iqn.1991-05.com.microsoft:pc-01"
	})
	if err := s.TestUnitReady(ctx); err != nil {
		t.Fatal(err)
	}
	// A client with no boot bound now is served nowhere.
	_, err := e.dial(t, unbound)
	if st := loginStatus(err); st != initiator.LoginAuthzFailure {
		t.Errorf("client with no bound address: %v, want 0x0202", err)
	}
	if n := e.host.AttachCount(unbound.name); n != 0 {
		t.Errorf("unbound client's volume attached %d times", n)
	}
}

// TestBindToLeaseOff: bind_to_lease = false (protocol tests, multipath)
// serves any address; CHAP is still required.
func TestBindToLeaseOff(t *testing.T) {
	pc := &client{name: "pc-01", mac: "52:54:00:00:00:01", secret: "pc1-secret-1234", addrs: []string{}}
	e := startTarget(t, map[string]any{"bind_to_lease": false}, pc)
	s := e.mustDial(t, pc, func(c *initiator.Config) { c.LocalAddr = intruderAddr })
	if err := s.TestUnitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := e.dial(t, pc, func(c *initiator.Config) { c.LocalAddr, c.CHAPSecret = intruderAddr, "" })
	if st := loginStatus(err); st != initiator.LoginAuthFailure {
		t.Errorf("no CHAP with bind_to_lease off: %v, want 0x0201", err)
	}
}

// TestRefusedLoginsRateLimited: after refused_login_limit refused logins
// from one address, its next logins are refused at once without asking
// the host (rate_limited); another address logs in undisturbed, and
// nothing is locked by initiator name.
func TestRefusedLoginsRateLimited(t *testing.T) {
	pc := &client{name: "pc-01", mac: "52:54:00:00:00:01", secret: "pc1-secret-1234"}
	e := startTarget(t, map[string]any{"refused_login_limit": 5, "refused_login_window": "1m"}, pc)
	for i := range 5 {
		_, err := e.dial(t, pc, func(c *initiator.Config) { c.LocalAddr, c.CHAPSecret = intruderAddr, "wrong-secret-123" })
		if st := loginStatus(err); st == 0 {
			t.Fatalf("bad login %d: %v", i, err)
		}
	}
	lookups := len(e.host.Lookups())
	for i := range 20 {
		// Even the right secret: the address is rate limited.
		_, err := e.dial(t, pc, func(c *initiator.Config) { c.LocalAddr = intruderAddr })
		if st := loginStatus(err); st != initiator.LoginAuthzFailure {
			t.Fatalf("login %d past the limit: %v, want 0x0202", i, err)
		}
	}
	if n := len(e.host.Lookups()) - lookups; n != 0 {
		t.Errorf("%d host lookups for rate-limited logins, want 0", n)
	}
	if v := e.errs(t, "rate_limited"); v != 20 {
		t.Errorf("rate_limited errors %v, want 20", v)
	}
	if v := e.errs(t, "not_bound"); v != 5 {
		t.Errorf("not_bound errors %v, want 5", v)
	}
	// The owner, same initiator name, from its own address.
	s := e.mustDial(t, pc, func(c *initiator.Config) { c.LocalAddr = "127.0.0.1" })
	if err := s.TestUnitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestRefusedLoginLimitOff: refused_login_limit = 0 counts nothing.
func TestRefusedLoginLimitOff(t *testing.T) {
	pc := &client{name: "pc-01", mac: "52:54:00:00:00:01", secret: "pc1-secret-1234"}
	e := startTarget(t, map[string]any{"refused_login_limit": 0}, pc)
	for i := range 15 {
		_, err := e.dial(t, pc, func(c *initiator.Config) { c.CHAPSecret = "wrong-secret-123" })
		if st := loginStatus(err); st != initiator.LoginAuthFailure {
			t.Fatalf("bad login %d: %v, want 0x0201", i, err)
		}
	}
	if v := e.errs(t, "rate_limited"); v != 0 {
		t.Errorf("rate_limited %v with no limit", v)
	}
}

// TestLibiscsiCHAP: libiscsi's iscsi-inq (a normal session) and iscsi-ls
// (discovery, package libiscsi-bin) against a client with a secret: no
// credentials, or a wrong secret, are refused; the right ones work.
// Skipped when they are not installed, except under CI.
func TestLibiscsiCHAP(t *testing.T) {
	inq, err1 := exec.LookPath("iscsi-inq")
	ls, err2 := exec.LookPath("iscsi-ls")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("iscsi-inq or iscsi-ls not installed (package libiscsi-bin); CI must install it")
		}
		t.Skip("iscsi-inq or iscsi-ls not installed (package libiscsi-bin)")
	}
	pc := &client{name: "pc-01", mac: "52:54:00:00:00:01", secret: "Pc1Secret12345"}
	e := startTarget(t, nil, pc)
	run := func(bin string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		return string(out), err
	}
	cred := func(secret string) string {
		if secret == "" {
			return ""
		}
		return pc.initiator() + "%" + secret + "@"
	}
	for _, c := range []struct {
		name, secret string
		ok           bool
	}{{"no credentials", "", false}, {"wrong secret", "WrongSecret1234", false}, {"right secret", pc.secret, true}} {
		t.Run(c.name, func(t *testing.T) {
			chapBefore := e.errs(t, "chap_required") + e.errs(t, "chap_failed")
			url := fmt.Sprintf("iscsi://%s%s/%s/0", cred(c.secret), e.addr, pc.target())
			out, err := run(inq, "-i", pc.initiator(), url)
			if c.ok != (err == nil) {
				t.Errorf("iscsi-inq: %v, want success %v:\n%s", err, c.ok, out)
			}
			if c.ok && !strings.Contains(out, "DLS") {
				t.Errorf("iscsi-inq printed no DLS inquiry data:\n%s", out)
			}
			portal := fmt.Sprintf("iscsi://%s%s", cred(c.secret), e.addr)
			out, err = run(ls, "-i", pc.initiator(), portal)
			listed := err == nil && strings.Contains(out, pc.target())
			if c.ok != listed {
				t.Errorf("iscsi-ls: %v, listed %v, want %v:\n%s", err, listed, c.ok, out)
			}
			refused := e.errs(t, "chap_required") + e.errs(t, "chap_failed") - chapBefore
			if c.ok && refused != 0 || !c.ok && refused != 2 {
				t.Errorf("%v CHAP refusals counted for %s", refused, c.name)
			}
		})
	}
}

func TestRefusedLoginConfigErrors(t *testing.T) {
	h := plugintest.Start(t, New(), plugintest.WithoutConfigure())
	errs, err := h.Configure(map[string]any{"refused_login_limit": -1, "refused_login_window": "0s", "dead_peer_timeout": "2s"})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range errs {
		paths = append(paths, e.Path)
	}
	if !slices.Equal(paths, []string{"refused_login_limit", "refused_login_window", "dead_peer_timeout"}) {
		t.Errorf("errors %v", errs)
	}
	// The defaults: bound, and rate-limited.
	cfg := New().NewConfig().(*Config)
	if !cfg.BindToLease || cfg.RefusedLimit != 10 || cfg.RefusedWindow != time.Minute || cfg.DeadPeerTimeout != 30*time.Second {
		t.Errorf("defaults bind_to_lease %v, refused_login_limit %d, refused_login_window %s, dead_peer_timeout %s", cfg.BindToLease, cfg.RefusedLimit, cfg.RefusedWindow, cfg.DeadPeerTimeout)
	}
}
