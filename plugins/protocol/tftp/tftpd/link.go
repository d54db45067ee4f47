package tftpd

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// udpLink is a transfer's own UDP socket, bound to an ephemeral port and
// connected to the client: the kernel keeps other peers' packets out
// (RFC 1350's transfer IDs).
//
// Waiting for an ACK is the hot path: in lock-step mode, one round trip
// per block. How to wait depends on the load:
//
//   - With few transfers running (no more than GOMAXPROCS), the socket
//     stays a plain blocking one, outside Go's netpoller, and the
//     transfer's goroutine waits in poll(2) on its own OS thread, as
//     tftp-hpa's process per transfer does: the ACK wakes it directly.
//     Through the netpoller, every ACK would also go through epoll and
//     the scheduler (measured on loopback: 0.9x tftp-hpa's lock-step
//     throughput instead of 1.0x pinned to separate cores, 1.4x not).
//   - Once more transfers run than the runtime has Ps, threads blocked
//     in poll(2) hand their P back only when sysmon takes it, and a boot
//     storm of 200 clients ran at 0.8x tftp-hpa. A link that sees the
//     server busy moves its socket to the netpoller for the rest of its
//     transfer (then 1.5 to 2x tftp-hpa).
type udpLink struct {
	fd   int
	busy func() bool // true: many transfers run, wait in the netpoller

	// Once in the netpoller: the file owning fd, its RawConn, and the
	// read function handed to RawConn.Read (a method value made once,
	// so that waiting allocates nothing).
	file     *os.File
	rc       syscall.RawConn
	readFn   func(fd uintptr) bool
	deadline time.Time
	n        int
	err      error

	buf [516]byte // ACK and ERROR packets; longer ones are cut short
	fds [1]unix.PollFd

	mu      sync.Mutex // guards fd against abort racing close
	closed  bool
	aborted atomic.Bool
}

func dialLink(local netip.Addr, peer netip.AddrPort, busy func() bool) (*udpLink, error) {
	family := unix.AF_INET
	if peer.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if local.IsValid() && !local.IsUnspecified() && local.Is6() == peer.Addr().Is6() {
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(local, 0))); err != nil {
			_ = unix.Close(fd)
			return nil, os.NewSyscallError("bind", err)
		}
	}
	if err := unix.Connect(fd, sockaddr(peer)); err != nil {
		_ = unix.Close(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	l := &udpLink{fd: fd, busy: busy}
	l.readFn = l.readOnce
	return l, nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	if z := ap.Addr().Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		}
	}
	return sa
}

func (l *udpLink) send(b []byte) error {
	for {
		_, err := unix.Write(l.fd, b)
		switch {
		case err == nil:
			return nil
		case err == unix.EINTR:
		case err == unix.EAGAIN && l.file != nil:
			// The socket buffer is full: wait in the netpoller.
			_, err = l.file.Write(b)
			return err
		default:
			return os.NewSyscallError("write", err)
		}
	}
}

func (l *udpLink) recv(deadline time.Time) (reply, error) {
	for {
		if l.aborted.Load() {
			return reply{}, net.ErrClosed
		}
		if l.file == nil && l.busy != nil && l.busy() {
			if err := l.toNetpoller(); err != nil {
				return reply{}, err
			}
		}
		var n int
		var err error
		if l.file == nil {
			n, err = l.pollRead(deadline)
		} else {
			n, err = l.netpollRead(deadline)
		}
		if err != nil {
			return reply{}, err
		}
		if n < 0 {
			continue
		}
		if r, err := parseReply(l.buf[:n]); err == nil {
			return r, nil
		}
	}
}

// pollRead waits in poll(2) on this thread, then reads. n < 0: nothing
// read yet, ask again.
func (l *udpLink) pollRead(deadline time.Time) (int, error) {
	wait := time.Until(deadline)
	if wait <= 0 {
		return 0, os.ErrDeadlineExceeded
	}
	l.fds[0] = unix.PollFd{Fd: int32(l.fd), Events: unix.POLLIN}
	k, err := unix.Poll(l.fds[:], int((wait+time.Millisecond-1)/time.Millisecond))
	if err == unix.EINTR || (err == nil && k == 0) {
		return -1, nil
	}
	if err != nil {
		return 0, os.NewSyscallError("poll", err)
	}
	n, err := unix.Read(l.fd, l.buf[:])
	switch {
	case err == unix.EINTR || err == unix.EAGAIN:
		return -1, nil
	case err != nil:
		return 0, os.NewSyscallError("read", err)
	}
	return n, nil
}

// netpollRead reads through the netpoller, parking the goroutine.
func (l *udpLink) netpollRead(deadline time.Time) (int, error) {
	if !deadline.Equal(l.deadline) {
		if err := l.file.SetReadDeadline(deadline); err != nil {
			return 0, err
		}
		l.deadline = deadline
	}
	if err := l.rc.Read(l.readFn); err != nil {
		return 0, err
	}
	if l.err != nil {
		return 0, os.NewSyscallError("read", l.err)
	}
	return l.n, nil
}

func (l *udpLink) readOnce(fd uintptr) bool {
	l.n, l.err = unix.Read(int(fd), l.buf[:])
	return l.err != unix.EAGAIN
}

// toNetpoller hands the socket to Go's netpoller: non-blocking, owned by
// an os.File from now on.
func (l *udpLink) toNetpoller() error {
	if err := unix.SetNonblock(l.fd, true); err != nil {
		return os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(l.fd), "tftp transfer")
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.file, l.rc = f, rc
	l.mu.Unlock()
	return nil
}

// abort wakes a recv blocked in poll(2) or parked in the netpoller
// (shutdown(2) does that even for UDP sockets) and makes it return
// net.ErrClosed. Any goroutine may call it.
func (l *udpLink) abort() {
	l.aborted.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		_ = unix.Shutdown(l.fd, unix.SHUT_RDWR)
	}
}

// close releases the socket; only the transfer's own goroutine calls it.
func (l *udpLink) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	if l.file != nil {
		_ = l.file.Close()
		return
	}
	_ = unix.Close(l.fd)
}

// muxLink is a transfer in single-port mode: it sends from the listen
// socket, and the listen loop hands it the packets its peer sends there.
type muxLink struct {
	conn  *net.UDPConn
	peer  netip.AddrPort
	in    chan reply
	timer *time.Timer
	done  chan struct{}
	once  sync.Once
}

// muxQueue is how many packets a single-port transfer may have waiting;
// more are dropped, as a full socket buffer would.
const muxQueue = 64

func newMuxLink(conn *net.UDPConn, peer netip.AddrPort) *muxLink {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &muxLink{conn: conn, peer: peer, in: make(chan reply, muxQueue), timer: t, done: make(chan struct{})}
}

// deliver queues a packet from the peer without ever blocking the listen
// loop.
func (l *muxLink) deliver(r reply) {
	select {
	case l.in <- r:
	default:
	}
}

func (l *muxLink) send(b []byte) error {
	_, err := l.conn.WriteToUDPAddrPort(b, l.peer)
	return err
}

func (l *muxLink) recv(deadline time.Time) (reply, error) {
	select {
	case r := <-l.in:
		return r, nil
	default:
	}
	l.timer.Reset(time.Until(deadline))
	defer l.timer.Stop()
	select {
	case r := <-l.in:
		return r, nil
	case <-l.timer.C:
		return reply{}, os.ErrDeadlineExceeded
	case <-l.done:
		return reply{}, net.ErrClosed
	}
}

func (l *muxLink) abort() { l.once.Do(func() { close(l.done) }) }

func (l *muxLink) close() { l.abort() }

// isRefused reports an ICMP port unreachable seen on a connected socket:
// the client closed its port, nobody will acknowledge.
func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}
