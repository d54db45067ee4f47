package target

import (
	"context"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/plugins/protocol/iscsi/pdu"
)

// failingListener fails its first n Accepts with err, as a process out of
// file descriptors does, then accepts for real.
type failingListener struct {
	net.Listener
	mu  sync.Mutex
	n   int
	err error
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.n > 0 {
		l.n--
		l.mu.Unlock()
		return nil, l.err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

// TestAcceptOutOfDescriptors: EMFILE from accept is counted and waited
// out; the portal keeps serving (it used to return from Serve).
func TestAcceptOutOfDescriptors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &failingListener{Listener: inner, n: 3,
		err: &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}}
	var mu sync.Mutex
	reasons := map[string]int{}
	srv := &Server{Resolver: staticResolver{}, LoginTimeout: time.Second, Hooks: Hooks{Error: func(r string) {
		mu.Lock()
		reasons[r]++
		mu.Unlock()
	}}}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(t.Context(), ln) }()
	defer func() {
		_ = srv.Close(context.Background())
		if err := <-served; err != ErrClosed {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	}()

	c, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(loginPDU(0, 1, true, "InitiatorName", "iqn.test:i", "TargetName", "iqn.test:t", "SessionType", "Normal", "AuthMethod", "None")); err != nil {
		t.Fatal(err)
	}
	var resp pdu.PDU
	if err := (&pdu.Reader{R: c}).Read(&resp); err != nil {
		t.Fatalf("no login answer after accept failed 3 times: %v", err)
	}
	if resp.Opcode() != pdu.OpLoginResp {
		t.Fatalf("answer opcode %#x", resp.Opcode())
	}
	mu.Lock()
	defer mu.Unlock()
	if reasons["accept"] != 3 {
		t.Errorf("accept failures counted %d, want 3", reasons["accept"])
	}
}
