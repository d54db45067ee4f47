// Package target is an iSCSI target (RFC 7143): it accepts connections,
// runs login (security and operational negotiation, CHAP), SendTargets
// discovery and full-feature sessions, and serves each target's LUN 0
// through package scsi. Who may log in where, and which volume a target
// serves, come from a Resolver; events and metrics go to Hooks.
package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dls-project/dls/plugins/protocol/iscsi/bufpool"
	"github.com/dls-project/dls/plugins/protocol/iscsi/scsi"
	"github.com/hashicorp/go-hclog"
)

// Access is the Resolver's answer for one initiator and target.
type Access struct {
	// Allowed is false when the initiator may not log in to the target
	// (or, for discovery, is unknown).
	Allowed bool
	// Known is false when the target does not exist.
	Known bool
	// Client names the client the target belongs to.
	Client string
	// Name is the target's name as the initiator knows it: what the
	// target answers as CHAP_N in mutual CHAP, also for discovery.
	Name string
	// CHAPUser and CHAPSecret, when CHAPSecret is set, are what the
	// initiator must answer with; MutualSecret what the target answers
	// with (as the target's name) when the initiator asks.
	CHAPUser     string
	CHAPSecret   string
	MutualSecret string
	// Addresses are where a normal session of this client may come
	// from; with Server.BindToAddresses a login from elsewhere is
	// refused. Empty: from nowhere.
	Addresses []netip.Addr
}

// Request is what a login asks the Resolver.
type Request struct {
	// Initiator is the initiator's name (InitiatorName).
	Initiator string
	// Target is the target's name; empty for a discovery session.
	Target string
	// Peer is the initiator's TCP address, IPv4-mapped IPv6 unmapped,
	// without zone; invalid when the connection is not TCP.
	Peer netip.Addr
}

// Volume is what a target serves as LUN 0.
type Volume interface {
	scsi.Backing
	io.Closer
}

// Resolver decides who may log in where and opens targets' volumes.
type Resolver interface {
	// Authorize answers whether r.Initiator may log in to r.Target; an
	// empty target asks about a discovery session.
	Authorize(ctx context.Context, r Request) (Access, error)
	// Discover lists the targets initiator may log in to.
	Discover(ctx context.Context, initiator string) ([]string, error)
	// Attach opens the volume of a target for its first session.
	Attach(ctx context.Context, target string, a Access) (Volume, error)
	// Detach is called after the target's last session ended and its
	// volume was closed.
	Detach(ctx context.Context, target string, a Access)
}

// Hooks receive what the target reports. Any may be nil.
type Hooks struct {
	// Connection: a TCP connection was accepted.
	Connection func()
	// Error: something was refused or failed; reason is a short label
	// (auth, authorization, not_found, protocol, digest, ...).
	Error func(reason string)
	// Login, Logout and Handoff are boot events of a normal session.
	Login   func(s Info)
	Logout  func(s Info)
	Handoff func(s Info)
	// Sessions: the number of open normal sessions changed by delta.
	Sessions func(delta int)
	// Command: one SCSI command finished.
	Command func(group string, d time.Duration, read, written int64)
	// LoginStep: a step of a successful normal login took d: "authorize"
	// (the Resolver's Authorize), "attach" (acquiring the volume, the
	// Resolver's Attach when the target was not attached yet) or "total"
	// (the first login PDU read to the final login response queued,
	// initiator round trips included).
	LoginStep func(step string, d time.Duration)
	// Buffers: the bytes of data buffers reserved from the server's
	// pool (see Server.MaxBufferBytes) changed to inUse. It is called
	// in order, under the pool's lock: it must be quick.
	Buffers func(inUse int64)
}

// Info describes a session for hooks.
type Info struct {
	Initiator string
	Target    string
	Client    string
	Remote    string
}

// Limits are the target's side of operational negotiation.
type Limits struct {
	// MaxRecvDataSegmentLength the target declares (bytes).
	MaxRecvDataSegmentLength int
	// MaxBurstLength and FirstBurstLength the target offers at most.
	MaxBurstLength   int
	FirstBurstLength int
	// MaxOutstandingR2T the target allows at most.
	MaxOutstandingR2T int
	// QueueDepth is the CmdSN window per session.
	QueueDepth int
	// Digests allows CRC32C header and data digests when initiators ask.
	Digests bool
	// DefaultTime2Wait and DefaultTime2Retain the target offers.
	DefaultTime2Wait   int
	DefaultTime2Retain int
}

// DefaultLimits are sensible for boot and for throughput.
var DefaultLimits = Limits{
	MaxRecvDataSegmentLength: 256 << 10,
	MaxBurstLength:           16<<20 - 1024,
	FirstBurstLength:         256 << 10,
	MaxOutstandingR2T:        8,
	QueueDepth:               128,
	Digests:                  true,
	DefaultTime2Wait:         2,
	DefaultTime2Retain:       0,
}

// Server is an iSCSI target serving on any number of listeners.
type Server struct {
	Resolver Resolver
	Hooks    Hooks
	Logger   hclog.Logger
	Limits   Limits
	// MaxSessions bounds normal sessions (0: no bound).
	MaxSessions int
	// Identity is the INQUIRY vendor, product and revision.
	Vendor, Product, Revision string
	// LoginTimeout bounds the login phase of a connection.
	LoginTimeout time.Duration
	// MaxLoginConnections bounds the connections still in their login
	// phase (0: DefaultMaxLoginConnections). When a new connection would
	// go over it, the oldest connection that has not sent one whole PDU
	// is closed (else the oldest in login): idle and half-open
	// connections cannot hold the portal's file descriptors and memory
	// for LoginTimeout each, and a machine that sends its login at once
	// gets in.
	MaxLoginConnections int
	// EndStaleSessions makes a new login end the initiator's older
	// sessions on the same target whatever their ISID, not only those of
	// the same ISID (session reinstatement, RFC 7143 6.3.5). A diskless
	// machine that reboots, or whose OS takes over from its firmware,
	// never logs out: its old session would keep the volume until TCP
	// gives up, and iPXE and the OS use different ISIDs.
	EndStaleSessions bool
	// BindToAddresses refuses (0x0202) a normal session whose TCP peer
	// is not one of its Access.Addresses, before anything changes: no
	// volume is attached and no older session is ended.
	BindToAddresses bool
	// RefusedLoginLimit bounds refused logins (authentication,
	// authorization, unknown target or initiator, unbound address) from
	// one source address within RefusedLoginWindow: past it, logins
	// from that address are refused at once, without asking the
	// Resolver, until the window ends. 0: DefaultRefusedLoginLimit;
	// negative: no limit.
	RefusedLoginLimit  int
	RefusedLoginWindow time.Duration
	// MaxBufferBytes bounds the data-in and data-out buffers of all
	// commands of all sessions together (0: DefaultMaxBufferBytes). A
	// command that would go over it waits for others to finish (first
	// come, first served) instead of allocating; one larger than the
	// whole pool waits until it is empty and then runs alone.
	MaxBufferBytes int64
	// BufferWait bounds that wait (0: DefaultBufferWait); a command that
	// waited that long ends with BUSY, which initiators retry.
	BufferWait time.Duration
	// DeadPeerTimeout is how long a connection whose peer vanished (a
	// machine powered off: nothing sends a FIN) keeps its session and
	// volume: TCP keepalive probes an idle connection and closes it when
	// the peer has answered nothing for that long, and TCP_USER_TIMEOUT
	// (Linux) does the same for one with data unacknowledged. 0:
	// DefaultDeadPeerTimeout; under 3 s it is 3 s (keepalive counts in
	// seconds).
	DeadPeerTimeout time.Duration

	refusalsOnce sync.Once
	refused      *refusals
	bufsOnce     sync.Once
	bufs         *bufpool.Pool

	mu       sync.Mutex
	closed   bool
	lns      []net.Listener
	conns    map[*conn]struct{}
	logins   map[*conn]struct{} // connections in their login phase
	sessions map[uint16]*session
	nextTSIH uint16
	targets  map[string]*attached
	detach   map[string]chan struct{} // targets whose volume is closing
	nSess    int
	connSeq  uint64 // accept order, for choosing whom to evict
	lastLog  atomic.Int64
	wg       sync.WaitGroup
}

// attached is a target whose volume is open, shared by its sessions.
type attached struct {
	name string
	mu   sync.Mutex // held while attaching
	refs int
	lu   *scsi.LU
	vol  Volume
	acc  Access
	// sessions on this target, for resets and reservations.
	sessions map[*session]struct{}
}

func (s *Server) logger() hclog.Logger {
	if s.Logger == nil {
		return hclog.NewNullLogger()
	}
	return s.Logger
}

func (s *Server) limits() Limits {
	l := s.Limits
	d := DefaultLimits
	if l.MaxRecvDataSegmentLength <= 0 {
		l.MaxRecvDataSegmentLength = d.MaxRecvDataSegmentLength
	}
	if l.MaxBurstLength <= 0 {
		l.MaxBurstLength = d.MaxBurstLength
	}
	if l.FirstBurstLength <= 0 {
		l.FirstBurstLength = d.FirstBurstLength
	}
	if l.MaxOutstandingR2T <= 0 {
		l.MaxOutstandingR2T = d.MaxOutstandingR2T
	}
	if l.QueueDepth <= 0 {
		l.QueueDepth = d.QueueDepth
	}
	return l
}

// refusals is the server's refused-login counter, made on first use.
func (s *Server) refusals() *refusals {
	s.refusalsOnce.Do(func() {
		limit, window := s.RefusedLoginLimit, s.RefusedLoginWindow
		if limit == 0 {
			limit = DefaultRefusedLoginLimit
		}
		if window <= 0 {
			window = DefaultRefusedLoginWindow
		}
		s.refused = newRefusals(limit, window, refusalSources, time.Now)
	})
	return s.refused
}

func (s *Server) fail(reason string) {
	if s.Hooks.Error != nil {
		s.Hooks.Error(reason)
	}
}

// DefaultMaxBufferBytes is MaxBufferBytes when unset: two sessions'
// worth of sequential 1 MiB reads at queue depth 32 (32 MiB in flight
// each), a quarter of what a thousand machines booting at once ask for (a
// thousand 256 KiB reads, 250 MiB). Measured in a 1000-machine storm, a
// smaller pool did not lower the plugin's peak RSS (126, 150 and 156 MiB in
// three runs with 64 MiB, 133 with 32), so it would only slow reads.
const DefaultMaxBufferBytes = 64 << 20

// DefaultBufferWait is BufferWait when unset: shorter than an initiator's
// command timeout (Linux: 30 s), so that it gets BUSY and retries rather
// than aborting the task.
const DefaultBufferWait = 15 * time.Second

// pool is the server's buffer pool, made on first use.
func (s *Server) pool() *bufpool.Pool {
	s.bufsOnce.Do(func() {
		limit := s.MaxBufferBytes
		if limit <= 0 {
			limit = DefaultMaxBufferBytes
		}
		s.bufs = bufpool.New(limit, s.Hooks.Buffers)
	})
	return s.bufs
}

// bufferWait is how long a command waits for buffer bytes.
func (s *Server) bufferWait() time.Duration {
	if s.BufferWait > 0 {
		return s.BufferWait
	}
	return DefaultBufferWait
}

// BufferBytes returns the bytes of data buffers reserved now and the
// pool's size.
func (s *Server) BufferBytes() (inUse, limit int64) {
	p := s.pool()
	return p.InUse(), p.Limit()
}

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("iscsi target closed")

// Serve accepts connections on ln until Close. ctx is the base of every
// call its connections make to the Resolver, each with its own deadline:
// its values reach the Resolver, and once it ends those calls fail; Close,
// not ctx, stops serving. A caller whose ctx ends before serving should
// (an RPC's) passes context.WithoutCancel(ctx).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.lns = append(s.lns, ln)
	if s.conns == nil {
		s.conns = map[*conn]struct{}{}
		s.logins = map[*conn]struct{}{}
		s.sessions = map[uint16]*session{}
		s.targets = map[string]*attached{}
		s.detach = map[string]chan struct{}{}
	}
	s.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if !acceptRetryable(err) {
				return err
			}
			// Out of file descriptors (or a connection reset before it
			// was accepted): the portal must outlive it. Wait for
			// connections to end, longer each time, as net/http does.
			s.fail("accept")
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if s.logOnce() {
				s.logger().Warn("accept failed; retrying", "error", err, "in", backoff)
			}
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if s.Hooks.Connection != nil {
			s.Hooks.Connection()
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
			s.detectDeadPeer(tc)
		}
		c := newConn(ctx, s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return ErrClosed
		}
		s.connSeq++
		c.seq = s.connSeq
		s.conns[c] = struct{}{}
		s.admitLogin(c)
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// DefaultDeadPeerTimeout is DeadPeerTimeout when unset. iPXE does not
// answer NOP-In pings, so a target cannot ping a session to see whether
// its machine is still there; every TCP stack, iPXE's too, answers a
// keepalive probe. The system's keepalive (2 h, or 30 s idle then 9 probes
// 30 s apart as this target used to set: 5 min) kept a powered-off
// machine's volume attached, and its reset refused, for minutes.
const DefaultDeadPeerTimeout = 30 * time.Second

// minDeadPeerTimeout is the smallest DeadPeerTimeout: keepalive's idle
// time and interval are whole seconds.
const minDeadPeerTimeout = 3 * time.Second

// deadPeerTimeout is DeadPeerTimeout with its default and floor.
func (s *Server) deadPeerTimeout() time.Duration {
	if s.DeadPeerTimeout <= 0 {
		return DefaultDeadPeerTimeout
	}
	return max(s.DeadPeerTimeout, minDeadPeerTimeout)
}

// deadPeerKeepAlive is the keepalive that gives up on a silent peer
// within d: d/3 idle, then 4 probes d/6 apart (30 s: 10 s, then 5 s x 4).
func deadPeerKeepAlive(d time.Duration) net.KeepAliveConfig {
	return net.KeepAliveConfig{
		Enable:   true,
		Idle:     max(d/3, time.Second),
		Interval: max(d/6, time.Second),
		Count:    4,
	}
}

// detectDeadPeer makes the kernel close tc once its peer has answered
// nothing for deadPeerTimeout, idle or not. The close ends the
// connection's reads, hence its session, and releases the volume.
func (s *Server) detectDeadPeer(tc *net.TCPConn) {
	d := s.deadPeerTimeout()
	if err := tc.SetKeepAliveConfig(deadPeerKeepAlive(d)); err != nil {
		s.logger().Debug("set TCP keepalive", "error", err)
	}
	if err := setUserTimeout(tc, d); err != nil {
		s.logger().Debug("set TCP_USER_TIMEOUT", "error", err)
	}
}

// DefaultMaxLoginConnections is MaxLoginConnections when unset.
const DefaultMaxLoginConnections = 4096

// admitLogin counts c among the connections in login, closing another
// when that goes over MaxLoginConnections. s.mu is held.
func (s *Server) admitLogin(c *conn) {
	limit := s.MaxLoginConnections
	if limit <= 0 {
		limit = DefaultMaxLoginConnections
	}
	for len(s.logins) >= limit {
		var idle, oldest *conn
		for o := range s.logins {
			if oldest == nil || o.seq < oldest.seq {
				oldest = o
			}
			if !o.progress.Load() && (idle == nil || o.seq < idle.seq) {
				idle = o
			}
		}
		victim := idle
		if victim == nil {
			victim = oldest
		}
		delete(s.logins, victim)
		// Its login's read fails at once; serve ends it.
		victim.nc.Close()
		s.fail("login_evicted")
	}
	s.logins[c] = struct{}{}
}

// loginDone stops counting c among the connections in login.
func (s *Server) loginDone(c *conn) {
	s.mu.Lock()
	delete(s.logins, c)
	s.mu.Unlock()
}

// logOnce limits warnings from the accept loop to one a second.
func (s *Server) logOnce() bool {
	now := time.Now().UnixNano()
	last := s.lastLog.Load()
	return now-last >= int64(time.Second) && s.lastLog.CompareAndSwap(last, now)
}

// acceptRetryable reports whether Accept may work again later: out of
// file descriptors or buffers, or a connection aborted before it was
// accepted.
func acceptRetryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Close stops accepting, ends every connection after its commands in
// flight finish (bounded by ctx), and closes every volume.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for _, ln := range s.lns {
		ln.Close()
	}
	s.lns = nil
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.shutdown(ctx)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			c.close()
		}
		<-done
		return ctx.Err()
	}
}

// Sessions returns the number of open normal sessions.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nSess
}

// acquire opens (or shares) the target's volume for a new session.
func (s *Server) acquire(ctx context.Context, target string, a Access) (*attached, error) {
	key := strings.ToLower(target)
	s.mu.Lock()
	for s.detach[key] != nil {
		// The last session just ended and its volume is being closed:
		// an overlay opens once at a time, so wait for it.
		ch := s.detach[key]
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		s.mu.Lock()
	}
	t := s.targets[key]
	if t == nil {
		t = &attached{name: target, sessions: map[*session]struct{}{}}
		s.targets[key] = t
	}
	t.refs++
	s.mu.Unlock()

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lu == nil {
		vol, err := s.Resolver.Attach(ctx, target, a)
		if err != nil {
			s.mu.Lock()
			t.refs--
			if t.refs == 0 {
				delete(s.targets, key)
			}
			s.mu.Unlock()
			return nil, fmt.Errorf("attach volume of target %s: %w", target, err)
		}
		t.vol, t.acc = vol, a
		t.lu = scsi.NewLU(vol, scsi.Identity{
			Vendor: s.Vendor, Product: s.Product, Revision: s.Revision, Name: target,
		})
	}
	return t, nil
}

// release drops a session's hold on its target; the last one closes the
// volume and detaches it. The detach is cleanup: it runs under ctx's
// values even when ctx has ended.
func (s *Server) release(ctx context.Context, t *attached) {
	key := strings.ToLower(t.name)
	s.mu.Lock()
	t.refs--
	last := t.refs == 0
	var done chan struct{}
	if last {
		delete(s.targets, key)
		done = make(chan struct{})
		s.detach[key] = done
	}
	s.mu.Unlock()
	if !last {
		return
	}
	defer func() {
		s.mu.Lock()
		delete(s.detach, key)
		s.mu.Unlock()
		close(done)
	}()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.vol != nil {
		if err := t.vol.Close(); err != nil {
			s.logger().Error("close volume", "target", t.name, "error", err)
		}
		t.vol = nil
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		s.Resolver.Detach(ctx, t.name, t.acc)
		cancel()
	}
}
