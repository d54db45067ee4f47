package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

type mode string

type pool struct {
	Name      string        `hcl:"name,optional" doc:"metric label"`
	Start     string        `hcl:"start" format:"ip"`
	End       string        `hcl:"end" format:"ip"`
	LeaseTime time.Duration `hcl:"lease_time,optional"`
	DNS       []string      `hcl:"dns,optional" format:"ip"`
}

// SetDefaults gives every pool block a lease time.
func (p *pool) SetDefaults() { p.LeaseTime = time.Hour }

type tls struct {
	Cert string `hcl:"cert"`
	Key  string `hcl:"key,optional"`
}

type limits struct {
	MaxLeases uint16  `hcl:"max_leases,optional"`
	Ratio     float32 `hcl:"ratio,optional"`
}

type dhcpConfig struct {
	Interface string            `hcl:"interface" doc:"network interface to serve on"`
	Mode      mode              `hcl:"mode,optional"`
	ServerIP  string            `hcl:"server_ip,optional" format:"ip"`
	Listen    string            `hcl:"listen,optional" format:"host_port"`
	Authorit  bool              `hcl:"authoritative,optional"`
	Offset    int8              `hcl:"offset,optional"`
	Ports     []int             `hcl:"ports,optional"`
	Options   map[string]string `hcl:"options,optional"`
	Timeout   time.Duration     `hcl:"timeout,optional"`
	Pools     []pool            `hcl:"pool,block" doc:"address pools"`
	TLS       *tls              `hcl:"tls,block"`
	Limits    limits            `hcl:"limits,block" required:"true"`
	Ignored   string
	Skipped   string `hcl:"-"`
}

func defaults() dhcpConfig {
	return dhcpConfig{
		Mode:     "full",
		Listen:   "0.0.0.0:67",
		Authorit: true,
		Ports:    []int{67, 4011},
		Timeout:  90 * time.Second,
		Limits:   limits{MaxLeases: 1000, Ratio: 0.1},
	}
}

func TestSchema(t *testing.T) {
	cfg := defaults()
	s, err := Schema(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	type attr struct {
		typ, def, format, doc string
		required              bool
	}
	attrs := func(s *dlsv1.Schema) map[string]attr {
		out := map[string]attr{}
		for _, a := range s.Attributes {
			out[a.Name] = attr{string(a.Type), string(a.DefaultJson), a.Format, a.Doc, a.Required}
		}
		return out
	}
	want := map[string]attr{
		"interface":     {typ: `"string"`, required: true, doc: "network interface to serve on"},
		"mode":          {typ: `"string"`, def: `"full"`},
		"server_ip":     {typ: `"string"`, format: "ip"},
		"listen":        {typ: `"string"`, def: `"0.0.0.0:67"`, format: "host_port"},
		"authoritative": {typ: `"bool"`, def: `true`},
		"offset":        {typ: `"number"`},
		"ports":         {typ: `["list","number"]`, def: `[67,4011]`},
		"options":       {typ: `["map","string"]`},
		"timeout":       {typ: `"string"`, def: `"1m30s"`, format: "duration"},
	}
	if got := attrs(s); !reflect.DeepEqual(got, want) {
		t.Errorf("attributes:\n got %+v\nwant %+v", got, want)
	}
	if len(s.Blocks) != 3 {
		t.Fatalf("blocks: got %d, want 3", len(s.Blocks))
	}
	p, tl, l := s.Blocks[0], s.Blocks[1], s.Blocks[2]
	if p.Name != "pool" || p.Nesting != dlsv1.NestedBlock_LIST || p.Required || p.Doc != "address pools" {
		t.Errorf("pool block: %+v", p)
	}
	wantPool := map[string]attr{
		"name":       {typ: `"string"`, doc: "metric label"},
		"start":      {typ: `"string"`, format: "ip", required: true},
		"end":        {typ: `"string"`, format: "ip", required: true},
		"lease_time": {typ: `"string"`, def: `"1h0m0s"`, format: "duration"},
		"dns":        {typ: `["list","string"]`, format: "ip"},
	}
	if got := attrs(p.Block); !reflect.DeepEqual(got, wantPool) {
		t.Errorf("pool attributes:\n got %+v\nwant %+v", got, wantPool)
	}
	if tl.Name != "tls" || tl.Nesting != dlsv1.NestedBlock_SINGLE || tl.Required {
		t.Errorf("tls block: %+v", tl)
	}
	if l.Name != "limits" || l.Nesting != dlsv1.NestedBlock_SINGLE || !l.Required {
		t.Errorf("limits block: %+v", l)
	}
	wantLimits := map[string]attr{
		"max_leases": {typ: `"number"`, def: `1000`},
		"ratio":      {typ: `"number"`, def: `0.1`},
	}
	if got := attrs(l.Block); !reflect.DeepEqual(got, wantLimits) {
		t.Errorf("limits attributes:\n got %+v\nwant %+v", got, wantLimits)
	}

	// Every type and default must be readable by the host.
	var check func(s *dlsv1.Schema)
	check = func(s *dlsv1.Schema) {
		for _, a := range s.Attributes {
			ty, err := ctyjson.UnmarshalType(a.Type)
			if err != nil {
				t.Errorf("%s: type %s: %v", a.Name, a.Type, err)
				continue
			}
			if a.DefaultJson != nil {
				if _, err := ctyjson.Unmarshal(a.DefaultJson, ty); err != nil {
					t.Errorf("%s: default %s: %v", a.Name, a.DefaultJson, err)
				}
			}
		}
		for _, b := range s.Blocks {
			check(b.Block)
		}
	}
	check(s)
}

func TestSchemaNilPointer(t *testing.T) {
	s, err := Schema((*dhcpConfig)(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range s.Attributes {
		if a.DefaultJson != nil {
			t.Errorf("%s: default %s from a nil pointer", a.Name, a.DefaultJson)
		}
	}
}

func TestSchemaPointerBlockDefaults(t *testing.T) {
	cfg := struct {
		TLS *tls `hcl:"tls,block"`
	}{TLS: &tls{Key: "key.pem"}}
	s, err := Schema(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(s.Blocks[0].Block.Attributes[1].DefaultJson); got != `"key.pem"` {
		t.Errorf("tls.key default: got %s", got)
	}
}

type recursive struct {
	Child *recursive `hcl:"child,block"`
}

func TestSchemaErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"not a pointer", dhcpConfig{}, "want a pointer to a struct"},
		{"pointer to non-struct", new(string), "want a pointer to a struct"},
		{"nil", nil, "want a pointer to a struct"},
		{"unsupported type", &struct {
			C chan int `hcl:"c"`
		}{}, "field struct { C chan int \"hcl:\\\"c\\\"\" }.C: type chan int is not supported"},
		{"byte slice", &struct {
			Data []byte `hcl:"data,optional"`
		}{}, ".Data: type []uint8 is not supported; use string"},
		{"duration slice", &struct {
			D []time.Duration `hcl:"d,optional"`
		}{}, ".D: type []time.Duration is not supported"},
		{"struct without block", &struct {
			T tls `hcl:"t"`
		}{}, ".T: type config.tls is not an attribute type; a nested block needs hcl:\"name,block\""},
		{"bad option", &struct {
			A string `hcl:"a,optinal"`
		}{}, `.A: hcl tag "a,optinal": unknown option "optinal"`},
		{"bad name", &struct {
			A string `hcl:"1a"`
		}{}, `.A: hcl tag "1a": "1a" is not a valid HCL name`},
		{"empty name", &struct {
			A string `hcl:",optional"`
		}{}, `.A: hcl tag ",optional": "" is not a valid HCL name`},
		{"duplicate name", &struct {
			A string `hcl:"a"`
			B string `hcl:"a"`
		}{}, `.B: name "a" is already used by field`},
		{"unexported", &struct {
			a string `hcl:"a"`
		}{}, `.a: has an hcl tag but is not exported`},
		{"unknown format", &struct {
			A string `hcl:"a" format:"mac"`
		}{}, `.A: unknown format "mac"`},
		{"format on number", &struct {
			A int `hcl:"a" format:"ip"`
		}{}, `.A: format "ip" needs a string, []string or map[string]string field, not int`},
		{"format on duration", &struct {
			A time.Duration `hcl:"a" format:"ip"`
		}{}, `.A: format "ip" does not apply to time.Duration`},
		{"required on attribute", &struct {
			A string `hcl:"a,optional" required:"true"`
		}{}, `.A: required tag is for blocks`},
		{"block of strings", &struct {
			A []string `hcl:"a,block"`
		}{}, `.A: a block must be a struct, a pointer to a struct or a slice of structs, not []string`},
		{"recursive", &recursive{}, "block type config.recursive contains itself"},
		{"required with default", &struct {
			A string `hcl:"a"`
		}{A: "x"}, `attribute "a" is required but has the default x`},
		{"bad default format", &struct {
			A string `hcl:"a,optional" format:"ip"`
		}{A: "300.1.1.1"}, `.A: default value: "300.1.1.1" is not an IP address`},
		{"bad nested field", &struct {
			P []struct {
				X complex64 `hcl:"x"`
			} `hcl:"p,block"`
		}{}, ".X: type complex64 is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Schema(tc.v)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// hostDecode does what the host does with a schema and the values an admin
// wrote (already converted to the attribute types): it fills in defaults
// for absent attributes, turns absent repeated blocks into [] and absent
// single blocks into null, then encodes JSON.
func hostDecode(t *testing.T, s *dlsv1.Schema, written map[string]any) []byte {
	t.Helper()
	var fill func(s *dlsv1.Schema, obj map[string]any) map[string]any
	fill = func(s *dlsv1.Schema, obj map[string]any) map[string]any {
		out := map[string]any{}
		for _, a := range s.Attributes {
			v, ok := obj[a.Name]
			switch {
			case ok:
				out[a.Name] = v
			case a.DefaultJson != nil:
				out[a.Name] = json.RawMessage(a.DefaultJson)
			default:
				out[a.Name] = nil
			}
		}
		for _, b := range s.Blocks {
			v, ok := obj[b.Name]
			switch {
			case !ok && b.Nesting == dlsv1.NestedBlock_LIST:
				out[b.Name] = []any{}
			case !ok:
				out[b.Name] = nil
			case b.Nesting == dlsv1.NestedBlock_LIST:
				var list []any
				for _, item := range v.([]map[string]any) {
					list = append(list, fill(b.Block, item))
				}
				out[b.Name] = list
			default:
				out[b.Name] = fill(b.Block, v.(map[string]any))
			}
		}
		return out
	}
	data, err := json.Marshal(fill(s, written))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRoundTrip(t *testing.T) {
	cfg := defaults()
	s, err := Schema(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := hostDecode(t, s, map[string]any{
		"interface": "br0",
		"server_ip": "192.168.77.1",
		"options":   map[string]string{"domain": "lab"},
		"offset":    -3,
		"pool": []map[string]any{
			{"start": "10.0.0.10", "end": "10.0.0.20", "dns": []string{"10.0.0.1"}},
			{"start": "10.0.1.10", "end": "10.0.1.20", "name": "second", "lease_time": "2h"},
		},
		"tls":    map[string]any{"cert": "cert.pem"},
		"limits": map[string]any{"ratio": 0.5},
	})
	got := defaults()
	if err := Decode(data, &got); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	want := defaults()
	want.Interface = "br0"
	want.ServerIP = "192.168.77.1"
	want.Options = map[string]string{"domain": "lab"}
	want.Offset = -3
	want.Pools = []pool{
		{Start: "10.0.0.10", End: "10.0.0.20", LeaseTime: time.Hour, DNS: []string{"10.0.0.1"}},
		{Start: "10.0.1.10", End: "10.0.1.20", Name: "second", LeaseTime: 2 * time.Hour},
	}
	want.TLS = &tls{Cert: "cert.pem"}
	want.Limits.Ratio = 0.5
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}

	// Decoding into a zero struct gives the same result: the host sent
	// every default.
	var zero dhcpConfig
	if err := Decode(data, &zero); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(zero, want) {
		t.Errorf("into a zero struct:\n got %+v\nwant %+v", zero, want)
	}
}

func TestDecodeKeepsDefaults(t *testing.T) {
	got := defaults()
	got.TLS = &tls{Key: "key.pem"}
	if err := Decode([]byte(`{"interface":"eth0","mode":null,"tls":{"cert":"c.pem"}}`), &got); err != nil {
		t.Fatal(err)
	}
	want := defaults()
	want.Interface = "eth0"
	want.TLS = &tls{Cert: "c.pem", Key: "key.pem"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	for _, empty := range []string{"", "  ", "null", "{}"} {
		got := defaults()
		if err := Decode([]byte(empty), &got); err != nil {
			t.Errorf("%q: %v", empty, err)
		}
		if !reflect.DeepEqual(got, defaults()) {
			t.Errorf("%q changed the defaults: %+v", empty, got)
		}
	}
}

func TestDecodeBlockPointers(t *testing.T) {
	var got struct {
		Pools []*pool `hcl:"pool,block"`
	}
	if err := Decode([]byte(`{"pool":[{"start":"a","end":"b"}]}`), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Pools) != 1 || got.Pools[0].Start != "a" || got.Pools[0].End != "b" || got.Pools[0].LeaseTime != time.Hour {
		t.Errorf("got %+v", got.Pools)
	}
	if err := Decode([]byte(`{"pool":[]}`), &got); err != nil {
		t.Fatal(err)
	}
	if got.Pools != nil {
		t.Errorf("empty list: got %+v, want nil", got.Pools)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		json string
		want []string // "path: message" of each error
	}{
		{`{"interface": 3}`, []string{"interface: must be a string, not a number"}},
		{`{"mode": true}`, []string{"mode: must be a string, not a bool"}},
		{`{"authoritative": "yes"}`, []string{"authoritative: must be true or false, not a string"}},
		{`{"offset": 1.5}`, []string{"offset: 1.5 is not a whole number"}},
		{`{"offset": 200}`, []string{"offset: 200 is out of range for int8 (-128 to 127)"}},
		{`{"limits": {"max_leases": -1}}`, []string{"limits.max_leases: -1 is out of range for uint16 (0 to 65535)"}},
		{`{"limits": {"ratio": 1e300}}`, []string{"limits.ratio: 1e300 is out of range for float32"}},
		{`{"timeout": "soon"}`, []string{`timeout: "soon" is not a duration such as "90s" or "1h30m"`}},
		{`{"timeout": 5}`, []string{`timeout: must be a duration string such as "90s", not a number`}},
		{`{"ports": [1, "x"]}`, []string{"ports[1]: must be a number, not a string"}},
		{`{"ports": 1}`, []string{"ports: must be a list, not a number"}},
		{`{"options": {"a": 1}}`, []string{`options["a"]: must be a string, not a number`}},
		{`{"options": []}`, []string{`options: must be a map, not a list`}},
		{`{"pool": [{"start": "a", "end": "b", "lease_time": "forever"}, null]}`, []string{
			`pool[0].lease_time: "forever" is not a duration such as "90s" or "1h30m"`,
			"pool[1]: must be a block (a JSON object), not null",
		}},
		{`{"pool": {}}`, []string{"pool: must be a list of blocks (a JSON array), not an object"}},
		{`{"tls": "x"}`, []string{"tls: must be a block (a JSON object), not a string"}},
		{`{"interfac": "br0", "zz": 1, "tls": {"cert": "c", "pem": 1}}`, []string{
			`tls.pem: unexpected setting "pem": the plugin does not declare it`,
			`interfac: unexpected setting "interfac": the plugin does not declare it`,
			`zz: unexpected setting "zz": the plugin does not declare it`,
		}},
		{`{"Ignored": "x"}`, []string{`Ignored: unexpected setting "Ignored": the plugin does not declare it`}},
		{`[1]`, []string{"config must be a JSON object, not a list"}},
		{`{"a":`, []string{"config is not valid JSON: unexpected EOF"}},
		{`{} {}`, []string{"config is not valid JSON: data after the top-level object"}},
	} {
		t.Run(tc.json, func(t *testing.T) {
			cfg := defaults()
			err := Decode([]byte(tc.json), &cfg)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v (%T), want Errors", err, err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestDecodeProgrammingErrors(t *testing.T) {
	var cfg dhcpConfig
	for _, tc := range []struct {
		into any
		want string
	}{
		{cfg, "want a non-nil pointer to a struct, got config.dhcpConfig"},
		{(*dhcpConfig)(nil), "want a non-nil pointer to a struct"},
		{new(int), "want a non-nil pointer to a struct"},
		{&struct {
			P []struct {
				X uintptr `hcl:"x"`
			} `hcl:"p,block"`
		}{}, ".X: type uintptr is not supported"},
	} {
		err := Decode([]byte(`{}`), tc.into)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%T: got %v, want an error containing %q", tc.into, err, tc.want)
		}
		var errs Errors
		if errors.As(err, &errs) {
			t.Errorf("%T: a programming error came back as Errors", tc.into)
		}
	}
}

// TestNumbersFromCty checks the number forms cty's JSON encoder writes.
func TestNumbersFromCty(t *testing.T) {
	v := cty.ObjectVal(map[string]cty.Value{
		"ports":  cty.ListVal([]cty.Value{cty.NumberIntVal(67), cty.NumberIntVal(1 << 40)}),
		"offset": cty.NumberIntVal(-128),
	})
	data, err := ctyjson.SimpleJSONValue{Value: v}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Ports  []int64 `hcl:"ports"`
		Offset int8    `hcl:"offset"`
	}
	if err := Decode(data, &got); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	if got.Offset != -128 || !reflect.DeepEqual(got.Ports, []int64{67, 1 << 40}) {
		t.Errorf("got %+v", got)
	}
}

func TestErrors(t *testing.T) {
	var errs Errors
	if errs.Err() != nil {
		t.Fatal("empty Errors.Err() is not nil")
	}
	errs.Add(nil)
	errs.Add((*Error)(nil))
	errs.Add(Errorf("pool[1].start", "%s is after end", "10.0.0.9"))
	errs.Add(fmt.Errorf("check pools: %w", Errors{Errorf("pool[0]", "overlaps pool[1]"), Errorf("mode", "bad")}))
	errs.Add(errors.Join(Errorf("a", "x"), errors.New("plain")))
	errs.Add(fmt.Errorf("wrapped: %w", Errorf("b", "y")))
	want := `pool[1].start: 10.0.0.9 is after end; pool[0]: overlaps pool[1]; mode: bad; a: x; plain; b: y`
	if err := errs.Err(); err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	var first *Error
	if !errors.As(errs.Err(), &first) || first.Path != "pool[1].start" {
		t.Errorf("errors.As found %+v", first)
	}
	if len(errs) != 6 || errs[4].Path != "" || errs[4].Message != "plain" || errs[0].Path != "pool[1].start" {
		t.Errorf("errors: %v", errs)
	}
	var none Errors
	none.Add(nil)
	if none != nil || none.Err() != nil {
		t.Error("Add(nil) added something")
	}
	if got := Errorf("", "whole block").Error(); got != "whole block" {
		t.Errorf("Error() without path: %q", got)
	}
}
