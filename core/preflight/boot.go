package preflight

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dls-project/dls/core/bootscript"
	"github.com/hashicorp/hcl/v2"
)

// bootURLRange is where findings about the boot URL go: boot.url, else
// what it was derived from.
func (c *checker) bootURLRange() hcl.Range {
	for _, a := range []struct{ typ, name string }{{"boot", "url"}, {"boot", "listen"}, {"http", "listen"}} {
		if r, ok := c.cfg.AttrRange(a.typ, nil, a.name); ok {
			return r
		}
	}
	if r, ok := c.cfg.BlockRange("boot"); ok {
		return r
	}
	return c.cfg.FileRange()
}

// checkBootURL: the boot URL machines get is absolute, and its host is an
// address of the boot interface (the first DHCP block's), or of this
// machine when no DHCP block names an interface. Nothing is fetched.
func (c *checker) checkBootURL(ctx context.Context) {
	rng := c.bootURLRange()
	if c.cfg.Boot.URL == "" {
		from := fmt.Sprintf("http.listen %q", c.cfg.HTTP.Listen)
		if c.cfg.Boot.Listen != "" {
			from = fmt.Sprintf("boot.listen %q", c.cfg.Boot.Listen)
		}
		c.add(rng, "boot URL is not absolute: %s names no address machines can reach, so they would be sent to a relative script URL; set boot { listen = \"<boot network address>:9184\" } or boot.url = \"http://<boot network address>:9184\"", from)
		return
	}
	u, err := url.Parse(c.cfg.Boot.URL)
	if err != nil || u.Hostname() == "" {
		return // refused when the config loads
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip.Unmap()}
	} else {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err = c.sys.LookupHost(lctx, host)
		cancel()
		if err != nil {
			c.add(rng, "boot URL %s: host %q does not resolve here: %v", c.cfg.Boot.URL, host, err)
			return
		}
	}
	if c.ifcs == nil {
		return // reported: no interfaces to look at
	}
	if ifc, d := c.bootInterface(); ifc != nil {
		for _, a := range addrs {
			if ifc.has(a) {
				return
			}
		}
		c.add(rng, "boot URL %s: %s is not an address of interface %q, where %s answers machines (it has %s), so they cannot reach it; use that interface's address", c.cfg.Boot.URL, host, ifc.Name, blockName(d.b), addrsOf(ifc))
		return
	}
	for _, a := range addrs {
		if c.owner(a) != nil {
			return
		}
	}
	c.add(rng, "boot URL %s: %s is not an address of this machine, so machines cannot reach DLS there", c.cfg.Boot.URL, host)
}

// iscsiURI matches the iSCSI targets in an iPXE script:
// iscsi:<server>:<protocol>:<port>:<lun>:<target>.
var iscsiURI = regexp.MustCompile(`iscsi:(\[[^\]]*\]|[^:\s]*):[^:\s]*:([^:\s]*):`)

// checkISCSI: the boot scripts send machines to the iSCSI listener: the
// port they name (the first iscsi block's, written into the built-in
// scripts; whatever a custom template writes) is each iSCSI listener's,
// and a listener on one address listens where the scripts point.
func (c *checker) checkISCSI() {
	if len(c.iscsi) == 0 {
		return
	}
	scriptPort := c.cfg.ISCSIPort()
	server := ""
	if u, err := url.Parse(c.cfg.Boot.URL); err == nil {
		server = u.Hostname()
	}
	listenPort := 0
	for i, blk := range c.iscsi {
		_, p, err := net.SplitHostPort(blk.Listen)
		if err != nil {
			continue
		}
		port, err := strconv.Atoi(p)
		if err != nil {
			continue
		}
		if i == 0 {
			listenPort = port
		}
		rng := blk.b.ConfigRange("listen")
		if port != scriptPort {
			c.add(rng, "%s listens on port %d, but boot scripts name iSCSI port %d (the first iscsi block's listen as written, else 3260): machines would not find their disk; give it port %d", blockName(blk.b), port, scriptPort, scriptPort)
		}
		ip, specific := hostIP(blk.Listen)
		if sip, err := netip.ParseAddr(server); specific && err == nil && sip.Unmap() != ip {
			c.add(rng, "%s listens on %s only, but boot scripts send machines to %s (boot.url's host): listen on %s:%d", blockName(blk.b), ip, server, server, port)
		}
	}
	if listenPort == 0 || server == "" {
		return
	}
	type tmpl struct {
		path string
		rng  hcl.Range
	}
	var tmpls []tmpl
	if c.cfg.Boot.Script != "" {
		r, _ := c.cfg.AttrRange("boot", nil, "script")
		tmpls = append(tmpls, tmpl{c.cfg.Boot.Script, r})
	}
	for _, cl := range c.cfg.Clients {
		if cl.Script != "" {
			r, ok := c.cfg.AttrRange("client", []string{cl.Name}, "script")
			if !ok {
				r = cl.DeclRange
			}
			tmpls = append(tmpls, tmpl{cl.Script, r})
		}
	}
	for _, t := range tmpls {
		tm, err := bootscript.Load(t.path)
		if err != nil {
			c.add(t.rng, "%v", err)
			continue
		}
		for _, d := range sampleClients(server, scriptPort) {
			out, err := bootscript.Render(d, tm)
			if err != nil {
				continue // Load tried it already
			}
			if msg := portMismatch(out, listenPort); msg != "" {
				c.add(t.rng, "boot script template %s %s, but the iSCSI listener (%s) is on port %d: write the target as {{.ISCSIURI}}", t.path, msg, blockName(c.iscsi[0].b), listenPort)
				break
			}
		}
	}
}

// portMismatch says which iSCSI port a rendered script names, when it is
// not port; "" when every target in it uses port.
func portMismatch(script string, port int) string {
	for _, m := range iscsiURI.FindAllStringSubmatch(script, -1) {
		p := m[2]
		if p == "" {
			p = strconv.Itoa(3260)
		}
		if p != strconv.Itoa(port) {
			if m[2] == "" {
				return fmt.Sprintf("names no iSCSI port (%q: iPXE then uses 3260)", strings.TrimSuffix(m[0], ":"))
			}
			return fmt.Sprintf("sends machines to iSCSI port %s", p)
		}
	}
	return ""
}

// sampleClients are a sanboot and a kernel client to render templates
// with, as a machine of this config would get them.
func sampleClients(server string, port int) []bootscript.ScriptData {
	d := bootscript.ScriptData{
		Client: "sample", MAC: "52:54:00:00:00:01", Image: "sample",
		InitiatorIQN: "iqn.2026-11.io.dls:initiator:sample", TargetIQN: "iqn.2026-11.io.dls:sample",
		Server: server, ISCSIPort: port, BootURL: "http://" + net.JoinHostPort(server, "9184"),
		CHAPUser: "iqn.2026-11.io.dls:initiator:sample", CHAPSecret: "sample-secret-0",
	}
	k := d
	k.Kernel, k.Initrd, k.Cmdline = "sample/vmlinuz", "sample/initrd.img", "root=/dev/sda rw"
	return []bootscript.ScriptData{d, k}
}
