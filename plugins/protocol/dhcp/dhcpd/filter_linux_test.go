package dhcpd

import (
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

// The interface filter FreeBSD serves one interface with (onlyIf, from
// IP_RECVIF there) is the same code here, fed by IP_PKTINFO: a listener
// for loopback serves a packet that came in on loopback, and a listener
// for another interface drops it unanswered and uncounted.
func TestListenerServesOnlyItsInterface(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback interface: %v", err)
	}
	for _, tc := range []struct {
		name    string
		onlyIf  int
		counted float64
	}{
		{"any interface", 0, 1},
		{"its interface", lo.Index, 1},
		{"another interface", lo.Index + 1000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			l, err := listen(t.Context(), "", 0, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			l.onlyIf = tc.onlyIf
			done := make(chan struct{})
			go func() { e.srv.serve(t.Context(), l, newInterfaceAddrs()); close(done) }()
			t.Cleanup(func() { l.close(); <-done })

			port := l.conn.LocalAddr().(*net.UDPAddr).Port
			c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(make([]byte, 10)); err != nil { // shorter than a BOOTP header
				t.Fatal(err)
			}
			// Served or dropped, the packet has been read once the
			// socket's receive queue is empty.
			waitRead(t, l)
			if tc.counted > 0 {
				waitCount(t, func() float64 { return testutil.ToFloat64(e.srv.m.reasons[reasonTruncated]) }, tc.counted)
			}
			if got := testutil.ToFloat64(e.srv.m.reasons[reasonTruncated]); got != tc.counted {
				t.Errorf("truncated packets counted: %v, want %v", got, tc.counted)
			}
		})
	}
}

// waitRead waits until l's socket has no datagram queued (SIOCINQ).
func waitRead(t *testing.T, l *listener) {
	t.Helper()
	raw, err := l.conn.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var queued int
		var qerr error
		if err := raw.Control(func(fd uintptr) { queued, qerr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
			t.Fatal(err)
		}
		if qerr != nil {
			t.Fatal(qerr)
		}
		if queued == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the datagram was never read")
		}
		time.Sleep(time.Millisecond)
	}
}

func waitCount(t *testing.T, get func() float64, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for get() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}
