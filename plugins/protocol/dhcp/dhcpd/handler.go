package dhcpd

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"time"

	"github.com/dls-project/dls/plugins/protocol/bootclient"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/host/clienttable"
	"github.com/dls-project/dls/sdk/host/leasecommit"
	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Packet size limits: a BOOTP header and the magic cookie at least, an
// Ethernet frame's payload at most.
const (
	minPacket = 240
	maxPacket = 1500
)

// lookupTimeout bounds one boot decision asked of the host.
const lookupTimeout = 3 * time.Second

// packetInfo is how a packet arrived.
type packetInfo struct {
	src     netip.AddrPort
	ifIndex int   // interface it came in on; 0 unknown
	locals  []ip4 // that interface's IPv4 addresses; nil: use server_ip
	proxy   bool  // on the proxyDHCP port
	conn    *listener
	at      time.Time
}

// reply is an answer ready to leave.
type reply struct {
	b       []byte
	dst     netip.AddrPort
	ifIndex int // a broadcast leaves through this interface
	conn    *listener
	typ     string // replyOffer, replyAck, replyNak
	at      time.Time
}

// eventSink takes boot events without blocking (a host.Batcher).
type eventSink interface{ Emit(host.Event) }

// server answers DHCP packets: one per running Start.
type server struct {
	set      *settings
	serverIP ip4
	table    *table
	clients  host.Clients // nil: every client is unknown
	events   eventSink    // nil: none reported
	// bindings receives proxy answers before they leave (the host binds
	// the machine's next script request to its requester): a direct
	// Report, not the batcher, so the host knows before the machine can
	// ask. nil: through events.
	bindings host.Events
	cache    *decisions
	known    *clienttable.Table // the host's pushed clients; nil: Lookup only
	limit    *limiter
	commits  *leasecommit.Committer
	probe    *prober // nil: no ICMP probe
	m        *dhcpMetrics
	out      func(reply) error
	logger   hclog.Logger
}

// handle answers one packet. It never panics on any input (see the fuzz
// test) and counts every packet it drops.
func (s *server) handle(ctx context.Context, b []byte, in packetInfo) {
	switch {
	case len(b) > maxPacket:
		s.m.drop(reasonOversized)
		return
	case len(b) < minPacket:
		s.m.drop(reasonTruncated)
		return
	case b[0] != byte(dhcpv4.OpcodeBootRequest):
		s.m.drop(reasonWrongOp)
		return
	}
	req, err := dhcpv4.FromBytes(b)
	if err != nil {
		s.m.drop(reasonMalformed)
		return
	}
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		s.m.drop(reasonHardware)
		return
	}
	mt := req.MessageType()
	s.m.received(mt)
	if mt == dhcpv4.MessageTypeNone {
		s.m.drop(reasonBOOTP)
		return
	}
	mac := string(req.ClientHWAddr)
	if !s.limit.allow(mac, in.at) {
		s.m.drop(reasonRateLimited)
		return
	}
	c := clientOf(req)
	c.from = fromOf(req, in)
	if s.set.Mode == modeProxy {
		s.proxy(ctx, req, in, mac, c, mt)
		return
	}
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		s.discover(ctx, req, in, mac, c)
	case dhcpv4.MessageTypeRequest:
		s.request(ctx, req, in, mac, c)
	case dhcpv4.MessageTypeRelease:
		s.release(req, mac)
	case dhcpv4.MessageTypeDecline:
		s.decline(req, mac)
	case dhcpv4.MessageTypeInform:
		s.inform(ctx, req, in, mac, c)
	default:
		s.m.drop(reasonUnsupported)
	}
}

// discover answers a DHCPDISCOVER with an OFFER: an address held for the
// client and, for known boot firmware, what to boot.
func (s *server) discover(ctx context.Context, req *dhcpv4.DHCPv4, in packetInfo, mac string, c client) {
	d, ok := s.decideFor(ctx, mac, c)
	if !ok {
		return
	}
	s.event(host.EventDHCPDiscover, mac, d, 0, &c)
	reserved := parseIP4(d.ReservedAddress)
	reservedOnly := s.set.Mode == modeReservation
	if reservedOnly && !s.reservedClient(d, reserved) {
		return
	}
	pools := s.poolsFor(req, in)
	if len(pools) == 0 {
		s.m.drop(reasonNoPool)
		return
	}
	p, a, fresh, err := s.table.offer(pools, mac, ip4FromIP(req.RequestedIPAddress()), reserved, reservedOnly, d.Known)
	switch {
	case errors.Is(err, errReservedInUse):
		s.m.drop(reasonReservedInUse)
		return
	case errors.Is(err, errUnknownLimit):
		s.m.drop(reasonUnknownLimit)
		return
	case err != nil:
		s.m.drop(reasonExhausted)
		return
	}
	resp := s.newReply(req, dhcpv4.MessageTypeOffer, p, a)
	if d.Known && c.firmware() {
		pxeOptions(resp, c, s.set.bootFile(c, d), s.nextServer(d), false)
	}
	r := s.replyTo(req, in, resp, replyOffer)
	if fresh && s.probe != nil {
		s.probe.check(a, func(inUse bool) {
			if inUse {
				// Someone answers on the address: keep it from everyone
				// for a while; the client's next DISCOVER gets another.
				s.table.quarantine(p, a, mac)
				s.m.drop(reasonAddressInUse)
				return
			}
			s.send(r)
			s.event(host.EventDHCPOffer, mac, d, a, nil)
		})
		return
	}
	s.send(r)
	s.event(host.EventDHCPOffer, mac, d, a, nil)
}

// request answers a DHCPREQUEST: the lease is stored through the host (in
// a batch with others) and only then ACKed; a refusal is NAKed.
func (s *server) request(ctx context.Context, req *dhcpv4.DHCPv4, in packetInfo, mac string, c client) {
	if sid := ip4FromIP(req.ServerIdentifier()); sid != 0 && sid != s.serverIP {
		// The client took another server's offer: ours is free again.
		s.table.unoffer(mac)
		s.m.drop(reasonOtherServer)
		return
	}
	a := ip4FromIP(req.RequestedIPAddress())
	if a == 0 {
		a = ip4FromIP(req.ClientIPAddr)
	}
	if a == 0 {
		s.m.drop(reasonMalformed)
		return
	}
	d, ok := s.decideFor(ctx, mac, c)
	if !ok {
		return
	}
	s.event(host.EventDHCPRequest, mac, d, a, &c)
	reservedOnly := s.set.Mode == modeReservation
	if reservedOnly && !s.reservedClient(d, parseIP4(d.ReservedAddress)) {
		return
	}
	pools := s.poolsFor(req, in)
	if len(pools) == 0 {
		s.m.drop(reasonNoPool)
		return
	}
	lease, p, why := s.table.request(pools, mac, a, c.hostname, reservedOnly, d.Known)
	if why == refusedUnknownLimit {
		s.m.drop(reasonUnknownLimit)
		return
	}
	if why != nakNone {
		s.m.drop(why)
		s.nak(req, in, mac, d)
		return
	}
	resp := s.newReply(req, dhcpv4.MessageTypeAck, p, a)
	if d.Known && c.firmware() {
		pxeOptions(resp, c, s.set.bootFile(c, d), s.nextServer(d), false)
	}
	r := s.replyTo(req, in, resp, replyAck)
	queued := s.commits.Add(leasecommit.Job{Lease: lease, Done: func(res host.CommitResult, err error) {
		switch {
		case err != nil:
			s.m.drop(reasonCommitFailed)
		case res.OK:
			s.send(r)
			s.event(host.EventDHCPAck, mac, d, a, nil)
		default:
			s.table.conflict(pools, a, mac, res.Holder)
			s.m.drop(reasonConflict)
			s.nak(req, in, mac, d)
		}
	}})
	if !queued {
		s.m.drop(reasonCommitQueue)
	}
}

// nak refuses a REQUEST.
func (s *server) nak(req *dhcpv4.DHCPv4, in packetInfo, mac string, d host.Decision) {
	resp := s.newReply(req, dhcpv4.MessageTypeNak, nil, 0)
	s.send(s.replyTo(req, in, resp, replyNak))
	s.event(host.EventDHCPNak, mac, d, 0, nil)
}

// release ends the client's lease; there is no answer.
func (s *server) release(req *dhcpv4.DHCPv4, mac string) {
	if sid := ip4FromIP(req.ServerIdentifier()); sid != 0 && sid != s.serverIP {
		s.m.drop(reasonOtherServer)
		return
	}
	a := ip4FromIP(req.ClientIPAddr)
	if lease, ok := s.table.release(s.table.pools, mac, a); ok {
		s.commits.Add(leasecommit.Job{Lease: lease})
		s.event(host.EventDHCPRelease, mac, s.lastDecision(mac), a, nil)
	}
}

// decline quarantines an address the client found in use.
func (s *server) decline(req *dhcpv4.DHCPv4, mac string) {
	if sid := ip4FromIP(req.ServerIdentifier()); sid != 0 && sid != s.serverIP {
		s.m.drop(reasonOtherServer)
		return
	}
	a := ip4FromIP(req.RequestedIPAddress())
	if lease, ok := s.table.decline(s.table.pools, mac, a); ok {
		s.commits.Add(leasecommit.Job{Lease: lease})
		s.event(host.EventDHCPDecline, mac, s.lastDecision(mac), a, nil)
	}
}

// inform answers a client that has an address and wants the options.
func (s *server) inform(ctx context.Context, req *dhcpv4.DHCPv4, in packetInfo, mac string, c client) {
	ci := ip4FromIP(req.ClientIPAddr)
	if ci == 0 {
		s.m.drop(reasonMalformed)
		return
	}
	p := poolOf(s.table.pools, ci)
	if p == nil {
		s.m.drop(reasonNoPool)
		return
	}
	d, ok := s.decideFor(ctx, mac, c)
	if !ok {
		return
	}
	resp := s.newReply(req, dhcpv4.MessageTypeAck, p, 0)
	for _, o := range []dhcpv4.OptionCode{dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue} {
		resp.Options.Del(o)
	}
	if d.Known && c.firmware() {
		pxeOptions(resp, c, s.set.bootFile(c, d), s.nextServer(d), false)
	}
	s.send(s.replyTo(req, in, resp, replyAck))
}

// proxy answers boot firmware beside the site's DHCP server: no address,
// only what to boot. DISCOVERs on port 67 get an OFFER; REQUESTs (and
// INFORMs) on the proxyDHCP port, or naming this server, get an ACK.
func (s *server) proxy(ctx context.Context, req *dhcpv4.DHCPv4, in packetInfo, mac string, c client, mt dhcpv4.MessageType) {
	var typ dhcpv4.MessageType
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
		if sid := ip4FromIP(req.ServerIdentifier()); !in.proxy && sid != s.serverIP {
			s.m.drop(reasonOtherServer)
			return
		}
		typ = dhcpv4.MessageTypeAck
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		return // the site's server's business
	default:
		s.m.drop(reasonUnsupported)
		return
	}
	if !c.firmware() {
		s.m.drop(reasonNotPXE)
		return
	}
	d, ok := s.decideFor(ctx, mac, c)
	if !ok {
		return
	}
	ev, answer, rt := host.EventDHCPDiscover, host.EventDHCPOffer, replyOffer
	if typ == dhcpv4.MessageTypeAck {
		ev, answer, rt = host.EventDHCPRequest, host.EventDHCPAck, replyAck
	}
	s.event(ev, mac, d, ip4FromIP(req.ClientIPAddr), &c)
	if !d.Known {
		s.m.drop(reasonUnknownClient)
		return
	}
	resp := s.newReply(req, typ, nil, 0)
	if !pxeOptions(resp, c, s.set.bootFile(c, d), s.nextServer(d), true) {
		s.m.drop(reasonNoBootFile)
		return
	}
	s.proxyAnswered(ctx, answer, mac, d)
	s.send(s.replyTo(req, in, resp, rt))
}

// bindTimeout bounds the report of a proxy answer before it leaves.
const bindTimeout = time.Second

// proxyAnswered tells the host of a proxy answer (typ, with AttrProxy)
// before it leaves: the host binds the machine's first script request
// after it. A host that does not answer in time gets it through the
// batcher; the answer leaves anyway (the boot may then be refused its
// script, not left without an answer).
func (s *server) proxyAnswered(ctx context.Context, typ, mac string, d host.Decision) {
	if !d.Known {
		return
	}
	e := host.Event{Type: typ, MAC: macString(mac), Client: d.Client, Time: time.Now(), Attrs: map[string]string{host.AttrProxy: "true"}}
	if s.bindings != nil {
		rctx, cancel := context.WithTimeout(ctx, bindTimeout)
		err := s.bindings.Report(rctx, []host.Event{e})
		cancel()
		if err == nil {
			return
		}
		if s.logOnce() {
			s.logger.Warn("proxy answer not reported before it left; sent in the next batch", "mac", macString(mac), "error", err)
		}
	}
	if s.events != nil {
		s.events.Emit(e)
	}
}

// decideFor returns the host's decision for the client; ok is false when
// the packet must go unanswered (counted).
func (s *server) decideFor(ctx context.Context, mac string, c client) (host.Decision, bool) {
	d, err := s.decide(ctx, mac, c)
	if err != nil {
		s.m.drop(reasonLookupFailed)
		if s.logOnce() {
			s.logger.Warn("boot decision failed; answering without it where the mode allows", "mac", macString(mac), "error", err)
		}
		// An OS's DHCP client in full mode still gets an address; boot
		// firmware and reservation mode need the decision.
		return host.Decision{}, s.set.Mode == modeFull && !c.firmware()
	}
	return d, true
}

// decide is who the client is: from the host's pushed table when it is
// live (known.go, sdk/host/clienttable), else asked of the host through the cache.
func (s *server) decide(ctx context.Context, mac string, c client) (host.Decision, error) {
	if s.clients == nil {
		return host.Decision{}, nil
	}
	if d, ok := s.fromTable(mac, c); ok {
		return d, nil
	}
	key := cacheKey(mac, c)
	if d, ok := s.cache.get(key, c.firmware(), time.Now()); ok {
		return d, nil
	}
	q := host.Query{MAC: macString(mac), UserClass: c.userClass, VendorClass: c.vendorClass, Peer: c.from}
	if c.arch != archUnknownOrNone {
		q.Arch = c.arch
	}
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	d, err := s.clients.Lookup(lctx, q)
	s.m.table.Lookups.Inc()
	if err != nil {
		return host.Decision{}, err
	}
	s.cache.put(key, mac, d, time.Now())
	s.table.reserve(mac, parseIP4(d.ReservedAddress))
	return d, nil
}

// lastDecision is mac's decision without asking the host (RELEASE and
// DECLINE events): the pushed table's, else the last one cached.
func (s *server) lastDecision(mac string) host.Decision {
	if s.known != nil {
		if d, _, live := s.known.Get(mac); live {
			return d
		}
	}
	return s.cache.known(mac)
}

// fromOf is the address a request came from: its relay's (giaddr), or its
// source address; "" when neither is set (a broadcast from 0.0.0.0).
func fromOf(req *dhcpv4.DHCPv4, in packetInfo) string {
	if gi := ip4FromIP(req.GatewayIPAddr); gi != 0 {
		return req.GatewayIPAddr.To4().String()
	}
	if a := in.src.Addr().Unmap(); a.IsValid() && !a.IsUnspecified() {
		return a.String()
	}
	return ""
}

// cacheKey keys a decision: by MAC for an OS's client, and by MAC and
// what the firmware said for boot firmware (the answer depends on it).
func cacheKey(mac string, c client) string {
	if !c.firmware() {
		return mac
	}
	return mac + "\x00" + c.vendorClass + "\x00" + c.userClass + "\x00" + strconv.Itoa(int(c.arch))
}

// reservedClient is the reservation-mode gate: only known clients with a
// reserved address are answered.
func (s *server) reservedClient(d host.Decision, reserved ip4) bool {
	switch {
	case !d.Known:
		s.m.drop(reasonUnknownClient)
		return false
	case reserved == 0:
		s.m.drop(reasonNoReservation)
		return false
	}
	return true
}

// poolsFor returns the pools of the request's network: the relay's
// (giaddr) or the receiving interface's.
func (s *server) poolsFor(req *dhcpv4.DHCPv4, in packetInfo) []*pool {
	if gi := ip4FromIP(req.GatewayIPAddr); gi != 0 {
		return s.table.poolsFor(gi)
	}
	if len(in.locals) == 0 {
		return s.table.poolsFor(s.serverIP)
	}
	if len(in.locals) == 1 {
		return s.table.poolsFor(in.locals[0])
	}
	var out []*pool
	for _, a := range in.locals {
		out = append(out, s.table.poolsFor(a)...)
	}
	return out
}

// nextServer is the TFTP server for d's boot file.
func (s *server) nextServer(d host.Decision) ip4 {
	if s.set.nextServer != 0 {
		return s.set.nextServer
	}
	if a := parseIP4(d.NextServer); a != 0 {
		return a
	}
	return s.serverIP
}

// newReply builds a reply of type mt to req; with a pool, the address a
// (0 for none) and the pool's options.
func (s *server) newReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, p *pool, a ip4) *dhcpv4.DHCPv4 {
	resp := &dhcpv4.DHCPv4{
		OpCode: dhcpv4.OpcodeBootReply, HWType: req.HWType, TransactionID: req.TransactionID,
		Flags: req.Flags, GatewayIPAddr: req.GatewayIPAddr, ClientHWAddr: req.ClientHWAddr,
		ClientIPAddr: zeroIP, YourIPAddr: zeroIP, ServerIPAddr: zeroIP,
		Options: make(dhcpv4.Options, 16),
	}
	if mt == dhcpv4.MessageTypeAck {
		resp.ClientIPAddr = req.ClientIPAddr
	}
	if a != 0 {
		resp.YourIPAddr = a.ip()
	}
	resp.Options[dhcpv4.OptionDHCPMessageType.Code()] = []byte{byte(mt)}
	resp.Options[dhcpv4.OptionServerIdentifier.Code()] = s.serverIP.ip()
	for _, o := range []dhcpv4.OptionCode{dhcpv4.OptionClientIdentifier, dhcpv4.OptionRelayAgentInformation} {
		if v := req.Options.Get(o); v != nil {
			resp.Options[o.Code()] = v
		}
	}
	if p != nil && mt != dhcpv4.MessageTypeNak {
		for code, v := range p.opts {
			resp.Options[code] = v
		}
	}
	return resp
}

var zeroIP = []byte{0, 0, 0, 0}

// poolOptions are the options every reply of pool p carries, built once.
func poolOptions(p poolSettings) dhcpv4.Options {
	o := dhcpv4.Options{}
	secs := func(d time.Duration) []byte {
		n := d / time.Second
		if n > 0xffffffff {
			n = 0xffffffff
		}
		return binary.BigEndian.AppendUint32(nil, uint32(n))
	}
	o[dhcpv4.OptionIPAddressLeaseTime.Code()] = secs(p.leaseTime)
	o[dhcpv4.OptionRenewTimeValue.Code()] = secs(p.leaseTime / 2)
	o[dhcpv4.OptionRebindingTimeValue.Code()] = secs(p.leaseTime * 7 / 8)
	o[dhcpv4.OptionSubnetMask.Code()] = p.mask.ip()
	if p.router != 0 {
		o[dhcpv4.OptionRouter.Code()] = p.router.ip()
	}
	list := func(as []ip4) []byte {
		var b []byte
		for _, a := range as {
			b = append(b, a.ip()...)
		}
		return b
	}
	if len(p.dns) > 0 {
		o[dhcpv4.OptionDomainNameServer.Code()] = list(p.dns)
	}
	if len(p.ntp) > 0 {
		o[dhcpv4.OptionNTPServers.Code()] = list(p.ntp)
	}
	if p.domain != "" {
		o[dhcpv4.OptionDomainName.Code()] = []byte(p.domain)
	}
	if p.mtu != 0 {
		o[dhcpv4.OptionInterfaceMTU.Code()] = binary.BigEndian.AppendUint16(nil, uint16(p.mtu))
	}
	return o
}

// replyTo addresses resp (RFC 2131 4.1): through the relay when there is
// one; to the client's address when it has one (not for a NAK); else a
// broadcast on the interface the request came in on, which reaches a
// client that has no address yet without an ARP entry for it. A request
// on the proxyDHCP port is answered where it came from.
func (s *server) replyTo(req *dhcpv4.DHCPv4, in packetInfo, resp *dhcpv4.DHCPv4, typ string) reply {
	r := reply{b: resp.ToBytes(), conn: in.conn, typ: typ, at: in.at}
	gi := ip4FromIP(req.GatewayIPAddr)
	ci := ip4FromIP(req.ClientIPAddr)
	switch {
	case in.proxy && in.src.IsValid():
		r.dst = in.src
	case gi != 0:
		r.dst = netip.AddrPortFrom(gi.addr(), uint16(s.set.Port))
	case ci != 0 && typ != replyNak:
		r.dst = netip.AddrPortFrom(ci.addr(), uint16(s.set.ClientPort))
	default:
		r.dst = netip.AddrPortFrom(limitedBroadcast, uint16(s.set.ClientPort))
		r.ifIndex = in.ifIndex
	}
	return r
}

// send sends r and counts it.
func (s *server) send(r reply) {
	if err := s.out(r); err != nil {
		s.m.drop(reasonSendFailed)
		if s.logOnce() {
			s.logger.Warn("reply not sent", "to", r.dst.String(), "error", err)
		}
		return
	}
	s.m.replied(r.typ, time.Since(r.at))
}

// event reports a boot event for a machine the host knows (the host has
// no use for others': they start no boot session).
func (s *server) event(typ, mac string, d host.Decision, a ip4, c *client) {
	if !d.Known || s.events == nil {
		return
	}
	e := host.Event{Type: typ, MAC: macString(mac), Client: d.Client, Time: time.Now()}
	if a != 0 {
		e.Address = a.String()
	}
	if c != nil {
		e.Attrs = classAttrs(*c)
	}
	s.events.Emit(e)
}

// classAttrs are the event attributes of what c's request said of itself;
// nil when it said nothing.
func classAttrs(c client) map[string]string {
	return bootclient.EventAttrs(c.vendorClass, c.userClass, c.arch)
}

// logOnce limits warnings on the packet path to one a second.
func (s *server) logOnce() bool { return s.limit.logAllowed(time.Now()) }

func parseIP4(str string) ip4 {
	if str == "" {
		return 0
	}
	a, err := netip.ParseAddr(str)
	if err != nil || !a.Is4() {
		return 0
	}
	return ip4From(a)
}
