package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	sdkconfig "github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
)

// The config of a DHCP plugin as its vendor declares it with the SDK.
type dhcpPool struct {
	Name      string        `hcl:"name,optional"`
	Start     string        `hcl:"start" format:"ip"`
	End       string        `hcl:"end" format:"ip"`
	LeaseTime time.Duration `hcl:"lease_time,optional"`
}

func (p *dhcpPool) SetDefaults() { p.LeaseTime = time.Hour }

type dhcpLimits struct {
	MaxLeases int `hcl:"max_leases,optional"`
}

type dhcpConfig struct {
	Interface string            `hcl:"interface"`
	Mode      string            `hcl:"mode,optional"`
	ServerIP  string            `hcl:"server_ip,optional" format:"ip"`
	Listen    string            `hcl:"listen,optional" format:"host_port"`
	Offset    int               `hcl:"offset,optional"`
	DNS       []string          `hcl:"dns,optional" format:"ip"`
	Labels    map[string]string `hcl:"labels,optional"`
	Timeouts  map[string]string `hcl:"timeouts,optional" format:"duration"`
	Pools     []dhcpPool        `hcl:"pool,block"`
	Limits    dhcpLimits        `hcl:"limits,block"`
}

func dhcpDefaults() dhcpConfig {
	return dhcpConfig{Mode: "full", Listen: "0.0.0.0:67", Limits: dhcpLimits{MaxLeases: 500}}
}

func dhcpSchema(t *testing.T) *dlsv1.Schema {
	t.Helper()
	d := dhcpDefaults()
	s, err := sdkconfig.Schema(&d)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stringsSchema declares optional string attributes.
func stringsSchema(names ...string) *dlsv1.Schema {
	s := &dlsv1.Schema{}
	for _, n := range names {
		s.Attributes = append(s.Attributes, &dlsv1.Attribute{Name: n, Type: []byte(`"string"`)})
	}
	return s
}

// TestConfigRoundTrip follows a plugin's config from dls.hcl through the
// host's decoding to the plugin's struct, as Configure carries it.
func TestConfigRoundTrip(t *testing.T) {
	cfg := mustLoad(t, "testdata/dhcp.hcl")
	data, err := cfg.Plugin("lan").DecodeConfig(dhcpSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	got := dhcpDefaults()
	if err := sdkconfig.Decode(data, &got); err != nil {
		t.Fatalf("plugin decode of %s: %v", data, err)
	}
	want := dhcpConfig{
		Interface: "br0",
		Mode:      "full",
		ServerIP:  "192.168.77.1",
		Listen:    "0.0.0.0:67",
		DNS:       []string{"192.168.77.1", "9.9.9.9"},
		Labels:    map[string]string{"rack": "a", "row.x": "b"},
		Pools: []dhcpPool{
			{Start: "192.168.77.100", End: "192.168.77.149", LeaseTime: time.Hour},
			{Name: "second", Start: "192.168.77.150", End: "192.168.77.199", LeaseTime: 2 * time.Hour},
		},
		Limits: dhcpLimits{MaxLeases: 500},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plugin got\n %+v\nwant\n %+v\nfrom %s", got, want, data)
	}
	// Into a zero struct too: the host sent every default.
	var zero dhcpConfig
	if err := sdkconfig.Decode(data, &zero); err != nil {
		t.Fatal(err)
	}
	want.Limits = dhcpLimits{} // an absent single block is null: the plugin keeps its value
	if !reflect.DeepEqual(zero, want) {
		t.Errorf("into a zero struct got\n %+v\nwant\n %+v", zero, want)
	}
}

func TestDecodeConfigJSON(t *testing.T) {
	cfg := mustLoad(t, writeConfig(t, `
storage "dir" "d" {
  config {
    interface = "eth0"
    offset    = -2
    limits {}
  }
}
`))
	data, err := cfg.Plugin("d").DecodeConfig(dhcpSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"dns":null,"interface":"eth0","labels":null,"limits":{"max_leases":500},"listen":"0.0.0.0:67","mode":"full","offset":-2,"pool":[],"server_ip":null,"timeouts":null}`
	if string(data) != want {
		t.Errorf("got  %s\nwant %s", data, want)
	}

	// A plugin without config attributes accepts an empty or missing block.
	for _, text := range []string{`storage "dir" "d" {}`, "storage \"dir\" \"d\" {\n  config {}\n}\n"} {
		cfg := mustLoad(t, writeConfig(t, text))
		for _, s := range []*dlsv1.Schema{nil, {}} {
			data, err := cfg.Plugin("d").DecodeConfig(s)
			if err != nil || string(data) != "{}" {
				t.Errorf("%s: got %s, %v", text, data, err)
			}
		}
	}
}

// TestDecodeConfigErrors checks that problems inside config {} are
// reported at their exact file:line:col.
func TestDecodeConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"unknown attributes and blocks", `protocol "dhcp" "lan" {
  config {
    interface = "br0"
    interfce  = "br1"
    pool {
      start = "10.0.0.1"
      end   = "10.0.0.2"
      routr = "10.0.0.254"
    }
    frob {}
  }
}
`, []string{
			`4:5: Unsupported argument; An argument named "interfce" is not expected here.`,
			`8:7: Unsupported argument; An argument named "routr" is not expected here.`,
			`10:5: Unsupported block type; Blocks of type "frob" are not expected here.`,
		}},
		{"formats", `protocol "dhcp" "lan" {
  config {
    interface = "br0"
    server_ip = "192.168.77.300"
    listen    = "0.0.0.0"
    dns       = ["1.1.1.1", "one", "2.2.2.2"]
    timeouts  = { offer = "5s", ack = "soon" }
    pool {
      start = "10.0.0.1"
      end   = "10.0.0.2"
    }
    pool {
      start      = "10.0.0.3"
      end        = "10.0.0.x"
      lease_time = "1 hour"
    }
  }
}
`, []string{
			`4:17: Invalid value for "server_ip"; "192.168.77.300" is not an IP address.`,
			`5:17: Invalid value for "listen"; "0.0.0.0" is not a host:port address such as "127.0.0.1:69".`,
			`6:29: Invalid value for "dns"; element 1: "one" is not an IP address.`,
			`7:39: Invalid value for "timeouts"; key "ack": "soon" is not a duration such as "90s" or "1h30m".`,
			`14:20: Invalid value for "end"; "10.0.0.x" is not an IP address.`,
			`15:20: Invalid value for "lease_time"; "1 hour" is not a duration such as "90s" or "1h30m".`,
		}},
		{"format of a list from an expression", `protocol "dhcp" "lan" {
  config {
    interface = "br0"
    dns       = split(",", "1.1.1.1,x")
  }
}
`, []string{
			`4:17: Call to unknown function; There is no function named "split".`,
		}},
		{"types", `protocol "dhcp" "lan" {
  config {
    interface = ["br0"]
    offset    = "abc"
    labels    = "x"
    pool = []
  }
}
`, []string{
			`3:17: Incorrect attribute value type; Inappropriate value for attribute "interface": string required, but have tuple.`,
			`4:17: Incorrect attribute value type; Inappropriate value for attribute "offset": a number is required.`,
			`5:17: Incorrect attribute value type; Inappropriate value for attribute "labels": map of string required, but have string.`,
			`6:5: Unsupported argument; An argument named "pool" is not expected here. Did you mean to define a block of type "pool"?`,
		}},
		{"missing required, config block present", `protocol "dhcp" "lan" {
  config {
    pool {
      end = "10.0.0.2"
    }
  }
}
`, []string{
			`2:10: Missing required argument; The argument "interface" is required, but no definition was found.`,
			`3:10: Missing required argument; The argument "start" is required, but no definition was found.`,
		}},
		{"missing required, no config block", `storage "dir" "d" {}

protocol "dhcp" "lan" {
}
`, []string{
			`3:1: Missing required argument; The argument "interface" is required, but no definition was found.`,
		}},
		{"duplicate single block", `protocol "dhcp" "lan" {
  config {
    interface = "br0"
    limits {}
    limits {}
  }
}
`, []string{
			`5:5: Duplicate limits block; Only one block of type "limits" is allowed. Previous definition was at ` + "%s" + `:4,5-11.`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text)
			cfg := mustLoad(t, path)
			_, err := cfg.Plugin("lan").DecodeConfig(dhcpSchema(t))
			if err == nil {
				t.Fatal("decoded, want errors")
			}
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				want[i] = path + ":" + strings.ReplaceAll(w, "%s", path)
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
				t.Errorf("got:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
			}
		})
	}
}

func TestDecodeConfigRequiredBlocks(t *testing.T) {
	schema := &dlsv1.Schema{Blocks: []*dlsv1.NestedBlock{
		{Name: "tls", Required: true, Block: stringsSchema("cert")},
		{Name: "pool", Nesting: dlsv1.NestedBlock_LIST, Required: true, Block: stringsSchema("start")},
	}}
	path := writeConfig(t, "protocol \"x\" \"lan\" {\n  config {\n  }\n}\n")
	_, err := mustLoad(t, path).Plugin("lan").DecodeConfig(schema)
	want := path + `:2:10: Insufficient pool blocks; At least 1 "pool" blocks are required.` + "\n" +
		path + `:2:10: Missing tls block; A block of type "tls" is required here.`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestDecodeConfigBadSchema(t *testing.T) {
	cfg := mustLoad(t, "testdata/dhcp.hcl")
	p := cfg.Plugin("lan")
	attr := func(a *dlsv1.Attribute) *dlsv1.Schema { return &dlsv1.Schema{Attributes: []*dlsv1.Attribute{a}} }
	for _, tc := range []struct {
		name   string
		schema *dlsv1.Schema
		want   string
	}{
		{"bad type", attr(&dlsv1.Attribute{Name: "a", Type: []byte(`"strung"`)}), `attribute "a": type "strung": invalid primitive type name "strung"`},
		{"bad name", attr(&dlsv1.Attribute{Name: "a b", Type: []byte(`"string"`)}), `attribute "a b": not a valid name`},
		{"unknown format", attr(&dlsv1.Attribute{Name: "a", Type: []byte(`"string"`), Format: "mac"}), `attribute "a": unknown format "mac"`},
		{"format on number", attr(&dlsv1.Attribute{Name: "a", Type: []byte(`"number"`), Format: "ip"}), `attribute "a": format "ip" needs a string or a collection of strings, not number`},
		{"bad default", attr(&dlsv1.Attribute{Name: "a", Type: []byte(`"number"`), DefaultJson: []byte(`"x"`)}), `attribute "a": default "x":`},
		{"default breaks format", attr(&dlsv1.Attribute{Name: "a", Type: []byte(`["list","string"]`), Format: "ip", DefaultJson: []byte(`["1.1.1.1","x"]`)}), `attribute "a": default: element 1: "x" is not an IP address`},
		{"duplicate", &dlsv1.Schema{
			Attributes: []*dlsv1.Attribute{{Name: "pool", Type: []byte(`"string"`)}},
			Blocks:     []*dlsv1.NestedBlock{{Name: "pool"}},
		}, `block "pool": name already declared`},
		{"nested", &dlsv1.Schema{Blocks: []*dlsv1.NestedBlock{{Name: "pool", Block: attr(&dlsv1.Attribute{Name: "x", Type: []byte(`1`)})}}}, `attribute "pool.x": type 1:`},
		{"nesting", &dlsv1.Schema{Blocks: []*dlsv1.NestedBlock{{Name: "pool", Nesting: 7}}}, `block "pool": unknown nesting 7`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.DecodeConfig(tc.schema)
			if err == nil || !strings.HasPrefix(err.Error(), "plugin lan: config schema: "+tc.want) {
				t.Errorf("got %v\nwant plugin lan: config schema: %s...", err, tc.want)
			}
		})
	}
}

func TestConfigRange(t *testing.T) {
	cfg := mustLoad(t, "testdata/dhcp.hcl")
	lan, bare := cfg.Plugin("lan"), cfg.Plugin("bare")
	for _, tc := range []struct {
		p         *PluginBlock
		path      string
		line, col int
	}{
		{lan, "", 4, 3},
		{lan, "interface", 5, 17},
		{lan, "pool[1].start", 15, 20},
		{lan, "pool.start", 10, 15}, // no index: the first block
		{lan, "pool[0].lease_time", 9, 5},
		{lan, "pool[1]", 13, 5},
		{lan, "pool[2].start", 4, 3},
		{lan, "dns[1]", 7, 34},
		{lan, "dns[5]", 7, 17},
		{lan, "dns", 7, 17},
		{lan, `labels["row.x"]`, 8, 41},
		{lan, `labels["rack"]`, 8, 26},
		{lan, `labels["nope"]`, 8, 17},
		{lan, "interface.x", 5, 17},
		{lan, "mode", 4, 3},
		{lan, "pool[", 4, 3},
		{lan, "pool[x].start", 4, 3},
		{lan, `pool["a"].start`, 4, 3},
		{lan, "pool..start", 4, 3},
		{lan, "pool[0]x", 4, 3},
		{bare, "", 22, 1},
		{bare, "interface", 22, 1},
	} {
		got := tc.p.ConfigRange(tc.path)
		if got.Filename != "testdata/dhcp.hcl" || got.Start.Line != tc.line || got.Start.Column != tc.col {
			t.Errorf("%s %q: got %s:%d:%d, want %d:%d", tc.p.Name, tc.path, got.Filename, got.Start.Line, got.Start.Column, tc.line, tc.col)
		}
	}
}

func TestConfigureError(t *testing.T) {
	cfg := mustLoad(t, "testdata/dhcp.hcl")
	lan := cfg.Plugin("lan")
	// What a plugin's validation returns, as the host's client gives it.
	diags := sdkconfig.Errors{
		sdkconfig.Errorf("pool[1].start", "192.168.77.150 overlaps pool[0]"),
		sdkconfig.Errorf("", "no pool covers server_ip"),
	}
	err := lan.ConfigureError(diags)
	want := "testdata/dhcp.hcl:4:3: plugin lan: no pool covers server_ip\n" +
		"testdata/dhcp.hcl:15:20: plugin lan: pool[1].start: 192.168.77.150 overlaps pool[0]"
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
	if err := lan.ConfigureError(nil); err != nil {
		t.Errorf("no diagnostics: %v", err)
	}
}

func TestConfigHash(t *testing.T) {
	const base = `
storage "dir" "disks" {
  config {
    root = "/srv"
  }
}
protocol "tftp" "boot" {
  %s
  config {
    %s
  }
}
`
	hashes := func(extra, body string) (string, string) {
		t.Helper()
		cfg := mustLoad(t, writeConfig(t, fmt.Sprintf(base, extra, body)))
		return cfg.Plugin("disks").ConfigHash(), cfg.Plugin("boot").ConfigHash()
	}
	d0, b0 := hashes("", `root = "tftp"`)
	if len(b0) != 64 || d0 == b0 {
		t.Fatalf("hashes %q %q", d0, b0)
	}
	if d, b := hashes("", `root = "tftp"`); d != d0 || b != b0 {
		t.Error("the same file hashes differently")
	}
	if d, b := hashes("", `root = "tftp2"`); d != d0 || b == b0 {
		t.Error("a config change: want only boot's hash to change")
	}
	if _, b := hashes(`source = "custom"`, `root = "tftp"`); b == b0 {
		t.Error("source change kept the hash")
	}
	if _, b := hashes(`sha256 = "`+strings.Repeat("a", 64)+`"`, `root = "tftp"`); b == b0 {
		t.Error("sha256 change kept the hash")
	}
	if _, b := hashes(`restart { max_failures = 9 }`, `root = "tftp"`); b != b0 {
		t.Error("restart change changed the hash")
	}
	// A plugin without config {} has a hash too.
	cfg := mustLoad(t, writeConfig(t, `storage "dir" "a" {}`+"\n"+`storage "dir" "b" {}`))
	if a, b := cfg.Plugin("a").ConfigHash(), cfg.Plugin("b").ConfigHash(); a != b || len(a) != 64 {
		t.Errorf("hashes without config: %q %q", a, b)
	}
}

// TestDecodeConfigConcurrent: the supervisor configures plugins in
// parallel, and reloads may decode while others run.
func TestDecodeConfigConcurrent(t *testing.T) {
	cfg := mustLoad(t, "testdata/dhcp.hcl")
	schema := dhcpSchema(t)
	want, err := cfg.Plugin("lan").DecodeConfig(schema)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			got, err := cfg.Plugin("lan").DecodeConfig(schema)
			if err == nil && string(got) != string(want) {
				err = fmt.Errorf("got %s, want %s", got, want)
			}
			_ = cfg.Plugin("lan").ConfigRange("pool[1].start")
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
