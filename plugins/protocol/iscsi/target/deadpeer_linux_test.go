package target

import (
	"context"
	"encoding/binary"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/plugins/protocol/internal/netnstest"
	"github.com/dls-project/dls/plugins/protocol/iscsi/pdu"
	"golang.org/x/sys/unix"
)

// lab holds this package's network namespaces (nothing is built).
var lab = &netnstest.Lab{Prefix: "dlsi", Install: "apt-get install iproute2"}

// releaseResolver is staticResolver with a 16 MiB volume that reports
// when it is detached.
type releaseResolver struct {
	staticResolver
	attached atomic.Int32
	detached chan struct{}
}

func (r *releaseResolver) Attach(context.Context, string, Access) (Volume, error) {
	r.attached.Add(1)
	return &memVol{b: make([]byte, 16<<20)}, nil
}

func (r *releaseResolver) Detach(context.Context, string, Access) { close(r.detached) }

// TestDeadPeerEndsSession: an initiator in another namespace logs in,
// then its link goes down (a machine powered off: no FIN, no RST). The
// target must end the session and release the volume within
// DeadPeerTimeout, both when the connection is idle (keepalive) and when
// a read's data is in flight, unacknowledged (TCP_USER_TIMEOUT). Before
// the cut, an idle but live peer is kept past DeadPeerTimeout: it answers
// the probes. With the old keepalive (30 s idle, then the system's 9
// probes 30 s apart) the volume stayed attached about 5 minutes.
func TestDeadPeerEndsSession(t *testing.T) {
	lab.NeedRoot(t)
	const timeout = 3 * time.Second
	for _, tc := range []struct {
		name     string
		inFlight bool
	}{{"idle", false}, {"read in flight", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tns, ins := lab.Netns(t, "tgt"), lab.Netns(t, "ini")
			lab.Veth(t, tns, "vtgt", ins, "vini")
			netnstest.Run(t, netnstest.InNS(tns, "ip", "addr", "add", "10.98.0.1/24", "dev", "vtgt")...)
			netnstest.Run(t, netnstest.InNS(ins, "ip", "addr", "add", "10.98.0.2/24", "dev", "vini")...)

			var ln net.Listener
			if err := netnstest.EnterNS(tns, func() (err error) {
				ln, err = net.Listen("tcp", "10.98.0.1:3260")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			res := &releaseResolver{detached: make(chan struct{})}
			srv := &Server{Resolver: res, LoginTimeout: 5 * time.Second, DeadPeerTimeout: timeout}
			go func() { _ = srv.Serve(t.Context(), ln) }()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 5*time.Second)
				defer cancel()
				_ = srv.Close(ctx)
			})

			// The initiator: a small receive buffer, so that a large
			// read's data stays in the target's send queue.
			var nc net.Conn
			if err := netnstest.EnterNS(ins, func() (err error) {
				d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
					var serr error
					err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
					if err != nil {
						return err
					}
					return serr
				}}
				nc, err = d.Dial("tcp", "10.98.0.1:3260")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
			r := pdu.Reader{R: nc}
			var p pdu.PDU
			if _, err := nc.Write(loginPDU(1, 3, true, "InitiatorName", testInitiator, "TargetName", testTarget, "SessionType", "Normal")); err != nil {
				t.Fatal(err)
			}
			if err := r.Read(&p); err != nil || p.Opcode() != pdu.OpLoginResp || binary.BigEndian.Uint16(p.Header[36:]) != 0 {
				t.Fatalf("login: %v, opcode %#x status %x", err, p.Opcode(), p.Header[36:38])
			}
			if res.attached.Load() != 1 || srv.Sessions() != 1 {
				t.Fatalf("after login: %d attaches, %d sessions", res.attached.Load(), srv.Sessions())
			}

			if tc.inFlight {
				// READ(10) of 8 MiB, never read: the target's send
				// queue fills and the initiator's window closes.
				read := make([]byte, 10)
				read[0] = 0x28
				binary.BigEndian.PutUint16(read[7:], 16384)
				if _, err := nc.Write(scsiPDU(0, read, 8<<20, pdu.FlagRead, nil)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(200 * time.Millisecond)
			} else {
				// A live idle peer answers keepalive probes: it keeps
				// its session past the timeout.
				time.Sleep(timeout + time.Second)
				select {
				case <-res.detached:
					t.Fatal("the volume was released while its live initiator was idle")
				default:
				}
				if srv.Sessions() != 1 {
					t.Fatalf("a live idle session was ended: %d sessions", srv.Sessions())
				}
			}

			// The machine vanishes.
			netnstest.Run(t, netnstest.InNS(ins, "ip", "link", "set", "vini", "down")...)
			cut := time.Now()
			bound := timeout + 3*time.Second
			select {
			case <-res.detached:
				t.Logf("volume released %s after the peer vanished (dead_peer_timeout %s)", time.Since(cut).Round(10*time.Millisecond), timeout)
			case <-time.After(bound):
				t.Fatalf("the volume is still attached %s after its peer vanished (dead_peer_timeout %s)", bound, timeout)
			}
			if n := srv.Sessions(); n != 0 {
				t.Errorf("%d sessions after the volume was released", n)
			}
		})
	}
}
