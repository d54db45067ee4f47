package target

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dls-project/dls/plugins/protocol/iscsi/pdu"
	"github.com/dls-project/dls/plugins/protocol/iscsi/scsi"
)

const noTag = 0xffffffff

// session is an iSCSI session: one initiator port (name and ISID) logged
// in to one target (or a discovery session). The target allows one
// connection per session (MaxConnections=1).
type session struct {
	srv       *Server
	tsih      uint16
	isid      [6]byte
	initiator string
	target    string
	discovery bool
	access    Access
	nexus     *scsi.Nexus
	t         *attached // nil for discovery
	info      Info
	depth     uint32

	expCmdSN atomic.Uint32
	maxCmdSN atomic.Uint32
	// advMaxCmdSN is the MaxCmdSN last sent to the initiator. A command
	// past it is out of the window even when maxCmdSN has opened further
	// (a command completes after its response was written): the
	// initiator cannot know of that yet, so such a CmdSN is a violation.
	advMaxCmdSN atomic.Uint32
	handoff     atomic.Bool

	mu    sync.Mutex
	conn  *conn
	ahead map[uint32]bool // CmdSNs received ahead of ExpCmdSN (reader only)
	ended bool
	gone  chan struct{} // closed once the session ended and released its target
}

// sn serial-number comparisons (RFC 1982, 32 bits).
func snLT(a, b uint32) bool { return int32(a-b) < 0 }
func snLE(a, b uint32) bool { return int32(a-b) <= 0 }

// conn is one TCP connection.
type conn struct {
	srv  *Server
	base context.Context // of the Serve that accepted it: see Server.Serve
	nc   net.Conn
	br   *bufio.Reader
	rd   pdu.Reader
	p    params

	// live ends when the connection is closed: commands waiting for
	// buffer bytes give up then.
	live     context.Context
	stopLive context.CancelFunc

	seq      uint64      // accept order (Server.connSeq)
	progress atomic.Bool // a whole PDU arrived during login

	sess *session

	out    chan *outPDU
	dead   chan struct{} // closed when the writer stops
	deadMu sync.Once
	wdone  chan struct{}
	statSN uint32 // owned by the writer once in full feature phase

	mu      sync.Mutex
	tasks   map[uint32]*task
	nextTTT uint32
	tasksWG sync.WaitGroup
	stopped bool

	closeOnce sync.Once
}

func newConn(ctx context.Context, s *Server, nc net.Conn) *conn {
	c := &conn{
		srv: s, base: ctx, nc: nc, br: bufio.NewReaderSize(nc, loginBuffer),
		out: make(chan *outPDU, 512), dead: make(chan struct{}), wdone: make(chan struct{}),
		tasks: map[uint32]*task{}, statSN: 1, nextTTT: 1,
	}
	// Not ctx's cancellation: see Server.Serve.
	c.live, c.stopLive = context.WithCancel(context.WithoutCancel(ctx))
	c.rd.R = c.br
	c.rd.MaxData = 8192
	return c
}

// close closes the connection: its reader fails, and its commands
// waiting for buffer bytes stop waiting.
func (c *conn) close() {
	c.stopLive()
	c.nc.Close()
}

// Read buffers: small while a connection logs in (a login PDU's data is
// at most 8 KiB), so that thousands of connections that never log in
// cost little; larger once it does, to take many command PDUs in one
// read. Not a whole burst: data segments at least as long as the buffer
// are read straight into their command's buffer, past it, and a
// thousand sessions' 256 KiB buffers were 250 MiB of heap, which also
// let the garbage collector wait for 500 MiB before collecting.
const (
	loginBuffer = 16 << 10
	ffpBuffer   = 32 << 10
)

// growBuffer gives the reader its full-feature-phase buffer, keeping
// what the initiator already sent after its last login PDU.
func (c *conn) growBuffer() {
	var r io.Reader = c.nc
	if n := c.br.Buffered(); n > 0 {
		pending, _ := c.br.Peek(n)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(pending)), c.nc)
	}
	c.br = bufio.NewReaderSize(r, ffpBuffer)
	c.rd.R = c.br
}

// ctx bounds one call to the Resolver.
func (c *conn) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.base, 30*time.Second)
}

func (c *conn) log() interface {
	Debug(string, ...any)
	Info(string, ...any)
	Warn(string, ...any)
} {
	return c.srv.logger().With("remote", c.nc.RemoteAddr().String())
}

// shutdown ends the connection: no new commands; those running finish.
func (c *conn) shutdown(ctx context.Context) {
	c.closeOnce.Do(func() {
		// Unblock the reader; the writer sends what is queued.
		_ = c.nc.SetReadDeadline(time.Now())
	})
}

// outPDU is a PDU queued for the writer.
type outPDU struct {
	p pdu.PDU
	// stat: 0 leave bytes 24-35 alone (login), 1 fill StatSN without
	// advancing it, 2 fill and advance (a status-carrying PDU), 3 fill
	// ExpCmdSN and MaxCmdSN only (Data-In without status).
	stat    int
	release func()
	after   func()
	hd, dd  [4]byte
}

var zeroPad [4]byte

func (c *conn) send(o *outPDU) {
	select {
	case c.out <- o:
	case <-c.dead:
		if o.release != nil {
			o.release()
		}
		if o.after != nil {
			o.after()
		}
	}
}

// writer sends queued PDUs in batches with one writev each.
func (c *conn) writer() {
	defer close(c.wdone)
	batch := make([]*outPDU, 0, 64)
	bufs := make(net.Buffers, 0, 256)
	for {
		o, ok := <-c.out
		if !ok {
			return
		}
		if o == nil {
			return
		}
		batch = append(batch[:0], o)
		stop := false
	drain:
		for len(batch) < 64 {
			select {
			case o, ok := <-c.out:
				if !ok || o == nil {
					stop = true
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		bufs = bufs[:0]
		sess := c.sess
		for _, o := range batch {
			h := &o.p.Header
			if o.stat != 0 {
				if o.stat != 3 {
					binary.BigEndian.PutUint32(h[24:], c.statSN)
				}
				if o.stat == 2 {
					c.statSN++
				}
				binary.BigEndian.PutUint32(h[28:], sess.expCmdSN.Load())
				max := sess.maxCmdSN.Load()
				binary.BigEndian.PutUint32(h[32:], max)
				sess.advMaxCmdSN.Store(max)
			}
			n := len(o.p.Data)
			h[4] = 0
			h[5], h[6], h[7] = byte(n>>16), byte(n>>8), byte(n)
			bufs = append(bufs, h[:])
			if c.p.headerDigest {
				binary.LittleEndian.PutUint32(o.hd[:], pdu.HeaderDigest(h[:]))
				bufs = append(bufs, o.hd[:])
			}
			if n > 0 {
				bufs = append(bufs, o.p.Data)
				if pad := pdu.Pad(n); pad > 0 {
					bufs = append(bufs, zeroPad[:pad])
				}
				if c.p.dataDigest {
					binary.LittleEndian.PutUint32(o.dd[:], pdu.DataDigest(o.p.Data))
					bufs = append(bufs, o.dd[:])
				}
			}
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(60 * time.Second))
		_, err := bufs.WriteTo(c.nc)
		for _, o := range batch {
			if o.release != nil {
				o.release()
			}
			if o.after != nil {
				o.after()
			}
		}
		if err != nil {
			c.writerDead()
			c.close()
			return
		}
		if stop {
			return
		}
	}
}

func (c *conn) writerDead() {
	c.deadMu.Do(func() { close(c.dead) })
}

// serve runs the connection: login, then full feature phase.
func (c *conn) serve() {
	defer c.close()
	sess, err := c.login()
	c.srv.loginDone(c)
	if err != nil {
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			c.log().Debug("login ended", "error", err)
		}
		return
	}
	c.sess = sess
	go c.writer()
	err = c.readLoop()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isTimeout(err) {
		c.log().Debug("connection ended", "initiator", sess.initiator, "error", err)
	}
	c.finish()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// finish waits for running commands, flushes the writer, and ends the
// session if this was its connection.
func (c *conn) finish() {
	// Nobody will read what commands still waiting for buffer bytes
	// would send.
	c.stopLive()
	c.mu.Lock()
	c.stopped = true
	for itt, t := range c.tasks {
		if !t.running {
			// Still waiting for data-out: it never ran, nothing was
			// acknowledged.
			delete(c.tasks, itt)
			c.free(t)
			c.tasksWG.Done()
		}
	}
	c.mu.Unlock()
	c.tasksWG.Wait()
	select {
	case c.out <- nil:
	case <-c.dead:
	}
	<-c.wdone
	c.close()
	c.srv.endSession(c.sess, c)
}

// login runs the login phase and returns the session it joined.
func (c *conn) login() (_ *session, err error) {
	timeout := c.srv.LoginTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	_ = c.nc.SetDeadline(deadline)
	l := &login{c: c, first: true, peer: peerAddr(c.nc), p: defaultParams(c.srv.limits())}
	defer func() {
		if err != nil {
			l.abandon()
		}
	}()
	var req pdu.PDU
	for {
		if err := c.rd.Read(&req); err != nil {
			if errors.Is(err, pdu.ErrTooLong) {
				c.srv.fail("protocol")
				c.loginReject(&req, loginInvalidRequest)
			}
			if isTimeout(err) && !time.Now().Before(deadline) {
				// Not a shutdown's deadline: the initiator's time ran out.
				c.srv.fail("login_timeout")
			}
			return nil, err
		}
		c.progress.Store(true)
		turn := time.Now() // the target's turn: until its answer is queued
		if l.began.IsZero() {
			l.began = turn
		}
		if req.Opcode() != pdu.OpLogin {
			c.srv.fail("protocol")
			c.loginReject(&req, loginInvalidRequest)
			return nil, fmt.Errorf("opcode %#x during login", req.Opcode())
		}
		text := req.Data
		if req.Flags()&pdu.FlagContinue != 0 {
			if len(l.pending)+len(req.Data) > 64<<10 {
				c.srv.fail("protocol")
				c.loginReject(&req, loginInvalidRequest)
				return nil, errors.New("login text too long")
			}
			l.pending = append(l.pending, req.Data...)
			c.loginRespond(&req, l, nil, false, int(req.Flags()>>2)&3, 0)
			l.worked += time.Since(turn)
			continue
		}
		if len(l.pending) > 0 {
			text = append(l.pending, req.Data...)
			l.pending = nil
		}
		resp, transit, next, err := l.handle(&req, text)
		if err != nil {
			var le *loginError
			if errors.As(err, &le) {
				if le.limits() {
					c.srv.refusals().add(l.peer)
				}
				c.srv.fail(le.reason)
				c.log().Info("login refused", "initiator", l.initiator, "target", l.target, "status", fmt.Sprintf("%#04x", le.status), "reason", le.msg)
				c.loginReject(&req, le.status)
			}
			return nil, err
		}
		if !transit || next != stageFullFeature {
			c.loginRespond(&req, l, resp, transit, l.stage, next)
			l.worked += time.Since(turn)
			if transit && l.stage == stageSecurity && !l.discovery && l.tsih == 0 {
				// Authenticated, on to the operational stage: the volume
				// is attached during the initiator's turn.
				l.startAttach()
			}
			if transit {
				l.stage = next
			}
			continue
		}
		sess, status := c.srv.joinSession(c, l)
		if status != loginSuccess {
			c.srv.fail("login")
			c.loginReject(&req, status)
			return nil, fmt.Errorf("login status %#04x", status)
		}
		l.tsih = sess.tsih
		c.p = l.p
		c.loginRespond(&req, l, resp, true, l.stage, next)
		l.worked += time.Since(turn)
		_ = c.nc.SetDeadline(time.Time{})
		c.rd.HeaderDigest, c.rd.DataDigest = c.p.headerDigest, c.p.dataDigest
		c.rd.MaxData = c.srv.limits().MaxRecvDataSegmentLength
		c.growBuffer()
		if h := c.srv.Hooks.LoginStep; h != nil && !l.discovery {
			h("authorize", l.authorizeTook)
			h("attach", l.attachTook)
			h("target", l.worked)
			h("total", time.Since(l.began))
		}
		return sess, nil
	}
}

func (c *conn) loginHeader(req *pdu.PDU, tsih uint16) *pdu.PDU {
	r := &pdu.PDU{}
	r.SetOpcode(pdu.OpLoginResp, false)
	copy(r.Header[8:14], req.Header[8:14])
	r.Header[14], r.Header[15] = byte(tsih>>8), byte(tsih)
	r.SetU32(16, req.ITT())
	r.SetU32(24, c.statSN)
	c.statSN++
	cmdSN := req.U32(24)
	r.SetU32(28, cmdSN)
	r.SetU32(32, cmdSN+uint32(c.srv.limits().QueueDepth)-1)
	return r
}

func (c *conn) loginRespond(req *pdu.PDU, l *login, text []byte, transit bool, csg, nsg int) {
	r := c.loginHeader(req, l.tsih)
	if transit {
		r.Header[1] = pdu.FlagTransit | byte(csg)<<2 | byte(nsg)
	} else {
		r.Header[1] = byte(csg) << 2
	}
	r.Data = text
	c.writeRaw(r)
}

func (c *conn) loginReject(req *pdu.PDU, status uint16) {
	r := c.loginHeader(req, 0)
	r.Header[1] = req.Header[1] & 0x0c
	r.Header[36], r.Header[37] = byte(status>>8), byte(status)
	c.writeRaw(r)
}

// peerAddr is the initiator's IP address as Access.Addresses holds it:
// IPv4-mapped IPv6 unmapped, no zone; invalid for a connection that is
// not IP (a pipe in tests).
func peerAddr(nc net.Conn) netip.Addr {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap().WithZone("")
	}
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

// writeRaw writes a PDU directly (login phase: no writer yet).
func (c *conn) writeRaw(p *pdu.PDU) {
	b := p.Encode(nil, false, false)
	_, _ = c.nc.Write(b)
}

// joinSession creates the session a login completes, reinstating an old
// one with the same initiator port, or adds the connection to an existing
// session (connection reinstatement).
func (s *Server) joinSession(c *conn, l *login) (*session, uint16) {
	lim := s.limits()
	if l.tsih != 0 {
		s.mu.Lock()
		old := s.sessions[l.tsih]
		s.mu.Unlock()
		if old == nil || old.isid != l.isid || !strings.EqualFold(old.initiator, l.initiator) ||
			old.discovery != l.discovery || !strings.EqualFold(old.target, l.target) {
			return nil, loginNoSession
		}
		old.mu.Lock()
		prev := old.conn
		old.conn = c
		old.mu.Unlock()
		if prev != nil {
			prev.close()
		}
		return old, loginSuccess
	}
	sess := &session{
		srv: s, isid: l.isid, initiator: l.initiator, target: l.target, discovery: l.discovery,
		access: l.access, depth: uint32(lim.QueueDepth), ahead: map[uint32]bool{}, conn: c, gone: make(chan struct{}),
		nexus: &scsi.Nexus{ID: fmt.Sprintf("%s,i,0x%x", strings.ToLower(l.initiator), l.isid[:])},
		info:  Info{Initiator: l.initiator, Target: l.target, Client: l.access.Client, Remote: c.nc.RemoteAddr().String()},
	}
	sess.expCmdSN.Store(l.cmdSN)
	sess.maxCmdSN.Store(l.cmdSN + sess.depth - 1)
	sess.advMaxCmdSN.Store(l.cmdSN + sess.depth - 1) // the login response's
	if !l.discovery {
		t, status := l.attach()
		if status != loginSuccess {
			return nil, status
		}
		sess.t = t
		t.lu.Join(sess.nexus)
	}
	s.mu.Lock()
	for {
		s.nextTSIH++
		if s.nextTSIH != 0 && s.sessions[s.nextTSIH] == nil {
			break
		}
	}
	sess.tsih = s.nextTSIH
	s.sessions[sess.tsih] = sess
	if !sess.discovery {
		s.nSess++
		sess.t.sessions[sess] = struct{}{}
	}
	s.mu.Unlock()
	if !sess.discovery {
		if s.Hooks.Sessions != nil {
			s.Hooks.Sessions(1)
		}
		if s.Hooks.Login != nil {
			s.Hooks.Login(sess.info)
		}
		s.logger().Info("login", "initiator", sess.initiator, "target", sess.target, "client", sess.access.Client, "remote", sess.info.Remote)
	}
	return sess, loginSuccess
}

// attachFor readies l's target for a new normal session: session
// reinstatement (an old session of the same initiator port, or with
// EndStaleSessions of the same initiator, on the same target ends first,
// and its volume is released) and then the volume acquired. It runs once
// the initiator is authenticated: for a login that goes through the
// operational stage, while the initiator takes that turn (startAttach).
func (s *Server) attachFor(c *conn, l *login) (*attached, uint16) {
	s.mu.Lock()
	var olds []*session
	for _, o := range s.sessions {
		if !o.discovery && (o.isid == l.isid || s.EndStaleSessions) && strings.EqualFold(o.initiator, l.initiator) && strings.EqualFold(o.target, l.target) {
			olds = append(olds, o)
		}
	}
	tooMany := s.MaxSessions > 0 && s.nSess-len(olds) >= s.MaxSessions
	s.mu.Unlock()
	if tooMany {
		return nil, loginOutOfResources
	}
	for _, o := range olds {
		o.close(5 * time.Second)
	}
	ctx, cancel := c.ctx()
	defer cancel()
	t0 := time.Now()
	t, err := s.acquire(ctx, l.target, l.access)
	l.attachTook = time.Since(t0)
	if err != nil {
		s.logger().Error("login: attach volume", "initiator", l.initiator, "target", l.target, "error", err)
		return nil, loginTargetError
	}
	return t, loginSuccess
}

// close drops the session's connection and waits (bounded) for it to end.
func (sess *session) close(wait time.Duration) {
	sess.mu.Lock()
	c := sess.conn
	sess.mu.Unlock()
	if c == nil {
		return
	}
	c.close()
	select {
	case <-sess.gone:
	case <-time.After(wait):
	}
}

// endSession ends sess when c was its connection.
func (s *Server) endSession(sess *session, c *conn) {
	sess.mu.Lock()
	if sess.conn != c || sess.ended {
		sess.mu.Unlock()
		return
	}
	sess.ended = true
	sess.conn = nil
	sess.mu.Unlock()
	s.mu.Lock()
	delete(s.sessions, sess.tsih)
	if !sess.discovery {
		s.nSess--
		delete(sess.t.sessions, sess)
	}
	s.mu.Unlock()
	defer close(sess.gone)
	if sess.discovery {
		return
	}
	sess.t.lu.Gone(sess.nexus)
	if s.Hooks.Sessions != nil {
		s.Hooks.Sessions(-1)
	}
	if s.Hooks.Logout != nil {
		s.Hooks.Logout(sess.info)
	}
	s.logger().Info("logout", "initiator", sess.initiator, "target", sess.target, "client", sess.access.Client)
	s.release(c.base, sess.t)
}
