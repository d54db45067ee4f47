package target

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/plugins/protocol/iscsi/pdu"
)

// recordingResolver is staticResolver that counts attaches and remembers
// the requests it was asked.
type recordingResolver struct {
	staticResolver
	mu       sync.Mutex
	attaches int
}

func (r *recordingResolver) Attach(ctx context.Context, tgt string, a Access) (Volume, error) {
	r.mu.Lock()
	r.attaches++
	r.mu.Unlock()
	return r.staticResolver.Attach(ctx, tgt, a)
}

func (r *recordingResolver) attached() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attaches
}

// loginConn is one connection to srv over a pipe, driven PDU by PDU.
type loginConn struct {
	t *testing.T
	b net.Conn
	r pdu.Reader
}

func dialPipe(t *testing.T, srv *Server) *loginConn {
	t.Helper()
	srv.mu.Lock()
	if srv.conns == nil {
		srv.conns, srv.logins, srv.sessions = map[*conn]struct{}{}, map[*conn]struct{}{}, map[uint16]*session{}
		srv.targets, srv.detach = map[string]*attached{}, map[string]chan struct{}{}
	}
	srv.mu.Unlock()
	a, b := net.Pipe()
	t.Cleanup(func() { b.Close() })
	go newConn(t.Context(), srv, a).serve()
	_ = b.SetDeadline(time.Now().Add(10 * time.Second))
	return &loginConn{t: t, b: b, r: pdu.Reader{R: b}}
}

// send writes one login PDU and returns the answer's status and text;
// ok is false when the target hung up instead of answering.
func (c *loginConn) send(p []byte) (status uint16, kvs []pdu.KV, transit bool, ok bool) {
	c.t.Helper()
	if _, err := c.b.Write(p); err != nil {
		return 0, nil, false, false
	}
	var r pdu.PDU
	if err := c.r.Read(&r); err != nil {
		return 0, nil, false, false
	}
	if r.Opcode() != pdu.OpLoginResp {
		c.t.Fatalf("answer opcode %#x, want a login response", r.Opcode())
	}
	kvs, _ = pdu.ParseText(r.Data)
	return binary.BigEndian.Uint16(r.Header[36:]), kvs, r.Flags()&pdu.FlagTransit != 0, true
}

// chapAnswer answers the target's challenge in kvs with secret.
func chapAnswer(t *testing.T, kvs []pdu.KV, name, secret string) []string {
	t.Helper()
	id, _ := pdu.Get(kvs, "CHAP_I")
	ch, _ := pdu.Get(kvs, "CHAP_C")
	n, err := strconv.Atoi(id)
	chal, err2 := decodeBinary(ch)
	if err != nil || err2 != nil {
		t.Fatalf("target's challenge CHAP_I=%q CHAP_C=%q", id, ch)
	}
	return []string{"CHAP_N", name, "CHAP_R", "0x" + hex.EncodeToString(chapResponse(byte(n), secret, chal))}
}

var operational = []string{"HeaderDigest", "None", "DataDigest", "None", "MaxRecvDataSegmentLength", "8192"}

func names(session string) []string {
	if session == "Discovery" {
		return []string{"InitiatorName", testInitiator, "SessionType", "Discovery"}
	}
	return []string{"InitiatorName", testInitiator, "TargetName", testTarget, "SessionType", "Normal"}
}

// TestCHAPCannotBeSkipped is the regression test of the CHAP bypass: a
// target whose client has a CHAP secret refuses (0x0201) every login that
// did not complete CHAP, whatever stage the initiator starts in or moves
// to, for normal and discovery sessions; no volume is attached.
func TestCHAPCannotBeSkipped(t *testing.T) {
	const secret = "right-secret-123"
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, session := range []string{"Normal", "Discovery"} {
		cases := []struct {
			name  string
			steps func(c *loginConn) (uint16, bool)
		}{
			{"operational stage first, straight to full feature", func(c *loginConn) (uint16, bool) {
				st, _, _, ok := c.send(loginPDU(1, 3, true, cat(names(session), operational)...))
				return st, ok
			}},
			{"operational stage first, no transit", func(c *loginConn) (uint16, bool) {
				st, _, _, ok := c.send(loginPDU(1, 3, false, cat(names(session), operational)...))
				if ok && st == 0 {
					st, _, _, ok = c.send(loginPDU(1, 3, true, operational...))
				}
				return st, ok
			}},
			{"AuthMethod None only", func(c *loginConn) (uint16, bool) {
				st, _, _, ok := c.send(loginPDU(0, 1, true, cat(names(session), []string{"AuthMethod", "None"})...))
				return st, ok
			}},
			{"security stage straight to full feature without CHAP", func(c *loginConn) (uint16, bool) {
				st, _, _, ok := c.send(loginPDU(0, 3, true, names(session)...))
				return st, ok
			}},
			{"CHAP chosen, then full feature without an answer", func(c *loginConn) (uint16, bool) {
				st, _, _, ok := c.send(loginPDU(0, 1, false, cat(names(session), []string{"AuthMethod", "CHAP"})...))
				if ok && st == 0 {
					st, _, _, ok = c.send(loginPDU(0, 3, true, "CHAP_A", "5"))
				}
				if ok && st == 0 {
					st, _, _, ok = c.send(loginPDU(1, 3, true, operational...))
				}
				return st, ok
			}},
			{"CHAP with another name", func(c *loginConn) (uint16, bool) {
				st, _, _, ok := c.send(loginPDU(0, 1, false, cat(names(session), []string{"AuthMethod", "CHAP"})...))
				var kvs []pdu.KV
				if ok && st == 0 {
					st, kvs, _, ok = c.send(loginPDU(0, 1, false, "CHAP_A", "5"))
				}
				if ok && st == 0 {
					st, _, _, ok = c.send(loginPDU(0, 1, true, chapAnswer(t, kvs, "iqn.2026-11.io.dls:initiator:other", secret)...))
				}
				return st, ok
			}},
			{"CHAP with a wrong secret", func(c *loginConn) (uint16, bool) {
				st, _, _, ok := c.send(loginPDU(0, 1, false, cat(names(session), []string{"AuthMethod", "CHAP"})...))
				var kvs []pdu.KV
				if ok && st == 0 {
					st, kvs, _, ok = c.send(loginPDU(0, 1, false, "CHAP_A", "5"))
				}
				if ok && st == 0 {
					st, _, _, ok = c.send(loginPDU(0, 1, true, chapAnswer(t, kvs, testInitiator, "wrong-secret-123")...))
				}
				return st, ok
			}},
		}
		for _, tc := range cases {
			t.Run(session+"/"+tc.name, func(t *testing.T) {
				res := &recordingResolver{staticResolver: staticResolver{secret: secret}}
				srv := &Server{Resolver: res, LoginTimeout: 5 * time.Second}
				st, ok := tc.steps(dialPipe(t, srv))
				if !ok {
					t.Fatal("the target hung up without a login response")
				}
				if st != loginAuthFailure {
					t.Fatalf("login status %#04x, want %#04x (authentication failure)", st, loginAuthFailure)
				}
				if n := res.attached(); n != 0 {
					t.Fatalf("volume attached %d times by a login that failed", n)
				}
				if n := srv.Sessions(); n != 0 {
					t.Fatalf("%d sessions open", n)
				}
			})
		}
	}

	// With CHAP done, the same target logs in (one-way, then mutual).
	for _, mutual := range []bool{false, true} {
		t.Run("CHAP completed, mutual="+strconv.FormatBool(mutual), func(t *testing.T) {
			res := &recordingResolver{staticResolver: staticResolver{secret: secret, mutual: "mutual-secret-456"}}
			srv := &Server{Resolver: res, LoginTimeout: 5 * time.Second}
			c := dialPipe(t, srv)
			st, _, _, ok := c.send(loginPDU(0, 1, false, cat(names("Normal"), []string{"AuthMethod", "CHAP,None"})...))
			var kvs []pdu.KV
			if ok && st == 0 {
				st, kvs, _, ok = c.send(loginPDU(0, 1, false, "CHAP_A", "5"))
			}
			answer := chapAnswer(t, kvs, testInitiator, secret)
			chal := []byte("0123456789abcdef")
			if mutual {
				answer = append(answer, "CHAP_I", "7", "CHAP_C", "0x"+hex.EncodeToString(chal))
			}
			transit := false
			if ok && st == 0 {
				st, kvs, transit, ok = c.send(loginPDU(0, 1, true, answer...))
			}
			if !ok || st != 0 || !transit {
				t.Fatalf("CHAP answer: status %#04x ok %v transit %v", st, ok, transit)
			}
			if mutual {
				n, _ := pdu.Get(kvs, "CHAP_N")
				r, _ := pdu.Get(kvs, "CHAP_R")
				if n != testTarget || r != "0x"+hex.EncodeToString(chapResponse(7, "mutual-secret-456", chal)) {
					t.Fatalf("target's mutual answer CHAP_N=%q CHAP_R=%q", n, r)
				}
			}
			st, _, transit, ok = c.send(loginPDU(1, 3, true, operational...))
			if !ok || st != 0 || !transit {
				t.Fatalf("operational stage: status %#04x ok %v transit %v", st, ok, transit)
			}
			if res.attached() != 1 {
				t.Fatalf("volume attached %d times, want 1", res.attached())
			}
		})
	}
}

// gatedResolver is staticResolver whose Attach says it began and then
// waits to be let go, and whose Detach is counted.
type gatedResolver struct {
	staticResolver
	began    chan struct{}
	letGo    chan struct{}
	detached chan struct{}
}

func (r *gatedResolver) Attach(ctx context.Context, tgt string, a Access) (Volume, error) {
	r.began <- struct{}{}
	<-r.letGo
	return r.staticResolver.Attach(ctx, tgt, a)
}

func (r *gatedResolver) Detach(context.Context, string, Access) { r.detached <- struct{}{} }

// TestAttachDuringOperationalTurn: once CHAP passes and the initiator goes
// on to the operational stage, the volume is attached while the initiator
// takes its turn, not after it; a login that then fails releases it.
func TestAttachDuringOperationalTurn(t *testing.T) {
	const secret = "right-secret-123"
	authenticate := func(t *testing.T, c *loginConn) {
		t.Helper()
		st, _, _, ok := c.send(loginPDU(0, 1, false, append(names("Normal"), "AuthMethod", "CHAP")...))
		var kvs []pdu.KV
		if ok && st == 0 {
			st, kvs, _, ok = c.send(loginPDU(0, 1, false, "CHAP_A", "5"))
		}
		transit := false
		if ok && st == 0 {
			st, _, transit, ok = c.send(loginPDU(0, 1, true, chapAnswer(t, kvs, testInitiator, secret)...))
		}
		if !ok || st != 0 || !transit {
			t.Fatalf("CHAP: status %#04x ok %v transit %v", st, ok, transit)
		}
	}
	waitFor := func(t *testing.T, ch chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: not within 5 s", what)
		}
	}
	// attaching is a login past CHAP whose attach has begun (before the
	// operational stage's request) and waits for res.letGo.
	attaching := func(t *testing.T) (*Server, *gatedResolver, *loginConn) {
		t.Helper()
		res := &gatedResolver{staticResolver: staticResolver{secret: secret},
			began: make(chan struct{}, 1), letGo: make(chan struct{}), detached: make(chan struct{}, 1)}
		srv := &Server{Resolver: res, LoginTimeout: 5 * time.Second}
		c := dialPipe(t, srv)
		authenticate(t, c)
		waitFor(t, res.began, "attach after CHAP, before the operational stage's request")
		return srv, res, c
	}

	t.Run("attached before the operational request", func(t *testing.T) {
		srv, res, c := attaching(t)
		close(res.letGo)
		st, _, transit, ok := c.send(loginPDU(1, 3, true, operational...))
		if !ok || st != 0 || !transit {
			t.Fatalf("operational stage: status %#04x ok %v transit %v", st, ok, transit)
		}
		if n := srv.Sessions(); n != 1 {
			t.Fatalf("%d sessions, want 1", n)
		}
	})

	t.Run("released when the login fails after it", func(t *testing.T) {
		srv, res, c := attaching(t)
		// Stage 2 does not exist: the login is refused while the attach
		// is still under way.
		st, _, _, ok := c.send(loginPDU(1, 2, true, operational...))
		if !ok || st != loginInvalidRequest {
			t.Fatalf("bad transit: status %#04x ok %v, want %#04x", st, ok, loginInvalidRequest)
		}
		close(res.letGo)
		waitFor(t, res.detached, "detach of the abandoned login's volume")
		srv.mu.Lock()
		defer srv.mu.Unlock()
		if len(srv.targets) != 0 || srv.nSess != 0 {
			t.Fatalf("left attached: %d targets, %d sessions", len(srv.targets), srv.nSess)
		}
	})
}
