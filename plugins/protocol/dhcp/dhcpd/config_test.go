package dhcpd

import (
	"strings"
	"testing"
	"time"

	sdkconfig "github.com/dls-project/dls/sdk/config"
)

func TestConfigSchemaIsValid(t *testing.T) {
	if _, err := sdkconfig.Schema(defaultConfig()); err != nil {
		t.Fatal(err)
	}
}

func TestConfigDefaultsAndPoolNames(t *testing.T) {
	c := baseConfig()
	c.Pools = append(c.Pools, Pool{Name: "lab", Start: "10.0.1.10", End: "10.0.1.20", LeaseTime: 2 * time.Hour, DNS: []string{"9.9.9.9"}})
	s, err := check(*c)
	if err != nil {
		t.Fatal(err)
	}
	if s.pools[0].name != "10.0.0.100-10.0.0.109" || s.pools[1].name != "lab" {
		t.Errorf("pool names %q %q", s.pools[0].name, s.pools[1].name)
	}
	if s.pools[0].leaseTime != time.Hour || s.pools[1].leaseTime != 2*time.Hour {
		t.Errorf("lease times %s %s", s.pools[0].leaseTime, s.pools[1].leaseTime)
	}
	if s.pools[0].unknownLeases != 0 {
		t.Errorf("unknown_leases default %d, want 0 (no limit)", s.pools[0].unknownLeases)
	}
	c.UnknownLeases = 40
	c.Pools[1].UnknownLeases = 3
	if s, err = check(*c); err != nil || s.pools[0].unknownLeases != 40 || s.pools[1].unknownLeases != 3 {
		t.Errorf("unknown_leases: the config's for pool 0, pool 1's own: %v %v", s, err)
	}
	if s.pools[1].mask.String() != "255.255.255.0" || s.pools[1].dns[0].String() != "9.9.9.9" || s.pools[0].dns[0].String() != "10.0.0.53" {
		t.Errorf("pool defaults: %+v", s.pools[1])
	}
}

func TestConfigErrorsNameTheAttribute(t *testing.T) {
	cases := []struct {
		mutate func(c *Config)
		path   string
	}{
		{func(c *Config) { c.Mode = "fast" }, "mode"},
		{func(c *Config) { c.ServerIP = ""; c.Interface = "" }, "server_ip"},
		{func(c *Config) { c.ServerIP = "::1" }, "server_ip"},
		{func(c *Config) { c.Pools = nil }, "pool"},
		{func(c *Config) { c.Pools[0].End = "10.0.0.50" }, "pool[0].end"},
		{func(c *Config) { c.Pools[0].End = "10.0.1.50" }, "pool[0].end"},
		{func(c *Config) { c.Pools[0].Netmask = "255.0.255.0" }, "pool[0].netmask"},
		{func(c *Config) { c.Pools[0].Router = "10.1.0.1" }, "pool[0].router"},
		{func(c *Config) { c.Pools = append(c.Pools, Pool{Start: "10.0.0.105", End: "10.0.0.120"}) }, "pool[1].start"},
		{func(c *Config) {
			c.Pools = append(c.Pools, Pool{Name: "10.0.0.100-10.0.0.109", Start: "10.0.2.1", End: "10.0.2.9"})
		}, "pool[1].name"},
		{func(c *Config) {
			c.Pools[0].Start, c.Pools[0].End, c.Pools[0].Netmask = "10.0.0.0", "10.31.255.255", "255.224.0.0"
		}, "pool[0].end"},
		{func(c *Config) { c.BootFiles = map[string]string{"sparc": "x"} }, `boot_files["sparc"]`},
		{func(c *Config) { c.MTU = 20 }, "mtu"},
		{func(c *Config) { c.LeaseTime = 0; c.Pools[0].LeaseTime = 0 }, "lease_time"},
		{func(c *Config) { c.Workers = 0 }, "workers"},
		{func(c *Config) { c.HTTPBootURL = "files" }, "http_boot_url"},
		{func(c *Config) { c.HTTPBootURL = "tftp://10.0.0.1/" }, "http_boot_url"},
		{func(c *Config) { c.HTTPBootURL = "http:///boot/files/" }, "http_boot_url"},
		{func(c *Config) { c.UnknownLeases = -1 }, "unknown_leases"},
		{func(c *Config) { c.Pools[0].UnknownLeases = -1 }, "pool[0].unknown_leases"},
	}
	for _, tc := range cases {
		c := baseConfig()
		tc.mutate(c)
		_, err := check(*c)
		var errs sdkconfig.Errors
		errs.Add(err)
		found := false
		for _, e := range errs {
			found = found || e.Path == tc.path
		}
		if !found {
			t.Errorf("want an error at %s, got %v", tc.path, err)
		}
	}
	c := baseConfig()
	c.BootFiles = map[string]string{"7": "snponly.efi", "bios": "undionly.kpxe"}
	s, err := check(*c)
	if err != nil || s.bootFiles[7] != "snponly.efi" || s.bootFiles[0] != "undionly.kpxe" {
		t.Errorf("boot_files: %v %v", s, err)
	}
	c.Mode = modeProxy
	c.Pools = nil
	if _, err := check(*c); err != nil && strings.Contains(err.Error(), "pool") {
		t.Errorf("proxy mode needs no pool: %v", err)
	}
}
