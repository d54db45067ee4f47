package dhcpd

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// maxProbes bounds the probes in flight; past it, addresses are offered
// unprobed rather than making clients wait.
const maxProbes = 256

// prober pings an address before it is offered for the first time: an
// answer means a machine uses it without a lease (a static address), and
// the address is quarantined instead. It needs a raw ICMP socket
// (CAP_NET_RAW).
type prober struct {
	conn    *icmp.PacketConn
	timeout time.Duration
	id      int
	seq     atomic.Uint32
	slots   chan struct{}

	mu      sync.Mutex
	waiting map[ip4]chan struct{}
}

func newProber(timeout time.Duration) (*prober, error) {
	conn, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return nil, err
	}
	p := &prober{
		conn: conn, timeout: timeout, id: os.Getpid() & 0xffff,
		slots: make(chan struct{}, maxProbes), waiting: map[ip4]chan struct{}{},
	}
	go p.read()
	return p, nil
}

// check pings a and calls then(inUse) once an echo came back (true) or
// the timeout passed (false). It does not wait.
func (p *prober) check(a ip4, then func(inUse bool)) {
	select {
	case p.slots <- struct{}{}:
	default:
		then(false)
		return
	}
	p.mu.Lock()
	if _, busy := p.waiting[a]; busy {
		p.mu.Unlock()
		<-p.slots
		then(false)
		return
	}
	echo := make(chan struct{})
	p.waiting[a] = echo
	p.mu.Unlock()
	go func() {
		defer func() {
			p.mu.Lock()
			if p.waiting[a] == echo {
				delete(p.waiting, a)
			}
			p.mu.Unlock()
			<-p.slots
		}()
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{
			ID: p.id, Seq: int(p.seq.Add(1) & 0xffff), Data: []byte("dls-dhcp-probe"),
		}}
		b, err := msg.Marshal(nil)
		if err == nil {
			_, err = p.conn.WriteTo(b, &net.IPAddr{IP: a.ip()})
		}
		if err != nil {
			then(false)
			return
		}
		t := time.NewTimer(p.timeout)
		defer t.Stop()
		select {
		case <-echo:
			then(true)
		case <-t.C:
			then(false)
		}
	}()
}

// read matches echo replies to the probes waiting for them.
func (p *prober) read() {
	buf := make([]byte, 1500)
	for {
		n, src, err := p.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		msg, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || msg.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		ipa, ok := src.(*net.IPAddr)
		if !ok {
			continue
		}
		a := ip4FromIP(ipa.IP)
		p.mu.Lock()
		if ch, ok := p.waiting[a]; ok {
			close(ch)
			delete(p.waiting, a)
		}
		p.mu.Unlock()
	}
}

func (p *prober) close() error { return p.conn.Close() }
