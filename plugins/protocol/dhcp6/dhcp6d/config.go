package dhcp6d

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/dls-project/dls/plugins/protocol/bootclient"
	"github.com/dls-project/dls/sdk/config"
)

// Modes.
const (
	modeFull  = "full"
	modeProxy = "proxy"
	modeOff   = "off"
)

// Config is the plugin's config block.
type Config struct {
	Interface     string            `hcl:"interface,optional" doc:"network interface to serve on: the socket is bound to it and joins ff02::1:2 there; required unless mode is off"`
	Mode          string            `hcl:"mode,optional" doc:"full (addresses from the pools and boot answers), proxy (boot answers only, beside the site's DHCPv6 server: no addresses), off"`
	ServerIP      string            `hcl:"server_ip,optional" format:"ip" doc:"this server's IPv6 address, written in tftp:// boot URLs; default: the interface's first global or unique-local IPv6 address"`
	BootURL       string            `hcl:"boot_url,optional" doc:"scheme, host and port the boot script and HTTP boot URLs are given with (e.g. http://[fd00:99::1]:9184): the host's boot.url may name an IPv4 address an IPv6-only machine cannot reach; default: the host's"`
	Pools         []Pool            `hcl:"pool,block" doc:"address pools (IA_NA); may repeat"`
	LeaseTime     time.Duration     `hcl:"lease_time,optional" doc:"valid lifetime of the addresses of pools that set none"`
	PreferredTime time.Duration     `hcl:"preferred_time,optional" doc:"preferred lifetime of pools that set none; 0: lease_time"`
	DNS           []string          `hcl:"dns,optional" format:"ip" doc:"DNS servers (option 23) of pools that set none"`
	DomainSearch  []string          `hcl:"domain_search,optional" doc:"domain search list (option 24) of pools that set none"`
	BootFiles     map[string]string `hcl:"boot_files,optional" doc:"first-stage boot file by architecture (keys efi_ia32, efi_x64, efi_arm32, efi_arm64, bios, or an option 61 number); a client's own boot file wins"`
	HTTPBootURL   string            `hcl:"http_boot_url,optional" doc:"URL folder of the boot files for UEFI HTTP boot (vendor class HTTPClient); default: <boot url>/boot/files/"`
	Preference    int               `hcl:"preference,optional" doc:"preference option (7) in Advertise, 0 to 255: 255 makes clients take this server's answer without waiting for others; 0: not sent"`
	RapidCommit   bool              `hcl:"rapid_commit,optional" doc:"answer a Solicit that asks for rapid commit with a Reply at once (the lease stored first), skipping Advertise and Request"`
	OfferTime     time.Duration     `hcl:"offer_time,optional" doc:"how long an advertised address is kept for the client"`
	DeclineTime   time.Duration     `hcl:"decline_time,optional" doc:"how long an address a client declined (in use by someone else) is quarantined"`
	Workers       int               `hcl:"workers,optional" doc:"packets handled at once"`
	ReceiveBuffer int               `hcl:"receive_buffer,optional" doc:"socket receive buffer (bytes)"`
	CommitBatch   int               `hcl:"commit_batch,optional" doc:"most leases committed to the host in one transaction"`
	Port          int               `hcl:"port,optional" doc:"server port"`
	ClientPort    int               `hcl:"client_port,optional" doc:"client port"`
}

// Pool is a pool {} block: a range of addresses, or a prefix.
type Pool struct {
	Name          string        `hcl:"name,optional" doc:"pool name (the metric label pool, the leases' pool); default <start>-<end> or the prefix"`
	Start         string        `hcl:"start,optional" format:"ip" doc:"first address (with end; or set prefix)"`
	End           string        `hcl:"end,optional" format:"ip" doc:"last address"`
	Prefix        string        `hcl:"prefix,optional" doc:"a /64 or longer prefix whose addresses (but the first) the pool leases, instead of start and end"`
	LeaseTime     time.Duration `hcl:"lease_time,optional" doc:"valid lifetime; default: the config's lease_time"`
	PreferredTime time.Duration `hcl:"preferred_time,optional" doc:"preferred lifetime; default: the config's preferred_time"`
	DNS           []string      `hcl:"dns,optional" format:"ip" doc:"DNS servers (option 23)"`
	DomainSearch  []string      `hcl:"domain_search,optional" doc:"domain search list (option 24)"`
}

// defaultConfig is what NewConfig returns: the defaults of every attribute.
func defaultConfig() *Config {
	return &Config{
		Mode:          modeFull,
		LeaseTime:     time.Hour,
		RapidCommit:   true,
		OfferTime:     30 * time.Second,
		DeclineTime:   10 * time.Minute,
		Workers:       16,
		ReceiveBuffer: 8 << 20,
		CommitBatch:   1024,
		Port:          547,
		ClientPort:    546,
	}
}

// settings is a checked Config, in the forms the packet path uses.
type settings struct {
	Config
	serverIP   netip.Addr   // invalid: from the interface, at Start
	dnsDefault []netip.Addr // the config's dns, for answers outside a pool
	urlBase    string       // scheme://host[:port], no trailing slash; "" the host's
	pools      []poolSettings
	bootFiles  map[uint16]string // by option 61 architecture
}

// poolSettings is a checked pool block. Its addresses are start plus an
// offset below size; start and end share their upper 64 bits.
type poolSettings struct {
	name          string
	start         netip.Addr
	size          uint64 // addresses, at least 1
	leaseTime     time.Duration
	preferredTime time.Duration
	dns           []netip.Addr
	domainSearch  []string
}

// check validates c and returns it as settings. Errors name the attribute.
func check(c Config) (*settings, error) {
	var errs config.Errors
	s := &settings{Config: c}
	switch c.Mode {
	case modeFull, modeProxy, modeOff:
	default:
		errs.Add(config.Errorf("mode", "mode must be full, proxy or off, not %q", c.Mode))
	}
	if c.Interface == "" && c.Mode != modeOff {
		errs.Add(config.Errorf("interface", "set interface: DHCPv6 clients ask on a link's multicast group, which a socket joins per interface"))
	}
	if c.ServerIP != "" {
		a, err := unicast6("server_ip", c.ServerIP)
		errs.Add(err)
		s.serverIP = a
	}
	if c.BootURL != "" {
		u := strings.TrimRight(c.BootURL, "/")
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			errs.Add(config.Errorf("boot_url", "boot_url must be an http:// or https:// URL, not %q", c.BootURL))
		} else if strings.Contains(strings.SplitN(u, "://", 2)[1], "/") {
			errs.Add(config.Errorf("boot_url", "boot_url is scheme, host and port only (http://[fd00::1]:9184), not %q", c.BootURL))
		}
		s.urlBase = u
	}
	if c.Mode == modeFull && len(c.Pools) == 0 {
		errs.Add(config.Errorf("pool", "mode full needs at least one pool {} block"))
	}
	if c.LeaseTime <= 0 {
		errs.Add(config.Errorf("lease_time", "lease_time must be positive"))
	}
	if c.PreferredTime < 0 || c.PreferredTime > c.LeaseTime {
		errs.Add(config.Errorf("preferred_time", "preferred_time must be 0 (lease_time) to lease_time"))
	}
	if c.PreferredTime == 0 {
		s.PreferredTime = c.LeaseTime
	}
	dns, err := ip6List("dns", c.DNS)
	errs.Add(err)
	s.dnsDefault = dns
	errs.Add(checkDomains("domain_search", c.DomainSearch))
	for _, p := range []struct {
		path string
		v    time.Duration
	}{{"offer_time", c.OfferTime}, {"decline_time", c.DeclineTime}} {
		if p.v <= 0 {
			errs.Add(config.Errorf(p.path, "%s must be positive", p.path))
		}
	}
	if c.Preference < 0 || c.Preference > 255 {
		errs.Add(config.Errorf("preference", "preference must be 0 to 255"))
	}
	if c.Workers < 1 || c.Workers > 4096 {
		errs.Add(config.Errorf("workers", "workers must be 1 to 4096"))
	}
	if c.ReceiveBuffer < 0 {
		errs.Add(config.Errorf("receive_buffer", "receive_buffer must not be negative"))
	}
	if c.CommitBatch < 1 || c.CommitBatch > 65536 {
		errs.Add(config.Errorf("commit_batch", "commit_batch must be 1 to 65536"))
	}
	for _, p := range []struct {
		path string
		v    int
	}{{"port", c.Port}, {"client_port", c.ClientPort}} {
		if p.v < 1 || p.v > 65535 {
			errs.Add(config.Errorf(p.path, "%s must be 1 to 65535", p.path))
		}
	}
	s.bootFiles = map[uint16]string{}
	for k, v := range c.BootFiles {
		path := fmt.Sprintf("boot_files[%q]", k)
		archs, ok := bootclient.ArchesOf(k)
		if !ok {
			errs.Add(config.Errorf(path, "unknown architecture %q (want bios, efi_ia32, efi_x64, efi_arm32, efi_arm64 or an option 61 number)", k))
			continue
		}
		if v == "" || len(v) > 1024 || strings.ContainsAny(v, " \t\r\n") {
			errs.Add(config.Errorf(path, "a boot file is a name or URL of 1 to 1024 characters without spaces"))
			continue
		}
		for _, a := range archs {
			s.bootFiles[a] = v
		}
	}
	if c.HTTPBootURL != "" && !strings.Contains(c.HTTPBootURL, "://") {
		errs.Add(config.Errorf("http_boot_url", "http_boot_url must be a URL (http://...)"))
	}
	names := map[string]int{}
	for i, pc := range c.Pools {
		p, err := checkPool(i, pc, s.Config, dns)
		if err != nil {
			errs.Add(err)
			continue
		}
		if j, dup := names[p.name]; dup {
			errs.Add(config.Errorf(fmt.Sprintf("pool[%d].name", i), "pool name %q is already used by pool %d", p.name, j))
		}
		names[p.name] = i
		for j, q := range s.pools {
			if p.overlaps(q) {
				errs.Add(config.Errorf(fmt.Sprintf("pool[%d].start", i), "pool %s overlaps pool %d (%s)", p.name, j, q.name))
			}
		}
		s.pools = append(s.pools, p)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func checkPool(i int, pc Pool, c Config, dns []netip.Addr) (poolSettings, error) {
	var errs config.Errors
	path := func(attr string) string { return fmt.Sprintf("pool[%d].%s", i, attr) }
	p := poolSettings{name: pc.Name, leaseTime: pc.LeaseTime, preferredTime: pc.PreferredTime, dns: dns, domainSearch: c.DomainSearch}
	switch {
	case pc.Prefix != "" && (pc.Start != "" || pc.End != ""):
		errs.Add(config.Errorf(path("prefix"), "set prefix, or start and end, not both"))
	case pc.Prefix != "":
		pfx, err := netip.ParsePrefix(pc.Prefix)
		switch {
		case err != nil || !pfx.Addr().Is6() || pfx.Addr().Is4In6():
			errs.Add(config.Errorf(path("prefix"), "%q is not an IPv6 prefix (fd00:99::/64)", pc.Prefix))
		case pfx.Bits() < 64 || pfx.Bits() > 127:
			errs.Add(config.Errorf(path("prefix"), "prefix %s: a pool is a /64 to /127 (split a shorter prefix into /64s, one per link)", pfx))
		case !pfx.Addr().IsGlobalUnicast():
			errs.Add(config.Errorf(path("prefix"), "prefix %s is not global or unique-local unicast", pfx))
		default:
			pfx = pfx.Masked()
			p.start = pfx.Addr().Next()      // the first is the subnet-router anycast address
			p.size = 1<<(128-pfx.Bits()) - 1 // a /64: 2^64 - 1, no end in practice
			if p.name == "" {
				p.name = pfx.String()
			}
		}
	default:
		start, err1 := unicast6(path("start"), pc.Start)
		end, err2 := unicast6(path("end"), pc.End)
		errs.Add(err1)
		errs.Add(err2)
		if err1 == nil && err2 == nil {
			sh, sl := halves(start)
			eh, el := halves(end)
			switch {
			case sh != eh:
				errs.Add(config.Errorf(path("end"), "start %s and end %s must share their first 64 bits (one /64)", start, end))
			case el < sl:
				errs.Add(config.Errorf(path("end"), "end %s is before start %s", end, start))
			default:
				p.start, p.size = start, el-sl+1
				if p.size == 0 { // the whole /64: one short of 2^64, which a uint64 cannot count
					p.size--
				}
			}
		}
		if p.name == "" {
			p.name = pc.Start + "-" + pc.End
		}
	}
	if p.leaseTime == 0 {
		p.leaseTime = c.LeaseTime
	}
	if p.leaseTime < 0 {
		errs.Add(config.Errorf(path("lease_time"), "lease_time must be positive"))
	}
	if p.preferredTime == 0 {
		p.preferredTime = min(c.PreferredTime, p.leaseTime)
	}
	if p.preferredTime < 0 || p.preferredTime > p.leaseTime {
		errs.Add(config.Errorf(path("preferred_time"), "preferred_time must be 0 (the config's) to the pool's lease_time"))
	}
	if len(pc.DNS) > 0 {
		var err error
		p.dns, err = ip6List(path("dns"), pc.DNS)
		errs.Add(err)
	}
	if len(pc.DomainSearch) > 0 {
		errs.Add(checkDomains(path("domain_search"), pc.DomainSearch))
		p.domainSearch = pc.DomainSearch
	}
	return p, errs.Err()
}

// halves splits an IPv6 address into its upper and lower 64 bits.
func halves(a netip.Addr) (hi, lo uint64) {
	b := a.As16()
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	return hi, lo
}

// fromHalves is the address of upper and lower 64 bits.
func fromHalves(hi, lo uint64) netip.Addr {
	var b [16]byte
	for i := 7; i >= 0; i-- {
		b[i], b[8+i] = byte(hi), byte(lo)
		hi, lo = hi>>8, lo>>8
	}
	return netip.AddrFrom16(b)
}

// last is the pool's last offset.
func (p poolSettings) last() uint64 { return p.size - 1 }

// overlaps reports whether p and q share an address.
func (p poolSettings) overlaps(q poolSettings) bool {
	ph, pl := halves(p.start)
	qh, ql := halves(q.start)
	if ph != qh {
		return false
	}
	pe, qe := pl+p.last(), ql+q.last()
	return pl <= qe && ql <= pe
}

// offset is a's place in the pool; ok is false outside it.
func (p poolSettings) offset(a netip.Addr) (uint64, bool) {
	if !a.Is6() || a.Is4In6() {
		return 0, false
	}
	ah, al := halves(a)
	sh, sl := halves(p.start)
	if ah != sh || al < sl {
		return 0, false
	}
	off := al - sl
	return off, off <= p.last()
}

// addr is the address at offset off.
func (p poolSettings) addr(off uint64) netip.Addr {
	h, l := halves(p.start)
	return fromHalves(h, l+off)
}

// unicast6 parses a global or unique-local IPv6 address.
func unicast6(path, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
		return netip.Addr{}, config.Errorf(path, "%q is not an IPv6 address", s)
	}
	if !a.IsGlobalUnicast() {
		return netip.Addr{}, config.Errorf(path, "%s is not a global or unique-local unicast IPv6 address", a)
	}
	return a, nil
}

func ip6List(path string, list []string) ([]netip.Addr, error) {
	var errs config.Errors
	out := make([]netip.Addr, 0, len(list))
	for i, s := range list {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
			errs.Add(config.Errorf(fmt.Sprintf("%s[%d]", path, i), "%q is not an IPv6 address", s))
			continue
		}
		out = append(out, a)
	}
	return out, errs.Err()
}

func checkDomains(path string, list []string) error {
	var errs config.Errors
	for i, d := range list {
		if d == "" || len(d) > 253 || strings.ContainsAny(d, " \t/") {
			errs.Add(config.Errorf(fmt.Sprintf("%s[%d]", path, i), "%q is not a domain name", d))
		}
	}
	return errs.Err()
}
