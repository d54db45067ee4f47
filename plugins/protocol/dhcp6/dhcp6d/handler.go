package dhcp6d

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/dls-project/dls/plugins/protocol/bootclient"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/host/clienttable"
	"github.com/dls-project/dls/sdk/host/leasecommit"
	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

// Packet limits: a message type and transaction id at least; what a UDP
// datagram of relayed relays may hold at most.
const (
	minPacket = 4
	maxPacket = 8192
	// maxRelays is RFC 8415's HOP_COUNT_LIMIT.
	maxRelays = 8
)

// reasonProxyMode: proxy mode leaves addresses to the site's server.
const reasonProxyMode = "proxy_mode"

// AttrFamily is the event attribute (host.Event.Attrs key) that tells a
// DHCPv6 answer from a DHCPv4 one: its value is "ipv6" (host.FamilyIPv6).
const AttrFamily = host.AttrFamily

// packetInfo is how a packet arrived.
type packetInfo struct {
	src     netip.AddrPort // with the zone of a link-local source
	ifIndex int            // interface it came in on; 0 unknown
	conn    *listener
	at      time.Time
}

// reply is an answer ready to leave.
type reply struct {
	b       []byte
	dst     netip.AddrPort
	ifIndex int // a link-local destination is reached through this interface
	conn    *listener
	typ     string // the request's type label
	kind    string // replyAdvertise or replyReply
	at      time.Time
}

// eventSink takes boot events without blocking (a host.Batcher).
type eventSink interface{ Emit(host.Event) }

// server answers DHCPv6 packets: one per running Start.
type server struct {
	set      *settings
	duid     dhcpv6.DUID // this server's identifier (option 2)
	serverIP netip.Addr  // in tftp:// URLs; invalid: none known
	table    *table
	clients  host.Clients // nil: every client is unknown
	events   eventSink    // nil: none reported
	bindings host.Events  // proxy answers are reported here before they leave
	known    *clienttable.Table
	commits  *leasecommit.Committer
	m        *v6Metrics
	out      func(reply) error
	logger   hclog.Logger

	logMu   sync.Mutex
	lastLog time.Time
}

// request is one client message and how it came.
type request struct {
	msg  *dhcpv6.Message
	path []*dhcpv6.RelayMessage // relays, outermost first
	in   packetInfo
	c    client
	typ  string // type label
}

// handle answers one packet. It never panics on any input (see the fuzz
// test) and counts every packet: replied, or dropped with a reason.
func (s *server) handle(ctx context.Context, b []byte, in packetInfo) {
	switch {
	case len(b) > maxPacket:
		s.m.drop(typeOther, reasonOversized)
		return
	case len(b) < minPacket:
		s.m.drop(typeOther, reasonTruncated)
		return
	}
	pkt, err := dhcpv6.FromBytes(b)
	if err != nil {
		s.m.drop(typeLabel(dhcpv6.MessageType(b[0])), reasonMalformed)
		return
	}
	var path []*dhcpv6.RelayMessage
	for pkt.IsRelay() {
		r, ok := pkt.(*dhcpv6.RelayMessage)
		if !ok || r.MessageType != dhcpv6.MessageTypeRelayForward {
			s.m.drop(typeOther, reasonUnsupported)
			return
		}
		if path = append(path, r); len(path) > maxRelays {
			s.m.drop(typeOther, reasonRelayDepth)
			return
		}
		if pkt = r.Options.RelayMessage(); pkt == nil {
			s.m.drop(typeOther, reasonMalformed)
			return
		}
	}
	msg, ok := pkt.(*dhcpv6.Message)
	if !ok {
		s.m.drop(typeOther, reasonMalformed)
		return
	}
	req := &request{msg: msg, path: path, in: in, typ: typeLabel(msg.MessageType)}
	if req.typ == typeOther {
		s.m.drop(typeOther, reasonUnsupported)
		return
	}
	req.c = clientOf(msg, path, in.src.Addr())
	if !s.checkIDs(req) {
		return
	}
	if req.c.mac == "" && msg.MessageType != dhcpv6.MessageTypeInformationRequest {
		s.m.drop(req.typ, reasonNoMAC)
		return
	}
	if s.set.Mode == modeProxy {
		s.proxy(ctx, req)
		return
	}
	switch msg.MessageType {
	case dhcpv6.MessageTypeSolicit:
		s.solicit(ctx, req)
	case dhcpv6.MessageTypeRequest:
		s.request(ctx, req)
	case dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind:
		s.renew(ctx, req)
	case dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		s.giveBack(req)
	case dhcpv6.MessageTypeConfirm:
		s.confirm(req)
	case dhcpv6.MessageTypeInformationRequest:
		s.inform(ctx, req)
	}
}

// checkIDs applies RFC 8415's identifier rules (section 16): every
// message but Information-request names its client; Request, Renew,
// Release and Decline name this server; Solicit, Rebind and Confirm name
// none.
func (s *server) checkIDs(req *request) bool {
	mt := req.msg.MessageType
	if len(req.c.duid) == 0 && mt != dhcpv6.MessageTypeInformationRequest {
		s.m.drop(req.typ, reasonMalformed)
		return false
	}
	sid := req.msg.Options.GetOne(dhcpv6.OptionServerID)
	switch mt {
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeRebind, dhcpv6.MessageTypeConfirm:
		if sid != nil {
			s.m.drop(req.typ, reasonNotForUs)
			return false
		}
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRelease, dhcpv6.MessageTypeDecline:
		if sid == nil {
			s.m.drop(req.typ, reasonMalformed)
			return false
		}
		fallthrough
	default:
		if sid != nil && string(sid.ToBytes()) != string(s.duid.ToBytes()) {
			s.m.drop(req.typ, reasonOtherServer)
			return false
		}
	}
	return true
}

// withIA returns the IA_NAs of a Solicit or Request and the host's
// decision on its client. A message without IA_NA gets, from boot
// firmware, a boot-only answer of type bootType, else it is dropped: ok
// is false either way (and when the decision refused it).
func (s *server) withIA(ctx context.Context, req *request, bootType dhcpv6.MessageType) ([]*dhcpv6.OptIANA, host.Decision, bool) {
	ias := req.msg.Options.IANA()
	if len(ias) == 0 {
		if req.c.firmware() {
			s.bootOnly(ctx, req, bootType)
		} else {
			s.m.drop(req.typ, reasonNoIA)
		}
		return nil, host.Decision{}, false
	}
	d, ok := s.decideFor(ctx, req)
	return ias, d, ok
}

// solicit answers a Solicit with an Advertise holding an address for the
// client and, for known boot firmware, what to boot; or, when the client
// asks for rapid commit, with a Reply once the lease is stored.
func (s *server) solicit(ctx context.Context, req *request) {
	ias, d, ok := s.withIA(ctx, req, dhcpv6.MessageTypeAdvertise)
	if !ok {
		return
	}
	s.event(host.EventDHCPDiscover, req.c.mac, d, netip.Addr{}, &req.c)
	_, a, err := s.table.offer(req.c.mac, hintOf(ias[0]))
	if err != nil {
		s.m.drop(req.typ, reasonExhausted)
		return
	}
	if s.set.RapidCommit && req.msg.GetOneOption(dhcpv6.OptionRapidCommit) != nil {
		s.commitAndReply(req, d, ias, a, true)
		return
	}
	resp := s.newReply(req, dhcpv6.MessageTypeAdvertise)
	p, _ := s.table.poolOf(a)
	s.addIAs(resp, ias, p, a, iana.StatusNoAddrsAvail)
	if s.set.Preference > 0 {
		resp.AddOption(dhcpv6.OptPreference(uint8(s.set.Preference)))
	}
	s.addStateless(resp, p)
	s.addBoot(resp, req.c, d)
	s.send(req, resp, replyAdvertise)
	s.event(host.EventDHCPOffer, req.c.mac, d, a, nil)
}

// request binds the address advertised to the client (or another, when
// it is gone) and replies once the lease is stored.
func (s *server) request(ctx context.Context, req *request) {
	ias, d, ok := s.withIA(ctx, req, dhcpv6.MessageTypeReply)
	if !ok {
		return
	}
	s.event(host.EventDHCPRequest, req.c.mac, d, hintOf(ias[0]), &req.c)
	_, a, err := s.table.offer(req.c.mac, hintOf(ias[0]))
	if err != nil {
		resp := s.newReply(req, dhcpv6.MessageTypeReply)
		s.addIAs(resp, ias, nil, netip.Addr{}, iana.StatusNoAddrsAvail)
		s.m.note(reasonExhausted)
		s.send(req, resp, replyReply)
		return
	}
	s.commitAndReply(req, d, ias, a, false)
}

// commitAndReply binds a to the client, stores the lease through the
// host (in a batch with others) and only then sends the Reply (with the
// rapid commit option when it answers a Solicit).
func (s *server) commitAndReply(req *request, d host.Decision, ias []*dhcpv6.OptIANA, a netip.Addr, rapid bool) {
	lease, p, why := s.table.bind(req.c.mac, a, req.c.hostname, false)
	if why != bindOK {
		resp := s.newReply(req, dhcpv6.MessageTypeReply)
		s.addIAs(resp, ias, nil, netip.Addr{}, iana.StatusNoAddrsAvail)
		s.m.note(reasonConflict)
		s.send(req, resp, replyReply)
		return
	}
	resp := s.newReply(req, dhcpv6.MessageTypeReply)
	if rapid {
		resp.AddOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionRapidCommit})
	}
	s.addIAs(resp, ias, p, a, iana.StatusNoAddrsAvail)
	s.addStateless(resp, p)
	s.addBoot(resp, req.c, d)
	s.commit(req, lease, func() {
		s.send(req, resp, replyReply)
		s.event(host.EventDHCPAck, req.c.mac, d, a, nil)
	}, func() {
		// Another DLS host holds it: the client solicits again.
		resp := s.newReply(req, dhcpv6.MessageTypeReply)
		s.addIAs(resp, ias, nil, netip.Addr{}, iana.StatusNoAddrsAvail)
		s.send(req, resp, replyReply)
	})
}

// commit queues lease; ok runs once it is stored, conflict when another
// host holds the address (recorded in the table first).
func (s *server) commit(req *request, lease host.Lease, ok, conflict func()) {
	queued := s.commits.Add(leasecommit.Job{Lease: lease, Done: func(res host.CommitResult, err error) {
		switch {
		case err != nil:
			s.m.drop(req.typ, reasonCommitFailed)
		case res.OK:
			ok()
		default:
			a, _ := netip.ParseAddr(lease.Address)
			s.table.conflict(a, req.c.mac, res.Holder)
			s.m.note(reasonConflict)
			conflict()
		}
	}})
	if !queued {
		s.m.drop(req.typ, reasonCommitQueue)
	}
}

// renew extends the client's lease of the address in its first IA_NA
// (Renew, Rebind). An address of no pool here gets lifetimes 0 (the client
// stops using it); Renew of an address the client does not hold gets
// NoBinding; Rebind of one that is free binds it anew (after a lost
// lease, or from another server of this link).
func (s *server) renew(ctx context.Context, req *request) {
	ias := req.msg.Options.IANA()
	if len(ias) == 0 {
		s.m.drop(req.typ, reasonNoIA)
		return
	}
	a := hintOf(ias[0])
	if !a.IsValid() {
		resp := s.newReply(req, dhcpv6.MessageTypeReply)
		s.addIAs(resp, ias, nil, netip.Addr{}, iana.StatusNoBinding)
		s.send(req, resp, replyReply)
		return
	}
	d, ok := s.decideFor(ctx, req)
	if !ok {
		return
	}
	rebind := req.msg.MessageType == dhcpv6.MessageTypeRebind
	lease, p, why := s.table.bind(req.c.mac, a, req.c.hostname, true)
	if why == bindNoRecord && rebind {
		lease, p, why = s.table.bind(req.c.mac, a, req.c.hostname, false)
	}
	resp := s.newReply(req, dhcpv6.MessageTypeReply)
	switch why {
	case bindOK:
		s.addIAs(resp, ias, p, a, iana.StatusNoBinding)
		s.addStateless(resp, p)
		s.commit(req, lease, func() {
			s.send(req, resp, replyReply)
			s.event(host.EventDHCPAck, req.c.mac, d, a, nil)
		}, func() {
			resp := s.newReply(req, dhcpv6.MessageTypeReply)
			s.addIAs(resp, ias, nil, netip.Addr{}, iana.StatusNoBinding)
			s.send(req, resp, replyReply)
		})
		return
	case bindNotOurs:
		// Not an address of this link: lifetimes 0 (RFC 8415 18.3.4).
		ia := &dhcpv6.OptIANA{IaId: ias[0].IaId}
		ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: a.AsSlice()})
		resp.AddOption(ia)
		s.addIAs(resp, ias[1:], nil, netip.Addr{}, iana.StatusNoBinding)
	default:
		s.addIAs(resp, ias, nil, netip.Addr{}, iana.StatusNoBinding)
	}
	s.send(req, resp, replyReply)
}

// giveBack ends (Release) or quarantines (Decline) the client's
// addresses named in its IA_NAs, and confirms with Success.
func (s *server) giveBack(req *request) {
	decline := req.msg.MessageType == dhcpv6.MessageTypeDecline
	for _, ia := range req.msg.Options.IANA() {
		for _, ao := range ia.Options.Addresses() {
			a, ok := netip.AddrFromSlice(ao.IPv6Addr)
			if !ok {
				continue
			}
			var lease host.Lease
			if decline {
				lease, ok = s.table.decline(req.c.mac, a)
			} else {
				lease, ok = s.table.release(req.c.mac, a)
			}
			if !ok {
				continue
			}
			s.commits.Add(leasecommit.Job{Lease: lease})
			typ := host.EventDHCPRelease
			if decline {
				typ = host.EventDHCPDecline
			}
			s.event(typ, req.c.mac, s.lastDecision(req.c.mac), a, nil)
		}
	}
	resp := s.newReply(req, dhcpv6.MessageTypeReply)
	resp.AddOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess})
	s.send(req, resp, replyReply)
}

// confirm tells a client that moved (or woke) whether its addresses are
// still of this link: Success, or NotOnLink. A Confirm without addresses
// gets no answer (RFC 8415 18.3.3).
func (s *server) confirm(req *request) {
	n, on := 0, true
	for _, ia := range req.msg.Options.IANA() {
		for _, ao := range ia.Options.Addresses() {
			n++
			a, ok := netip.AddrFromSlice(ao.IPv6Addr)
			if !ok || !s.table.onLink(a) {
				on = false
			}
		}
	}
	if n == 0 {
		s.m.drop(req.typ, reasonNoIA)
		return
	}
	resp := s.newReply(req, dhcpv6.MessageTypeReply)
	if on {
		resp.AddOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess})
	} else {
		resp.AddOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusNotOnLink, StatusMessage: "not an address of this link"})
	}
	s.send(req, resp, replyReply)
}

// inform answers an Information-request: the link's options, and what to
// boot for known firmware (iPXE asks this way on a stateless network).
func (s *server) inform(ctx context.Context, req *request) {
	var d host.Decision
	if req.c.mac != "" {
		var ok bool
		if d, ok = s.decideFor(ctx, req); !ok {
			return
		}
	}
	resp := s.newReply(req, dhcpv6.MessageTypeReply)
	var p *pool
	if len(s.table.pools) > 0 {
		p = s.table.pools[0]
	}
	s.addStateless(resp, p)
	s.addBoot(resp, req.c, d)
	s.send(req, resp, replyReply)
}

// bootOnly answers firmware that asks for no address (no IA_NA) with what
// to boot alone.
func (s *server) bootOnly(ctx context.Context, req *request, mt dhcpv6.MessageType) {
	d, ok := s.decideFor(ctx, req)
	if !ok {
		return
	}
	if !d.Known {
		s.m.drop(req.typ, reasonUnknown)
		return
	}
	resp := s.newReply(req, mt)
	if !bootOptions(resp, req.c, s.set.bootURL(req.c, d, s.serverIP)) {
		s.m.drop(req.typ, reasonNoBootFile)
		return
	}
	kind := replyReply
	if mt == dhcpv6.MessageTypeAdvertise {
		kind = replyAdvertise
	}
	s.send(req, resp, kind)
}

// proxy answers boot firmware beside the site's DHCPv6 server: no address,
// only what to boot. A Solicit gets an Advertise; a Request naming this
// server (UEFI asks the server of a boot-only Advertise so) and an
// Information-request get a Reply. The rest is the site server's.
func (s *server) proxy(ctx context.Context, req *request) {
	var mt dhcpv6.MessageType
	ev, answer, kind := host.EventDHCPDiscover, host.EventDHCPOffer, replyAdvertise
	switch req.msg.MessageType {
	case dhcpv6.MessageTypeSolicit:
		mt = dhcpv6.MessageTypeAdvertise
	case dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeInformationRequest:
		mt = dhcpv6.MessageTypeReply
		ev, answer, kind = host.EventDHCPRequest, host.EventDHCPAck, replyReply
	default:
		s.m.drop(req.typ, reasonProxyMode)
		return
	}
	if !req.c.firmware() {
		s.m.drop(req.typ, reasonNotPXE)
		return
	}
	if req.c.mac == "" {
		s.m.drop(req.typ, reasonNoMAC)
		return
	}
	d, ok := s.decideFor(ctx, req)
	if !ok {
		return
	}
	s.event(ev, req.c.mac, d, netip.Addr{}, &req.c)
	if !d.Known {
		s.m.drop(req.typ, reasonUnknown)
		return
	}
	resp := s.newReply(req, mt)
	if !bootOptions(resp, req.c, s.set.bootURL(req.c, d, s.serverIP)) {
		s.m.drop(req.typ, reasonNoBootFile)
		return
	}
	s.proxyAnswered(ctx, answer, req.c, d)
	s.send(req, resp, kind)
}

// bindTimeout bounds the report of a proxy answer before it leaves.
const bindTimeout = time.Second

// proxyAnswered tells the host of a proxy answer (with AttrProxy) before
// it leaves: the host binds the machine's first script request after it,
// as for protocol "dhcp". A host that does not answer in time gets it
// through the batcher; the answer leaves anyway.
func (s *server) proxyAnswered(ctx context.Context, typ string, c client, d host.Decision) {
	e := host.Event{Type: typ, MAC: macString(c.mac), Client: d.Client, Time: time.Now(),
		Attrs: map[string]string{host.AttrProxy: "true", AttrFamily: host.FamilyIPv6}}
	if s.bindings != nil {
		rctx, cancel := context.WithTimeout(ctx, bindTimeout)
		err := s.bindings.Report(rctx, []host.Event{e})
		cancel()
		if err == nil {
			return
		}
		if s.logOnce() {
			s.logger.Warn("proxy answer not reported before it left; sent in the next batch", "mac", macString(c.mac), "error", err)
		}
	}
	if s.events != nil {
		s.events.Emit(e)
	}
}

// decideFor returns the host's decision for the client; ok is false when
// the packet must go unanswered (counted).
func (s *server) decideFor(ctx context.Context, req *request) (host.Decision, bool) {
	d, err := s.decide(ctx, req.c)
	if err != nil {
		if s.logOnce() {
			s.logger.Warn("boot decision failed; answering without it where the mode allows", "mac", macString(req.c.mac), "error", err)
		}
		// An OS's DHCPv6 client in full mode still gets an address; boot
		// firmware and proxy mode need the decision.
		if s.set.Mode == modeFull && !req.c.firmware() {
			s.m.note(reasonLookupFailed)
			return host.Decision{}, true
		}
		s.m.drop(req.typ, reasonLookupFailed)
		return host.Decision{}, false
	}
	return d, true
}

// hintOf is the first address an IA_NA names (invalid: none).
func hintOf(ia *dhcpv6.OptIANA) netip.Addr {
	for _, ao := range ia.Options.Addresses() {
		if a, ok := netip.AddrFromSlice(ao.IPv6Addr); ok && a.Is6() && !a.Is4In6() {
			return a
		}
	}
	return netip.Addr{}
}

// newReply builds a reply of type mt to req: transaction id, this
// server's identifier, the client's echoed.
func (s *server) newReply(req *request, mt dhcpv6.MessageType) *dhcpv6.Message {
	resp := &dhcpv6.Message{MessageType: mt, TransactionID: req.msg.TransactionID}
	if len(req.c.duid) > 0 {
		resp.AddOption(&dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionClientID, OptionData: req.c.duid})
	}
	resp.AddOption(dhcpv6.OptServerID(s.duid))
	return resp
}

// addIAs answers the client's IA_NAs: the first gets a (when p is set),
// every other one the status other (this server gives one address per
// client).
func (s *server) addIAs(resp *dhcpv6.Message, ias []*dhcpv6.OptIANA, p *pool, a netip.Addr, other iana.StatusCode) {
	for i, ia := range ias {
		out := &dhcpv6.OptIANA{IaId: ia.IaId}
		if i == 0 && p != nil {
			out.T1, out.T2 = p.preferredTime/2, p.preferredTime*4/5
			out.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: a.AsSlice(), PreferredLifetime: p.preferredTime, ValidLifetime: p.leaseTime})
		} else {
			out.Options.Add(&dhcpv6.OptStatusCode{StatusCode: other, StatusMessage: statusText(other)})
		}
		resp.AddOption(out)
	}
}

func statusText(c iana.StatusCode) string {
	switch c {
	case iana.StatusNoAddrsAvail:
		return "no address for this client"
	case iana.StatusNoBinding:
		return "no lease of this address for this client"
	}
	return c.String()
}

// addStateless adds pool p's DNS servers and search list (or the
// config's, without a pool).
func (s *server) addStateless(resp *dhcpv6.Message, p *pool) {
	dns, search := s.set.dnsDefault, s.set.DomainSearch
	if p != nil {
		dns, search = p.dns, p.domainSearch
	}
	if len(dns) > 0 {
		ips := make([]net.IP, len(dns))
		for i, a := range dns {
			ips[i] = a.AsSlice()
		}
		resp.AddOption(dhcpv6.OptDNS(ips...))
	}
	if len(search) > 0 {
		resp.AddOption(dhcpv6.OptDomainSearchList(&rfc1035label.Labels{Labels: search}))
	}
}

// addBoot adds the boot answer for known firmware.
func (s *server) addBoot(resp *dhcpv6.Message, c client, d host.Decision) {
	if d.Known && c.firmware() {
		bootOptions(resp, c, s.set.bootURL(c, d, s.serverIP))
	}
}

// send addresses resp to the client (through its relays, when it came
// relayed) and sends it.
func (s *server) send(req *request, resp *dhcpv6.Message, kind string) {
	var out dhcpv6.DHCPv6 = resp
	if len(req.path) > 0 {
		relayed, err := dhcpv6.NewRelayReplFromRelayForw(req.path[0], resp)
		if err != nil {
			s.m.drop(req.typ, reasonMalformed)
			return
		}
		out = relayed
	}
	dst := req.in.src
	if dst.Port() == 0 {
		dst = netip.AddrPortFrom(dst.Addr(), uint16(s.set.ClientPort))
	}
	r := reply{b: out.ToBytes(), dst: dst, ifIndex: req.in.ifIndex, conn: req.in.conn, typ: req.typ, kind: kind, at: req.in.at}
	if err := s.out(r); err != nil {
		s.m.drop(req.typ, reasonSendFailed)
		if s.logOnce() {
			s.logger.Warn("reply not sent", "to", r.dst.String(), "error", err)
		}
		return
	}
	s.m.replied(req.typ, kind, time.Since(r.at))
}

// event reports a boot event for a machine the host knows (the host has
// no use for others': they start no boot session).
func (s *server) event(typ, mac string, d host.Decision, a netip.Addr, c *client) {
	if !d.Known || s.events == nil {
		return
	}
	e := host.Event{Type: typ, MAC: macString(mac), Client: d.Client, Time: time.Now(), Attrs: map[string]string{AttrFamily: host.FamilyIPv6}}
	if a.IsValid() {
		e.Address = a.String()
	}
	if c != nil {
		for k, v := range classAttrs(*c) {
			e.Attrs[k] = v
		}
	}
	s.events.Emit(e)
}

// classAttrs are the event attributes of what c's request said of itself;
// nil when it said nothing.
func classAttrs(c client) map[string]string {
	return bootclient.EventAttrs(c.vendorClass, c.userClass, c.arch)
}

// logOnce limits warnings on the packet path to one a second.
func (s *server) logOnce() bool {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	now := time.Now()
	if now.Sub(s.lastLog) < time.Second {
		return false
	}
	s.lastLog = now
	return true
}
