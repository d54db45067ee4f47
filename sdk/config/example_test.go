package config_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/dls-project/dls/sdk/config"
)

// Pool is one address range; the block may repeat.
type Pool struct {
	Start     string        `hcl:"start" format:"ip" doc:"first address"`
	End       string        `hcl:"end" format:"ip" doc:"last address"`
	LeaseTime time.Duration `hcl:"lease_time,optional" doc:"lease time of this pool"`
}

// Config is what a DHCP-like plugin reads from its config {} block.
type Config struct {
	Interface string `hcl:"interface" doc:"network interface to serve on"`
	Mode      string `hcl:"mode,optional" doc:"full | proxy"`
	Pools     []Pool `hcl:"pool,block" doc:"address pools"`
}

// validate is the plugin's own check, with paths the host can place.
func (c *Config) validate() error {
	var errs config.Errors
	if c.Mode != "full" && c.Mode != "proxy" {
		errs.Add(config.Errorf("mode", "must be \"full\" or \"proxy\", not %q", c.Mode))
	}
	for i, p := range c.Pools {
		start, _ := netip.ParseAddr(p.Start) // the host checked format:"ip"
		end, _ := netip.ParseAddr(p.End)
		if end.Less(start) {
			errs.Add(config.Errorf(fmt.Sprintf("pool[%d].end", i), "%s is before start %s", end, start))
		}
	}
	return errs.Err()
}

func Example() {
	defaults := Config{Mode: "full"}
	schema, err := config.Schema(&defaults)
	if err != nil {
		fmt.Println(err) // a bad tag: a unit test of the plugin catches it
		return
	}
	fmt.Println(len(schema.Attributes), "attributes,", len(schema.Blocks), "block")

	// What the host sends in Configure for
	//   config {
	//     interface = "br0"
	//     pool { start = "10.0.0.20", end = "10.0.0.10" }
	//   }
	data := []byte(`{"interface":"br0","mode":"full","pool":[{"start":"10.0.0.20","end":"10.0.0.10","lease_time":null}]}`)
	cfg := defaults
	if err := config.Decode(data, &cfg); err != nil {
		fmt.Println(err)
		return
	}
	var errs config.Errors
	errs.Add(cfg.validate())
	for _, e := range errs {
		fmt.Printf("%s: %s\n", e.Path, e.Message)
	}
	// Output:
	// 2 attributes, 1 block
	// pool[0].end: 10.0.0.10 is before start 10.0.0.20
}
