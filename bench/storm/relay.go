//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// relay is the simulated machines' one DHCP socket: like a relay agent it
// sends from port 67 with giaddr = its own address, so a thousand MACs
// share one namespace and one address, and the server answers every one
// of them to giaddr:67. Replies are handed to the waiting machine by
// transaction id.
type relay struct {
	conn   *net.UDPConn
	server *net.UDPAddr
	giaddr net.IP

	mu      sync.Mutex
	waiters map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
}

// listenRelay binds giaddr:67 and starts reading replies; the server is
// server:67.
func listenRelay(giaddr, server net.IP) (*relay, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: giaddr, Port: dhcpv4.ServerPort})
	if err != nil {
		return nil, fmt.Errorf("relay socket %s:67: %w", giaddr, err)
	}
	// A storm answers a thousand OFFERs at once; the default buffer
	// would drop them before the reader gets to them.
	_ = conn.SetReadBuffer(8 << 20)
	r := &relay{conn: conn, server: &net.UDPAddr{IP: server, Port: dhcpv4.ServerPort}, giaddr: giaddr.To4(),
		waiters: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}}
	go r.read()
	return r, nil
}

func (r *relay) Close() error { return r.conn.Close() }

func (r *relay) read() {
	buf := make([]byte, 1500)
	for {
		n, _, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || p.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		r.mu.Lock()
		c := r.waiters[p.TransactionID]
		r.mu.Unlock()
		if c != nil {
			select {
			case c <- p:
			default: // a duplicate answer nobody waits for
			}
		}
	}
}

// exchange sends req and waits for a reply of one of the wanted types,
// retransmitting after each of timeouts (firmware doubles its wait).
// It returns the reply and how many retransmissions it took.
func (r *relay) exchange(ctx context.Context, req *dhcpv4.DHCPv4, timeouts []time.Duration, want ...dhcpv4.MessageType) (*dhcpv4.DHCPv4, int, error) {
	c := make(chan *dhcpv4.DHCPv4, 4)
	r.mu.Lock()
	r.waiters[req.TransactionID] = c
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiters, req.TransactionID)
		r.mu.Unlock()
	}()
	pkt := req.ToBytes()
	for try, wait := range timeouts {
		if _, err := r.conn.WriteToUDP(pkt, r.server); err != nil {
			return nil, try, fmt.Errorf("send %s: %w", req.MessageType(), err)
		}
		t := time.NewTimer(wait)
	recv:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, try, ctx.Err()
			case <-t.C:
				break recv
			case p := <-c:
				for _, w := range want {
					if p.MessageType() == w {
						t.Stop()
						return p, try, nil
					}
				}
			}
		}
	}
	return nil, len(timeouts) - 1, fmt.Errorf("no answer to %s after %d tries", req.MessageType(), len(timeouts))
}

// pxeOptions are what a BIOS PXE ROM sends: the client system
// architecture (93) 0, its vendor class, and the options it asks for.
func pxeOptions() []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionTFTPServerName,
			dhcpv4.OptionBootfileName, dhcpv4.OptionVendorSpecificInformation),
	}
}

// discover is a relayed DHCPDISCOVER of mac.
func discover(mac net.HardwareAddr, xid dhcpv4.TransactionID, giaddr net.IP) (*dhcpv4.DHCPv4, error) {
	mods := append([]dhcpv4.Modifier{
		dhcpv4.WithHwAddr(mac),
		dhcpv4.WithTransactionID(xid),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
		dhcpv4.WithRelay(giaddr),
	}, pxeOptions()...)
	return dhcpv4.New(mods...)
}

// request is the relayed DHCPREQUEST answering offer.
func request(offer *dhcpv4.DHCPv4, giaddr net.IP) (*dhcpv4.DHCPv4, error) {
	mods := append([]dhcpv4.Modifier{
		dhcpv4.WithHwAddr(offer.ClientHWAddr),
		dhcpv4.WithTransactionID(offer.TransactionID),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithRelay(giaddr),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offer.ServerIdentifier())),
	}, pxeOptions()...)
	return dhcpv4.New(mods...)
}

// backoff is a firmware's retransmission schedule: start, doubled each
// time up to max, tries in all.
func backoff(start, max time.Duration, tries int) []time.Duration {
	out := make([]time.Duration, tries)
	d := start
	for i := range out {
		out[i] = d
		if d *= 2; d > max {
			d = max
		}
	}
	return out
}
