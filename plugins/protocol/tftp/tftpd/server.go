package tftpd

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
)

// Error reasons, the values of dls_tftp_errors_total's reason label.
const (
	reasonNotFound     = "not_found"        // no such file, unknown client, no script
	reasonAccessDenied = "access_denied"    // "..", absolute path, symlink out of root, not a regular file
	reasonBadRequest   = "bad_request"      // malformed request, unknown mode, NUL byte, name too long
	reasonWriteRefused = "write_refused"    // a write request: the server is read-only
	reasonTimeout      = "timeout"          // the client stopped acknowledging
	reasonAborted      = "aborted"          // the client sent an error (or closed its port) mid-transfer
	reasonBusy         = "busy"             // max_transfers reached: the request was dropped
	reasonClientBusy   = "client_busy"      // max_transfers_per_client reached: the request was dropped
	reasonEvicted      = "evicted"          // ended for a new request at max_transfers: its client never answered
	reasonUnavailable  = "host_unavailable" // the host did not answer a script lookup
	reasonShutdown     = "shutdown"         // aborted when the plugin stopped before it ended
	reasonInternal     = "internal"         // a read or socket error on our side
)

var reasons = []string{
	reasonNotFound, reasonAccessDenied, reasonBadRequest, reasonWriteRefused, reasonTimeout,
	reasonAborted, reasonBusy, reasonClientBusy, reasonEvicted, reasonUnavailable, reasonShutdown, reasonInternal,
}

// lookupTimeout bounds the host's answer for a script.
const lookupTimeout = 5 * time.Second

// Settings are what a Server serves with, already checked (see
// Config.settings).
type Settings struct {
	// Listen is the UDP address requests arrive on.
	Listen string
	// SinglePort answers every transfer from the listen port,
	// demultiplexing clients by address; otherwise each transfer gets
	// its own ephemeral port (RFC 1350).
	SinglePort bool
	// Tsize answers the tsize option; BlksizeNegotiation the blksize one.
	Tsize              bool
	BlksizeNegotiation bool
	// MaxBlksize and MaxWindowsize cap what clients may ask for.
	MaxBlksize    int
	MaxWindowsize int
	// Timeout is the first retransmission timeout when the client does
	// not ask for one; Retries how many times a packet is sent again.
	Timeout time.Duration
	Retries int
	// MaxTransfers bounds concurrent transfers. A request beyond it ends
	// the oldest transfer whose client never answered (a spoofed or dead
	// requester), or is dropped when every client has (the client asks
	// again).
	MaxTransfers int
	// MaxPerClient bounds the concurrent transfers of one IP address
	// (0: no bound); requests beyond it are dropped.
	MaxPerClient int
	// ReadBuffer is the listen socket's receive buffer in bytes.
	ReadBuffer int
	// ScriptDir is the folder of per-client scripts, <dir>/<mac>.ipxe;
	// "" serves none.
	ScriptDir string
	// Signed is the signed boot chain's files (signed.go).
	Signed SignedBoot

	// threadWaits is how many transfers may wait for ACKs on threads of
	// their own before the others use the netpoller (link.go); 0 means
	// GOMAXPROCS, below 0 none (tests).
	threadWaits int
}

// Server is a read-only TFTP server over files under one root, plus the
// host's per-client iPXE scripts.
type Server struct {
	set     Settings
	root    string           // folder served, opened as an os.Root per request
	clients host.Clients     // nil: no scripts
	emit    func(host.Event) // nil: no events
	m       *Metrics
	logger  hclog.Logger

	conn     *net.UDPConn
	local    netip.Addr
	ctx      context.Context
	cancel   context.CancelFunc
	loopDone chan struct{}

	// busyAt is how many transfers may wait for ACKs on threads of their
	// own (GOMAXPROCS); beyond, they wait in the netpoller (link.go).
	busyAt  int64
	running atomic.Int64

	mu      sync.RWMutex
	active  map[netip.AddrPort]*transfer
	perAddr map[netip.Addr]int // active transfers by client address
	// silent are the active transfers whose client has not answered yet,
	// oldest first: the ones a request at max_transfers ends.
	silent  list.List
	closing bool
	wg      sync.WaitGroup
}

// transfer is one read request being served.
type transfer struct {
	peer     netip.AddrPort
	req      string // the request packet: a retransmitted RRQ is ignored
	answered atomic.Bool
	evicted  atomic.Bool   // ended for a newer request (counted then)
	mux      *muxLink      // single-port mode
	silentAt *list.Element // in Server.silent until the client answers; guarded by Server.mu

	mu      sync.Mutex
	link    link
	aborted bool
}

// setLink records the transfer's link, unless the transfer was aborted.
func (t *transfer) setLink(l link) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.aborted {
		return false
	}
	t.link = l
	return true
}

func (t *transfer) abort() {
	t.mu.Lock()
	t.aborted = true
	l := t.link
	t.mu.Unlock()
	if l != nil {
		l.abort()
	}
}

// ServerOptions are a Server's collaborators.
type ServerOptions struct {
	// Root is the folder files are served from. It is opened for each
	// request, so a folder created or replaced later is seen.
	Root string
	// Clients renders per-client scripts; nil serves none.
	Clients host.Clients
	// Emit reports boot events; it must not block. nil: no events.
	Emit    func(host.Event)
	Metrics *Metrics
	Logger  hclog.Logger
}

// Listen binds the listen socket and starts serving. ctx is the base of
// the server's lookups (per-client scripts through Clients), each with its
// own deadline; Shutdown, not ctx's end, stops serving. A caller whose ctx
// ends before serving should (an RPC's) passes context.WithoutCancel(ctx).
func Listen(ctx context.Context, set Settings, o ServerOptions) (*Server, error) {
	addr, err := net.ResolveUDPAddr("udp", set.Listen)
	if err != nil {
		return nil, fmt.Errorf("tftp listen address %q: %w", set.Listen, err)
	}
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("tftp listen on %s: %w", set.Listen, err)
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if set.ReadBuffer > 0 {
		if got, err := setReadBuffer(conn, set.ReadBuffer); err != nil || got < set.ReadBuffer {
			o.Logger.Warn("tftp receive buffer smaller than asked ("+readBufferHint+")",
				"asked", set.ReadBuffer, "got", got, "error", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Server{
		set: set, root: o.Root, clients: o.Clients, emit: o.Emit, m: o.Metrics, logger: o.Logger,
		conn: conn, local: conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr(),
		ctx: ctx, cancel: cancel, loopDone: make(chan struct{}),
		active: map[netip.AddrPort]*transfer{}, perAddr: map[netip.Addr]int{}, busyAt: int64(set.threadWaits),
	}
	if set.threadWaits == 0 {
		s.busyAt = int64(runtime.GOMAXPROCS(0))
	}
	go s.loop()
	return s, nil
}

// busy reports whether more transfers run than may wait on threads of
// their own.
func (s *Server) busy() bool { return s.running.Load() > s.busyAt }

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Active is the number of transfers in progress.
func (s *Server) Active() int { return int(s.running.Load()) }

// Shutdown stops taking requests, lets transfers finish until ctx ends,
// then aborts those left and closes the socket.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	if !s.set.SinglePort {
		// Transfers have their own sockets: the listen socket can go now.
		_ = s.conn.Close()
		<-s.loopDone
	}
	drained := make(chan struct{})
	go func() { s.wg.Wait(); close(drained) }()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		s.mu.RLock()
		n := len(s.active)
		for _, t := range s.active {
			t.abort()
		}
		s.mu.RUnlock()
		s.cancel()
		<-drained
		err = fmt.Errorf("tftp: %d transfers aborted at shutdown: %w", n, ctx.Err())
	}
	s.cancel()
	_ = s.conn.Close()
	<-s.loopDone
	return err
}

// loop reads the listen socket: requests, and in single-port mode the
// transfers' ACKs and ERRORs. It never waits on anything but the socket.
func (s *Server) loop() {
	defer close(s.loopDone)
	buf := make([]byte, maxRequest)
	for {
		n, peer, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n < 2 {
			continue
		}
		// An IPv4 client of a dual-stack socket, as itself.
		peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
		switch op := uint16(buf[0])<<8 | uint16(buf[1]); op {
		case opRRQ, opWRQ:
			s.request(buf[:n], peer)
		case opACK, opERROR:
			if s.set.SinglePort {
				s.deliver(buf[:n], peer)
			}
		}
	}
}

// request answers one RRQ or WRQ: refusals at once from the listen
// socket, reads in a goroutine of their own.
func (s *Server) request(b []byte, peer netip.AddrPort) {
	req, err := ParseRequest(b)
	if err != nil {
		s.m.Requests.Inc()
		s.refuse(peer, "", err.(*requestError))
		return
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	if old := s.active[peer]; old != nil {
		if old.req == string(b) && !old.answered.Load() {
			// The client asked again before our first answer reached it.
			s.mu.Unlock()
			return
		}
		// The client started over from the same port.
		old.abort()
		s.forget(old)
	}
	s.m.Requests.Inc()
	if req.Write {
		s.mu.Unlock()
		s.refuse(peer, req.Name, &requestError{code: codeAccess, reason: reasonWriteRefused, msg: "write requests are refused: this server is read-only"})
		return
	}
	if s.set.MaxPerClient > 0 && s.perAddr[peer.Addr()] >= s.set.MaxPerClient {
		s.mu.Unlock()
		s.m.Errors.WithLabelValues(reasonClientBusy).Inc()
		s.logger.Debug("tftp request dropped: max_transfers_per_client reached", "peer", peer, "file", req.Name)
		return
	}
	var victim *transfer
	if len(s.active) >= s.set.MaxTransfers {
		e := s.silent.Front()
		if e == nil {
			s.mu.Unlock()
			s.m.Errors.WithLabelValues(reasonBusy).Inc()
			s.logger.Debug("tftp request dropped: max_transfers reached", "peer", peer, "file", req.Name)
			return
		}
		// A flood of requests that are never acknowledged (spoofed
		// sources, or a client gone) must not hold every slot until
		// their retries run out: the oldest gives way.
		victim = e.Value.(*transfer)
		victim.evicted.Store(true)
		s.forget(victim)
	}
	t := &transfer{peer: peer, req: string(b)}
	if s.set.SinglePort {
		t.mux = newMuxLink(s.conn, peer)
		t.link = t.mux
	}
	s.active[peer] = t
	s.perAddr[peer.Addr()]++
	t.silentAt = s.silent.PushBack(t)
	s.wg.Add(1)
	s.mu.Unlock()
	if victim != nil {
		victim.abort()
		s.m.Errors.WithLabelValues(reasonEvicted).Inc()
		s.logger.Debug("tftp transfer ended for a new request: max_transfers reached, its client never answered", "peer", victim.peer)
	}
	s.m.Active.Inc()
	s.running.Add(1)
	go s.serve(t, &req)
}

// forget removes t from the active transfers, if it is still there.
// s.mu is held.
func (s *Server) forget(t *transfer) {
	if t.silentAt != nil {
		s.silent.Remove(t.silentAt)
		t.silentAt = nil
	}
	if s.active[t.peer] != t {
		return
	}
	delete(s.active, t.peer)
	a := t.peer.Addr()
	if s.perAddr[a] <= 1 {
		delete(s.perAddr, a)
	} else {
		s.perAddr[a]--
	}
}

// heard records the client's first answer: t no longer gives way to
// new requests.
func (s *Server) heard(t *transfer) {
	s.mu.Lock()
	if t.silentAt != nil {
		s.silent.Remove(t.silentAt)
		t.silentAt = nil
	}
	s.mu.Unlock()
	t.answered.Store(true)
}

// deliver hands a single-port transfer the packet its peer sent.
func (s *Server) deliver(b []byte, peer netip.AddrPort) {
	r, err := parseReply(b)
	if err != nil {
		return
	}
	s.mu.RLock()
	t := s.active[peer]
	s.mu.RUnlock()
	if t == nil {
		return
	}
	if r.op == opERROR {
		// Forget the peer now: its next request is a new transfer.
		s.mu.Lock()
		s.forget(t)
		s.mu.Unlock()
	}
	t.mux.deliver(r)
}

// refuse sends an ERROR from the listen socket and counts it.
func (s *Server) refuse(peer netip.AddrPort, name string, e *requestError) {
	s.m.Errors.WithLabelValues(e.reason).Inc()
	s.logger.Debug("tftp request refused", "peer", peer, "file", name, "reason", e.reason, "message", e.msg)
	_, _ = s.conn.WriteToUDPAddrPort(appendError(nil, e.code, e.msg), peer)
}

func (s *Server) finish(t *transfer) {
	s.mu.Lock()
	s.forget(t)
	s.mu.Unlock()
	t.mu.Lock()
	t.aborted = true
	if t.link != nil {
		t.link.close()
	}
	t.mu.Unlock()
	s.m.Active.Dec()
	s.running.Add(-1)
	s.wg.Done()
}

// content is what a request names, opened.
type content struct {
	r     io.ReaderAt
	size  int64
	close func()
	// served is reported once the client acknowledged the last block
	// (Type "": nothing to report).
	served host.Event
}

// serve runs one read transfer, start to end.
func (s *Server) serve(t *transfer, req *Request) {
	defer s.finish(t)
	start := time.Now()
	c, rerr := s.open(req, t.peer)
	if rerr != nil {
		s.refuse(t.peer, req.Name, rerr)
		return
	}
	defer c.close()
	p := negotiate(req, &s.set, c.size)
	if t.mux == nil {
		l, err := dialLink(s.local.Unmap(), t.peer, s.busy)
		if err != nil {
			s.refuse(t.peer, req.Name, &requestError{code: codeNotDefined, reason: reasonInternal, msg: "no transfer socket"})
			s.logger.Warn("tftp transfer socket", "peer", t.peer, "error", err)
			return
		}
		if !t.setLink(l) {
			l.close()
			return
		}
	}
	var src source = &octetSource{r: c.r, size: c.size}
	if req.Mode == modeNetascii {
		src = newNetasciiSource(c.r, c.size, p.blksize, p.window)
	}
	snd := &sender{
		link: t.link, src: src, blksize: p.blksize, window: int64(p.window),
		timeout: p.timeout, retries: s.set.Retries, pkt: make([]byte, 4+p.blksize),
		answered: func() { s.heard(t) }, bytes: s.m.SentBytes, retransmits: s.m.Retransmits,
	}
	if len(p.oack) > 0 {
		snd.oack = appendOACK(nil, p.oack)
	}
	terr := snd.run()
	if terr != nil {
		if t.evicted.Load() {
			return // counted as evicted
		}
		s.m.Errors.WithLabelValues(terr.reason).Inc()
		s.logger.Debug("tftp transfer failed", "peer", t.peer, "file", req.Name, "reason", terr.reason, "error", terr.err)
		return
	}
	s.m.Duration.Observe(time.Since(start).Seconds())
	if c.served.Type != "" && s.emit != nil {
		c.served.Time = time.Now()
		s.emit(c.served)
	}
}

// open finds what req names: a per-client script or a file under root.
func (s *Server) open(req *Request, peer netip.AddrPort) (*content, *requestError) {
	rel, rerr := localName(req.Name)
	if rerr != nil {
		return nil, rerr
	}
	attrs := map[string]string{host.AttrFile: rel, host.AttrRemote: peer.String(), "via": "tftp"}
	addr := peer.Addr().String()
	if mac, ok := scriptMAC(rel, s.set.ScriptDir); ok {
		return s.openScript(mac, host.Event{MAC: mac, Address: addr, Attrs: attrs})
	}
	if mac, ok := s.set.Signed.grubMAC(rel); ok {
		return s.openGRUBConfig(mac, host.Event{MAC: mac, Address: addr, Attrs: attrs})
	}
	if token, ok := s.set.Signed.grubFailure(rel); ok {
		return nil, s.reportGRUBFailure(token, peer)
	}
	f, size, rerr := openFile(s.root, rel)
	if rerr != nil && rerr.reason == reasonNotFound {
		// Not under root: one of the signed chain's files (signed.go)?
		if c, serr, ok := s.signedFile(rel, host.Event{Address: addr, Attrs: attrs}); ok {
			return c, serr
		}
	}
	if rerr != nil {
		return nil, rerr
	}
	return &content{
		r: f, size: size, close: func() { _ = f.Close() },
		served: host.Event{Type: host.EventFileServed, Address: addr, Attrs: attrs},
	}, nil
}

// openScript asks the host for the client's script. script_served is
// reported as soon as the script is handed out, like the host's HTTP
// /boot/<mac>.ipxe does: a boot session that starts here must reset a
// non-persistent client's volume before the script's sanboot logs in.
func (s *Server) openScript(mac string, ev host.Event) (*content, *requestError) {
	if s.clients == nil {
		return nil, notFound("no boot script for this machine")
	}
	ctx, cancel := context.WithTimeout(s.ctx, lookupTimeout)
	defer cancel()
	// The user class marks the request as firmware's (iPXE fetching its
	// script), so unknown_clients = "register" applies as it does to DHCP.
	sc, err := s.clients.Script(ctx, host.ScriptQuery{MAC: mac, Peer: ev.Address})
	if err != nil {
		s.logger.Warn("tftp script lookup failed", "mac", mac, "error", err)
		return nil, &requestError{code: codeNotDefined, reason: reasonUnavailable, msg: "boot script unavailable, try again"}
	}
	if !sc.Found {
		return nil, notFound("no boot script for this machine")
	}
	if s.emit != nil {
		ev.Type, ev.Client, ev.Time = host.EventScriptServed, sc.Client, time.Now()
		s.emit(ev)
	}
	return &content{r: strings.NewReader(sc.Body), size: int64(len(sc.Body)), close: func() {}}, nil
}

// openFile opens rel, a localName result, under the folder root. os.Root
// confines the lookup: no "..", no symlink leading out. Only regular
// files are served; O_NONBLOCK keeps a FIFO from blocking the open.
func openFile(root, rel string) (*os.File, int64, *requestError) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, 0, &requestError{code: codeNotDefined, reason: reasonInternal, msg: "TFTP root unavailable"}
	}
	defer r.Close()
	f, err := r.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, openError(err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, &requestError{code: codeNotDefined, reason: reasonInternal, msg: "cannot read file"}
	}
	if !st.Mode().IsRegular() {
		_ = f.Close()
		return nil, 0, accessDenied("not a regular file")
	}
	return f, st.Size(), nil
}

// openError maps a failed open under root to a TFTP refusal. os.Root
// reports a path that escapes root (by "..", or by a symlink pointing
// out) with an error of its own: access denied.
func openError(err error) *requestError {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return notFound("file not found")
	case errors.Is(err, syscall.ENAMETOOLONG):
		return badRequest("file name too long")
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE), errors.Is(err, syscall.ENOMEM), errors.Is(err, syscall.EIO):
		return &requestError{code: codeNotDefined, reason: reasonInternal, msg: "cannot open file"}
	case errors.Is(err, fs.ErrPermission):
		return accessDenied("permission denied")
	}
	return accessDenied("path leaves the TFTP root")
}
