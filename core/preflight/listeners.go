package preflight

import (
	"context"
	"fmt"
	"net"

	"github.com/hashicorp/hcl/v2"
)

// listener is one socket the host or a plugin will bind.
type listener struct {
	what    string // `http.listen "127.0.0.1:9180"`
	rng     hcl.Range
	network string // tcp | udp
	addr    string
	device  string
}

// listeners are every socket the config binds: the host's HTTP
// listeners, and those of the DHCP, TFTP and iSCSI plugins.
func (c *checker) listeners() []listener {
	at := func(typ, name string) hcl.Range {
		if r, ok := c.cfg.AttrRange(typ, nil, name); ok {
			return r
		}
		if r, ok := c.cfg.BlockRange(typ); ok {
			return r
		}
		return c.cfg.FileRange()
	}
	out := []listener{{what: fmt.Sprintf("http.listen %q", c.cfg.HTTP.Listen), rng: at("http", "listen"), network: "tcp", addr: c.cfg.HTTP.Listen}}
	if c.cfg.Boot.Listen != "" {
		out = append(out, listener{what: fmt.Sprintf("boot.listen %q", c.cfg.Boot.Listen), rng: at("boot", "listen"), network: "tcp", addr: c.cfg.Boot.Listen})
	}
	for _, d := range c.dhcp {
		if d.Interface != "" && c.iface(d.Interface) == nil {
			continue // reported: no such interface to bind to
		}
		ports := []struct {
			attr string
			port int
		}{{"port", d.Port}}
		if d.Mode == "proxy" {
			ports = append(ports, struct {
				attr string
				port int
			}{"proxy_port", d.ProxyPort})
		}
		for _, p := range ports {
			out = append(out, listener{
				what: fmt.Sprintf("%s %s %d", blockName(d.b), p.attr, p.port), rng: d.b.ConfigRange(p.attr),
				network: "udp", addr: fmt.Sprintf("0.0.0.0:%d", p.port), device: d.Interface,
			})
		}
	}
	for _, t := range c.tftp {
		out = append(out, listener{what: fmt.Sprintf("%s listen %q", blockName(t.b), t.Listen), rng: t.b.ConfigRange("listen"), network: "udp", addr: t.Listen})
	}
	for _, i := range c.iscsi {
		out = append(out, listener{what: fmt.Sprintf("%s listen %q", blockName(i.b), i.Listen), rng: i.b.ConfigRange("listen"), network: "tcp", addr: i.Listen})
	}
	return out
}

// checkListeners: each listener's address is this machine's, and its
// port is free.
func (c *checker) checkListeners(ctx context.Context) {
	for _, l := range c.listeners() {
		_, port, err := net.SplitHostPort(l.addr)
		if err != nil || port == "0" {
			continue // refused when the config loads; 0: any port
		}
		if ip, ok := hostIP(l.addr); ok && c.ifcs != nil && c.owner(ip) == nil {
			c.add(l.rng, "%s: %s is not an address of this machine (no interface has it), so nothing can listen there", l.what, ip)
			continue
		}
		err = c.sys.Bind(ctx, l.network, l.addr, l.device)
		switch {
		case err == nil:
		case inUse(err):
			flag := "-ltnp"
			if l.network == "udp" {
				flag = "-lunp"
			}
			c.add(l.rng, "%s: port %s/%s is in use by another program (ss %s 'sport = :%s' names it)", l.what, port, l.network, flag, port)
		case denied(err):
			c.note(l.rng, "%s: port %s/%s not checked: binding it needs root (or CAP_NET_BIND_SERVICE)", l.what, port, l.network)
		case notLocal(err):
			c.add(l.rng, "%s: the address is not this machine's: %v", l.what, err)
		default:
			c.add(l.rng, "%s: cannot bind port %s/%s: %v", l.what, port, l.network, err)
		}
	}
}
