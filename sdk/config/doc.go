// Package config lets a plugin declare its configuration as a Go struct.
//
// A plugin's settings live in the config {} block of its plugin block in
// dls.hcl. The plugin describes them once, as a struct with hcl tags:
//
//	type Config struct {
//		Interface string        `hcl:"interface" doc:"network interface to serve on"`
//		ServerIP  string        `hcl:"server_ip,optional" format:"ip"`
//		LeaseTime time.Duration `hcl:"lease_time,optional" doc:"default lease time"`
//		Pools     []Pool        `hcl:"pool,block" doc:"address pools; may repeat"`
//	}
//
// The SDK sends Schema(&defaults) to the host. The host decodes the HCL body
// against that schema, so a typo or a wrong type is reported to the admin as
// file:line:col before the plugin sees anything, fills in defaults, and sends
// the result as JSON; the SDK turns it back into a struct with Decode.
//
// Checks that need more than one value (a pool's start after its end) are
// the plugin's own: it returns an *Error or Errors whose Path names the
// attribute ("pool[1].start"), and the host reports the error at that
// attribute's position in dls.hcl.
//
// A plugin whose Configure only keeps its config embeds Current[Config],
// which is NewConfig and Configure: defaults come from the type's
// SetDefaults, cross-field checks from its Validate (see Validator), and
// the plugin reads the config with Config(). A plugin with more to do in
// Configure writes it, taking its config with As.
//
// Field tags:
//
//	hcl:"name"             a required attribute
//	hcl:"name,optional"    an optional attribute
//	hcl:"name,block"       a nested block: a struct field is an optional single
//	                       block (required with required:"true"), a pointer to
//	                       a struct is an optional single block left nil when
//	                       absent, a slice of structs is a block that may repeat
//	hcl:"-"                ignored (as are fields without an hcl tag)
//	doc:"text"             shown to admins by `dls plugins`
//	format:"..."           "duration", "ip" or "host_port": the host checks the
//	                       value (each element, for lists and maps of strings)
//	required:"true"        on a block: the block must be present
//
// Defaults: the values already in the struct given to Schema and Decode;
// a block that may repeat gets them from its type's SetDefaults method
// (see Defaulter).
//
// Attribute types: string, bool, every int and uint type, float32, float64,
// time.Duration (written as a string such as "90s" or "1h30m"), slices of
// those (except time.Duration), and maps from string to those. Named types
// with these underlying kinds (type Mode string) work too.
package config
