package config

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	sdkconfig "github.com/dls-project/dls/sdk/config"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// PluginBlock is one protocol, storage or auth block: a plugin instance.
type PluginBlock struct {
	// Kind is KindProtocol, KindStorage or KindAuth.
	Kind string
	// Type picks the binary (dls-<kind>-<type>), e.g. "dhcp".
	Type string
	// Name is the instance name, unique across kinds; the plugin metric label.
	Name string
	// Source is the binary's path as written (absolute, or relative to
	// plugin_dir); empty to use dls-<kind>-<type> in plugin_dir.
	Source string
	// SHA256 is the binary's expected checksum in lower-case hex, or empty.
	SHA256  string
	Restart RestartPolicy
	// DeclRange is the block's header: kind and labels.
	DeclRange hcl.Range
	// ConfigBody is the raw config {} body, nil when the block has none.
	// DecodeConfig decodes it against the plugin's schema.
	ConfigBody hcl.Body
	// HostServices is the host_services attribute of a protocol block: the
	// grant names (core/grants) replacing the type's default grant. Nil
	// when the block does not set it; see Grant.
	HostServices []string

	configRange hcl.Range // the config block's header
	configSrc   []byte    // the config body's source text
	ctx         *hcl.EvalContext
}

// DefaultRestartPolicy is the restart policy of a plugin block without a
// restart {} block, and the starting point of one with it.
func DefaultRestartPolicy() RestartPolicy {
	return RestartPolicy{
		InitialDelay: 200 * time.Millisecond,
		MaxDelay:     30 * time.Second,
		MaxFailures:  5,
		ResetAfter:   60 * time.Second,
	}
}

// binaryName is the file name of the plugin's binary in plugin_dir.
func (p *PluginBlock) binaryName() string {
	return "dls-" + p.Kind + "-" + p.Type
}

// BinaryPath returns the plugin binary to run: source when it is
// absolute, source under pluginDir when it is relative, and
// <pluginDir>/dls-<kind>-<type> without source.
func (p *PluginBlock) BinaryPath(pluginDir string) string {
	switch {
	case p.Source == "":
		return filepath.Join(pluginDir, p.binaryName())
	case filepath.IsAbs(p.Source):
		return filepath.Clean(p.Source)
	}
	return filepath.Join(pluginDir, p.Source)
}

// ConfigHash returns a hash of what the plugin is started with: its kind,
// type, source, sha256 and the source text of its config {} body. When a
// reload (SIGHUP) finds the same hash, the running plugin can be kept. Any
// edit inside config {} changes it, comments and spacing included; the
// restart policy does not.
func (p *PluginBlock) ConfigHash() string {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(p.Kind), []byte(p.Type), []byte(p.Source), []byte(p.SHA256), p.configSrc} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// configBody is the body DecodeConfig decodes: the config {} body, or an
// empty body at the plugin block's header, so that missing required
// attributes are reported there.
func (p *PluginBlock) configBody() hcl.Body {
	if p.ConfigBody != nil {
		return p.ConfigBody
	}
	return &hclsyntax.Body{SrcRange: p.DeclRange, EndRange: p.DeclRange}
}

// outerRange is where problems with the config as a whole are reported:
// the config block's header, or the plugin block's without one.
func (p *PluginBlock) outerRange() hcl.Range {
	if p.ConfigBody != nil {
		return p.configRange
	}
	return p.DeclRange
}

// ConfigRange maps the path of a value in the plugin's config, as the
// plugin names it in a diagnostic ("pool[1].start", "dns[0]",
// `labels["rack"]`), to its range in the file: the value of the
// attribute (or of the list element or map entry), else the nearest block
// on the path that exists (a value left to its default is reported at its
// block), else the config block, else the plugin block. An empty path is
// the config block.
func (p *PluginBlock) ConfigRange(path string) hcl.Range {
	best := p.outerRange()
	body, ok := p.ConfigBody.(*hclsyntax.Body)
	if !ok || path == "" {
		return best
	}
	steps, ok := parsePath(path)
	if !ok {
		return best
	}
	for _, st := range steps {
		if attr, ok := body.Attributes[st.name]; ok {
			return p.elementRange(attr.Expr, st.subs)
		}
		var blocks []*hclsyntax.Block
		for _, b := range body.Blocks {
			if b.Type == st.name {
				blocks = append(blocks, b)
			}
		}
		i := 0
		if len(st.subs) > 0 {
			if st.subs[0].key != nil {
				return best
			}
			i = st.subs[0].index
		}
		if i >= len(blocks) {
			return best
		}
		best = blocks[i].DefRange()
		body = blocks[i].Body
	}
	return best
}

// elementRange follows list indexes and map keys into a literal list or
// map expression, as far as the expression is written out.
func (p *PluginBlock) elementRange(expr hclsyntax.Expression, subs []pathSub) hcl.Range {
	for _, sub := range subs {
		next := elementExpr(expr, sub, p.ctx)
		if next == nil {
			break
		}
		expr = next
	}
	return expr.Range()
}

func elementExpr(expr hclsyntax.Expression, sub pathSub, ctx *hcl.EvalContext) hclsyntax.Expression {
	switch e := expr.(type) {
	case *hclsyntax.TupleConsExpr:
		if sub.key == nil && sub.index < len(e.Exprs) {
			return e.Exprs[sub.index]
		}
	case *hclsyntax.ObjectConsExpr:
		if sub.key == nil {
			return nil
		}
		for _, item := range e.Items {
			k, diags := item.KeyExpr.Value(ctx)
			if diags.HasErrors() || !k.IsKnown() || k.IsNull() || !k.Type().Equals(cty.String) {
				continue
			}
			if k.AsString() == *sub.key {
				return item.ValueExpr
			}
		}
	}
	return nil
}

// pathStep is one name of a config path with its [index] / ["key"] parts.
type pathStep struct {
	name string
	subs []pathSub
}

type pathSub struct {
	index int
	key   *string // set for ["key"]
}

// parsePath splits a path such as pool[1].start or labels["a.b"] into steps.
func parsePath(path string) ([]pathStep, bool) {
	var steps []pathStep
	rest := path
	for {
		end := strings.IndexAny(rest, ".[")
		if end < 0 {
			end = len(rest)
		}
		st := pathStep{name: rest[:end]}
		if st.name == "" {
			return nil, false
		}
		rest = rest[end:]
		for strings.HasPrefix(rest, "[") {
			rest = rest[1:]
			if strings.HasPrefix(rest, `"`) {
				quoted, err := strconv.QuotedPrefix(rest)
				if err != nil {
					return nil, false
				}
				key, err := strconv.Unquote(quoted)
				if err != nil {
					return nil, false
				}
				st.subs = append(st.subs, pathSub{key: &key})
				rest = rest[len(quoted):]
			} else {
				end := strings.IndexByte(rest, ']')
				if end < 0 {
					return nil, false
				}
				i, err := strconv.Atoi(rest[:end])
				if err != nil || i < 0 {
					return nil, false
				}
				st.subs = append(st.subs, pathSub{index: i})
				rest = rest[end:]
			}
			if !strings.HasPrefix(rest, "]") {
				return nil, false
			}
			rest = rest[1:]
		}
		steps = append(steps, st)
		if rest == "" {
			return steps, true
		}
		if rest[0] != '.' {
			return nil, false
		}
		rest = rest[1:]
	}
}

// ConfigureError turns the errors a plugin returned from Configure
// into one error of "file:line:col: plugin <name>: <path>: <message>"
// lines, each placed with ConfigRange. It returns nil when there are none.
func (p *PluginBlock) ConfigureError(diags sdkconfig.Errors) error {
	var out hcl.Diagnostics
	for _, d := range diags {
		if d == nil {
			continue
		}
		msg := d.Message
		if d.Path != "" {
			msg = d.Path + ": " + msg
		}
		out = append(out, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("plugin %s: %s", p.Name, msg),
			Subject:  p.ConfigRange(d.Path).Ptr(),
		})
	}
	return FormatDiagnostics(out)
}
