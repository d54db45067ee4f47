package dhcpd

import (
	"fmt"
	"net/netip"
	"net/url"
	"time"

	"github.com/dls-project/dls/plugins/protocol/bootclient"
	"github.com/dls-project/dls/sdk/config"
)

// Modes.
const (
	modeFull        = "full"
	modeProxy       = "proxy"
	modeReservation = "reservation"
	modeOff         = "off"
)

// Config is the plugin's config block.
type Config struct {
	Interface     string            `hcl:"interface,optional" doc:"network interface to serve on (the sockets are bound to it); empty: every interface"`
	Mode          string            `hcl:"mode,optional" doc:"full (addresses from the pools and PXE answers), proxy (PXE answers only, beside the site's DHCP server; also port 4011), reservation (only known clients, with their reserved address), off"`
	ServerIP      string            `hcl:"server_ip,optional" format:"ip" doc:"this server's address (option 54); default: the interface's first IPv4 address"`
	NextServer    string            `hcl:"next_server,optional" format:"ip" doc:"TFTP server of the boot files (siaddr, option 66); default: the host's boot server, else server_ip"`
	Pools         []Pool            `hcl:"pool,block" doc:"address pools; may repeat"`
	LeaseTime     time.Duration     `hcl:"lease_time,optional" doc:"lease time of pools that set none"`
	DNS           []string          `hcl:"dns,optional" format:"ip" doc:"DNS servers (option 6) of pools that set none"`
	Domain        string            `hcl:"domain,optional" doc:"domain name (option 15) of pools that set none"`
	NTP           []string          `hcl:"ntp,optional" format:"ip" doc:"NTP servers (option 42) of pools that set none"`
	MTU           int               `hcl:"mtu,optional" doc:"interface MTU (option 26) of pools that set none; 0: not sent"`
	BootFiles     map[string]string `hcl:"boot_files,optional" doc:"first-stage boot file by architecture (keys bios, efi_ia32, efi_x64, efi_arm32, efi_arm64, or an option 93 number); a client's own boot file wins"`
	HTTPBootURL   string            `hcl:"http_boot_url,optional" doc:"URL folder of the boot files for UEFI HTTP boot (vendor class HTTPClient); default: <boot url>/boot/files/"`
	OfferTime     time.Duration     `hcl:"offer_time,optional" doc:"how long an offered address is kept for the client"`
	DeclineTime   time.Duration     `hcl:"decline_time,optional" doc:"how long an address a client declined (in use by someone else) is quarantined"`
	ProbeTimeout  time.Duration     `hcl:"probe_timeout,optional" doc:"ping a never-used address before offering it and wait this long for an echo; 0: no probe"`
	ClientCache   time.Duration     `hcl:"client_cache,optional" doc:"how long the host's answer for an OS's DHCP client (not boot firmware) is reused"`
	UnknownLeases int               `hcl:"unknown_leases,optional" doc:"most addresses of a pool that MACs the host does not know may hold at once, offered or leased, in pools that set none; 0: no limit (see the README: starvation)"`
	RateLimit     float64           `hcl:"rate_limit,optional" doc:"packets per second accepted from one MAC; 0: no limit"`
	RateBurst     int               `hcl:"rate_burst,optional" doc:"packets one MAC may send at once before rate_limit applies"`
	Workers       int               `hcl:"workers,optional" doc:"packets handled at once"`
	ReceiveBuffer int               `hcl:"receive_buffer,optional" doc:"socket receive buffer (bytes)"`
	CommitBatch   int               `hcl:"commit_batch,optional" doc:"most leases committed to the host in one transaction"`
	Port          int               `hcl:"port,optional" doc:"server port"`
	ClientPort    int               `hcl:"client_port,optional" doc:"client port"`
	ProxyPort     int               `hcl:"proxy_port,optional" doc:"proxyDHCP port (proxy mode)"`
}

// Pool is a pool {} block: a range of addresses of one subnet.
type Pool struct {
	Name      string        `hcl:"name,optional" doc:"pool name (the metric label pool); default <start>-<end>"`
	Start     string        `hcl:"start" format:"ip" doc:"first address"`
	End       string        `hcl:"end" format:"ip" doc:"last address"`
	Netmask   string        `hcl:"netmask,optional" format:"ip" doc:"subnet mask (option 1); default 255.255.255.0"`
	Router    string        `hcl:"router,optional" format:"ip" doc:"default gateway (option 3)"`
	LeaseTime time.Duration `hcl:"lease_time,optional" doc:"lease time; default: the config's lease_time"`
	DNS       []string      `hcl:"dns,optional" format:"ip" doc:"DNS servers (option 6)"`
	Domain    string        `hcl:"domain,optional" doc:"domain name (option 15)"`
	NTP       []string      `hcl:"ntp,optional" format:"ip" doc:"NTP servers (option 42)"`
	MTU       int           `hcl:"mtu,optional" doc:"interface MTU (option 26)"`

	UnknownLeases int `hcl:"unknown_leases,optional" doc:"most addresses of this pool that MACs the host does not know may hold at once, offered or leased; 0: the config's unknown_leases"`
}

// defaultConfig is what NewConfig returns: the defaults of every attribute.
func defaultConfig() *Config {
	return &Config{
		Mode:          modeFull,
		LeaseTime:     time.Hour,
		OfferTime:     30 * time.Second,
		DeclineTime:   10 * time.Minute,
		ClientCache:   5 * time.Minute,
		RateLimit:     10,
		RateBurst:     20,
		Workers:       16,
		ReceiveBuffer: 8 << 20,
		CommitBatch:   1024,
		Port:          67,
		ClientPort:    68,
		ProxyPort:     4011,
	}
}

// maxPoolSize bounds one pool: its addresses are kept in a table in memory.
const maxPoolSize = 1 << 20

// settings is a checked Config, in the forms the packet path uses.
type settings struct {
	Config
	serverIP   ip4 // zero: from the interface, at Start
	nextServer ip4
	pools      []poolSettings
	bootFiles  map[uint16]string // by option 93 architecture
}

// poolSettings is a checked pool block.
type poolSettings struct {
	name       string
	start, end ip4
	mask       ip4
	router     ip4
	leaseTime  time.Duration
	dns, ntp   []ip4
	domain     string
	mtu        int
	// unknownLeases caps the addresses held by MACs the host does not
	// know (0: no cap).
	unknownLeases int
}

// check validates c and returns it as settings. Errors name the attribute.
func check(c Config) (*settings, error) {
	var errs config.Errors
	s := &settings{Config: c}
	switch c.Mode {
	case modeFull, modeProxy, modeReservation, modeOff:
	default:
		errs.Add(config.Errorf("mode", "mode must be full, proxy, reservation or off, not %q", c.Mode))
	}
	var err error
	if s.serverIP, err = optionalIP4("server_ip", c.ServerIP); err != nil {
		errs.Add(err)
	}
	if s.nextServer, err = optionalIP4("next_server", c.NextServer); err != nil {
		errs.Add(err)
	}
	if c.ServerIP == "" && c.Interface == "" && c.Mode != modeOff {
		errs.Add(config.Errorf("server_ip", "set server_ip, or interface to take its address"))
	}
	if (c.Mode == modeFull || c.Mode == modeReservation) && len(c.Pools) == 0 {
		errs.Add(config.Errorf("pool", "mode %q needs at least one pool {} block (for reservations: their subnet)", c.Mode))
	}
	dns, err := ip4List("dns", c.DNS)
	errs.Add(err)
	ntp, err := ip4List("ntp", c.NTP)
	errs.Add(err)
	positive := []struct {
		path string
		v    time.Duration
	}{{"lease_time", c.LeaseTime}, {"offer_time", c.OfferTime}, {"decline_time", c.DeclineTime}}
	for _, p := range positive {
		if p.v <= 0 {
			errs.Add(config.Errorf(p.path, "%s must be positive", p.path))
		}
	}
	if c.ProbeTimeout < 0 || c.ProbeTimeout > 5*time.Second {
		errs.Add(config.Errorf("probe_timeout", "probe_timeout must be 0 (no probe) to 5s"))
	}
	if c.ClientCache < 0 {
		errs.Add(config.Errorf("client_cache", "client_cache must not be negative"))
	}
	if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		errs.Add(config.Errorf("mtu", "mtu must be 68 to 65535 (or 0: not sent)"))
	}
	if c.UnknownLeases < 0 {
		errs.Add(config.Errorf("unknown_leases", "unknown_leases must not be negative (0: no limit)"))
	}
	if c.RateLimit < 0 {
		errs.Add(config.Errorf("rate_limit", "rate_limit must not be negative"))
	}
	if c.RateLimit > 0 && c.RateBurst < 1 {
		errs.Add(config.Errorf("rate_burst", "rate_burst must be at least 1"))
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
	}{{"port", c.Port}, {"client_port", c.ClientPort}, {"proxy_port", c.ProxyPort}} {
		if p.v < 1 || p.v > 65535 {
			errs.Add(config.Errorf(p.path, "%s must be 1 to 65535", p.path))
		}
	}
	s.bootFiles = map[uint16]string{}
	for k, v := range c.BootFiles {
		archs, ok := bootclient.ArchesOf(k)
		if !ok {
			errs.Add(config.Errorf(fmt.Sprintf("boot_files[%q]", k), "unknown architecture %q (want bios, efi_ia32, efi_x64, efi_arm32, efi_arm64 or an option 93 number)", k))
			continue
		}
		if v == "" || len(v) > 255 {
			errs.Add(config.Errorf(fmt.Sprintf("boot_files[%q]", k), "a boot file name is 1 to 255 characters"))
			continue
		}
		for _, a := range archs {
			s.bootFiles[a] = v
		}
	}
	if c.HTTPBootURL != "" {
		// UEFI firmware fetches it as it stands: an absolute http(s) URL
		// with a host (an IPv6 literal in brackets).
		if u, err := url.Parse(c.HTTPBootURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs.Add(config.Errorf("http_boot_url", "http_boot_url must be an absolute http:// URL such as \"http://192.168.77.1:9184/boot/files/\", not %q", c.HTTPBootURL))
		}
	}

	names := map[string]int{}
	for i, pc := range c.Pools {
		p, err := checkPool(i, pc, c, dns, ntp)
		if err != nil {
			errs.Add(err)
			continue
		}
		if j, dup := names[p.name]; dup {
			errs.Add(config.Errorf(fmt.Sprintf("pool[%d].name", i), "pool name %q is already used by pool %d", p.name, j))
		}
		names[p.name] = i
		for j, q := range s.pools {
			if p.start <= q.end && q.start <= p.end {
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

func checkPool(i int, pc Pool, c Config, dns, ntp []ip4) (poolSettings, error) {
	var errs config.Errors
	path := func(attr string) string { return fmt.Sprintf("pool[%d].%s", i, attr) }
	p := poolSettings{name: pc.Name, domain: pc.Domain, mtu: pc.MTU, leaseTime: pc.LeaseTime, dns: dns, ntp: ntp}
	var err error
	if p.start, err = requiredIP4(path("start"), pc.Start); err != nil {
		errs.Add(err)
	}
	if p.end, err = requiredIP4(path("end"), pc.End); err != nil {
		errs.Add(err)
	}
	mask := pc.Netmask
	if mask == "" {
		mask = "255.255.255.0"
	}
	if p.mask, err = requiredIP4(path("netmask"), mask); err != nil {
		errs.Add(err)
	} else if inv := ^uint32(p.mask); p.mask == 0 || inv&(inv+1) != 0 {
		errs.Add(config.Errorf(path("netmask"), "netmask %s is not a contiguous mask", mask))
	}
	if p.router, err = optionalIP4(path("router"), pc.Router); err != nil {
		errs.Add(err)
	}
	if err := errs.Err(); err != nil {
		return p, err
	}
	if p.end < p.start {
		errs.Add(config.Errorf(path("end"), "end %s is before start %s", p.end, p.start))
	}
	if p.start&p.mask != p.end&p.mask {
		errs.Add(config.Errorf(path("end"), "start %s and end %s are not in one subnet of netmask %s", p.start, p.end, p.mask))
	}
	if size := uint64(p.end) - uint64(p.start) + 1; p.end >= p.start && size > maxPoolSize {
		errs.Add(config.Errorf(path("end"), "the pool holds %d addresses, at most %d: split it", size, maxPoolSize))
	}
	if p.router != 0 && p.router&p.mask != p.start&p.mask {
		errs.Add(config.Errorf(path("router"), "router %s is not in the pool's subnet %s/%s", p.router, p.start&p.mask, p.mask))
	}
	if p.name == "" {
		p.name = pc.Start + "-" + pc.End
	}
	if p.leaseTime == 0 {
		p.leaseTime = c.LeaseTime
	}
	if p.leaseTime < 0 {
		errs.Add(config.Errorf(path("lease_time"), "lease_time must be positive"))
	}
	if len(pc.DNS) > 0 {
		p.dns, err = ip4List(path("dns"), pc.DNS)
		errs.Add(err)
	}
	if len(pc.NTP) > 0 {
		p.ntp, err = ip4List(path("ntp"), pc.NTP)
		errs.Add(err)
	}
	if p.domain == "" {
		p.domain = c.Domain
	}
	if p.mtu == 0 {
		p.mtu = c.MTU
	}
	p.unknownLeases = pc.UnknownLeases
	if p.unknownLeases == 0 {
		p.unknownLeases = c.UnknownLeases
	}
	if pc.UnknownLeases < 0 {
		errs.Add(config.Errorf(path("unknown_leases"), "unknown_leases must not be negative (0: the config's)"))
	}
	if pc.MTU != 0 && (pc.MTU < 68 || pc.MTU > 65535) {
		errs.Add(config.Errorf(path("mtu"), "mtu must be 68 to 65535 (or 0: the config's)"))
	}
	return p, errs.Err()
}

func requiredIP4(path, s string) (ip4, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, config.Errorf(path, "%q is not an IPv4 address", s)
	}
	return ip4From(a), nil
}

func optionalIP4(path, s string) (ip4, error) {
	if s == "" {
		return 0, nil
	}
	return requiredIP4(path, s)
}

func ip4List(path string, list []string) ([]ip4, error) {
	var errs config.Errors
	out := make([]ip4, 0, len(list))
	for i, s := range list {
		a, err := requiredIP4(fmt.Sprintf("%s[%d]", path, i), s)
		errs.Add(err)
		out = append(out, a)
	}
	return out, errs.Err()
}
