package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dls-project/dls/core/chapsecret"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
)

// Defaults of the host settings.
const (
	DefaultDataDir       = "./var"
	DefaultPluginDir     = "bin/plugins"
	DefaultListen        = "127.0.0.1:9180"
	DefaultScrapeTimeout = 2 * time.Second
	// DefaultSessionLifetime is http.session_lifetime's default: an admin
	// logs in once a working day.
	DefaultSessionLifetime = 24 * time.Hour
	DefaultIQNPrefix       = "iqn.2026-11.io.dls"
	DefaultBootFiles       = "boot"
	DefaultStageTimeout    = 5 * time.Minute
	// DefaultSessionHistory is boot.session_history's default: a season
	// of boots to look back on, not every boot since the host started.
	DefaultSessionHistory = 90 * 24 * time.Hour
	// DefaultMaxRegistered is boot.max_registered's default: a large lab
	// registers on its first storm, a flood stops there.
	DefaultMaxRegistered = 4096
	// DefaultMaxDiscovered is boot.max_discovered's default, for the same
	// reason.
	DefaultMaxDiscovered = 4096
	DefaultSQLiteFile    = "dls.db"
)

// Name syntaxes: the first character is a lower-case letter or a digit,
// the others may also be one of these.
const (
	// pluginNameChars: plugin types and instance names.
	pluginNameChars = "_-"
	// imageNameChars: image names, with dots for versions ("ubuntu-24.04").
	imageNameChars = "_.-"
	// clientNameChars: what an iSCSI qualified name allows, since client
	// names end target and initiator IQNs.
	clientNameChars = ".-"
)

// validName reports whether name is a lower-case letter or digit followed
// by lower-case letters, digits and characters from extra.
func validName(name, extra string) bool {
	for i, c := range name {
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && strings.ContainsRune(extra, c)) {
			continue
		}
		return false
	}
	return name != ""
}

// validIQNPrefix checks the shape iqn.yyyy-mm.reversed.domain[:more] in
// lower case.
func validIQNPrefix(s string) bool {
	rest, ok := strings.CutPrefix(s, "iqn.")
	if !ok || len(rest) < 9 || rest[4] != '-' || rest[7] != '.' {
		return false
	}
	for _, i := range []int{0, 1, 2, 3, 5, 6} {
		if rest[i] < '0' || rest[i] > '9' {
			return false
		}
	}
	authority, more, _ := strings.Cut(rest[8:], ":")
	return validName(authority, ".-") && (more == "" || validName(more, ".-:"))
}

func validSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}

// Load reads the config file at path and checks it. Relative paths in it
// (data_dir, plugin_dir, boot.files, the SQLite path) are resolved against
// the folder of the config file; a plugin's source is kept as written and
// resolved by PluginBlock.BinaryPath. Expressions may call env("NAME") or
// env("NAME", "fallback").
//
// When the file has problems, the error lists all of them, one
// "file:line:col: message" per line, where file is path as given.
func Load(path string) (*Config, error) {
	return load(path, os.LookupEnv)
}

func load(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	return parse(src, path, filepath.Dir(abs), lookupEnv)
}

// parse decodes the config text src; filename names it in diagnostics and
// dir is the absolute folder relative paths are resolved against.
func parse(src []byte, filename, dir string, lookupEnv func(string) (string, bool)) (*Config, error) {
	l := &loader{
		file:    filename,
		dir:     dir,
		src:     src,
		ctx:     evalContext(lookupEnv),
		plugins: map[string]*PluginBlock{},
		images:  map[string]*Image{},
		clients: map[string]*Client{},
		macs:    map[string]*Client{},
		addrs:   map[string]*Client{},
	}
	cfg := l.load()
	if err := FormatDiagnostics(l.diags); err != nil {
		return nil, err
	}
	cfg.Warnings = FormatWarnings(l.diags)
	return cfg, nil
}

// loader decodes one config file, collecting every problem in diags.
type loader struct {
	file  string // as given to Load, for diagnostics
	dir   string // absolute folder of the file
	src   []byte
	ctx   *hcl.EvalContext
	diags hcl.Diagnostics

	plugins map[string]*PluginBlock // by instance name
	images  map[string]*Image
	clients map[string]*Client
	macs    map[string]*Client
	addrs   map[string]*Client

	unknownClients *hcl.Attribute // boot.unknown_clients, when set
	defaultImage   *hcl.Attribute // boot.default_image, when set
	httpListen     *hcl.Attribute // http.listen, when set
	bootListen     *hcl.Attribute // boot.listen, when set
}

func rootSchema() *hcl.BodySchema {
	return &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "data_dir"}, {Name: "plugin_dir"}},
		Blocks: []hcl.BlockHeaderSchema{
			{Type: "http"},
			{Type: "boot"},
			{Type: "plugin"},
			{Type: "database", LabelNames: []string{"type"}},
			{Type: KindProtocol, LabelNames: []string{"type", "name"}},
			{Type: KindStorage, LabelNames: []string{"type", "name"}},
			{Type: KindAuth, LabelNames: []string{"type", "name"}},
			{Type: "image", LabelNames: []string{"name"}},
			{Type: "images"},
			{Type: "client", LabelNames: []string{"name"}},
		},
	}
}

func (l *loader) load() *Config {
	file, diags := hclparse.NewParser().ParseHCL(l.src, l.file)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return nil
	}
	content := l.content(file.Body, rootSchema())

	cfg := &Config{
		File:      l.file,
		DataDir:   l.resolve(DefaultDataDir),
		PluginDir: l.resolve(DefaultPluginDir),
		HTTP:      HTTP{Listen: DefaultListen, ScrapeTimeout: DefaultScrapeTimeout, SessionLifetime: DefaultSessionLifetime},
		Boot: Boot{
			IQNPrefix:      DefaultIQNPrefix,
			UnknownClients: UnknownClientsIgnore,
			Files:          l.resolve(DefaultBootFiles),
			StageTimeout:   DefaultStageTimeout,
			MaxRegistered:  DefaultMaxRegistered,
			MaxDiscovered:  DefaultMaxDiscovered,
			SessionHistory: DefaultSessionHistory,
		},
		Database: Database{Type: DatabaseSQLite, Sync: SyncFull},
	}
	cfg.body, _ = file.Body.(*hclsyntax.Body)
	l.path(content.Attributes, "data_dir", &cfg.DataDir)
	l.path(content.Attributes, "plugin_dir", &cfg.PluginDir)

	var httpBlock, bootBlock, dbBlock, imagesBlock, pluginBlock *hcl.Block
	for _, b := range content.Blocks {
		switch b.Type {
		case "http":
			if l.once(&httpBlock, b) {
				l.http(b, &cfg.HTTP)
			}
		case "boot":
			if l.once(&bootBlock, b) {
				l.boot(b, &cfg.Boot)
			}
		case "plugin":
			if l.once(&pluginBlock, b) {
				l.pluginUser(b, &cfg.PluginUser)
			}
		case "database":
			if l.once(&dbBlock, b) {
				l.database(b, &cfg.Database)
			}
		case KindProtocol, KindStorage, KindAuth:
			if p := l.plugin(b); p != nil {
				cfg.Plugins = append(cfg.Plugins, p)
			}
		case "images":
			if l.once(&imagesBlock, b) {
				l.imageImports(b, cfg)
			}
		case "image":
			if im := l.image(b); im != nil {
				cfg.Images = append(cfg.Images, im)
			}
		case "client":
			if c := l.client(b); c != nil {
				cfg.Clients = append(cfg.Clients, c)
			}
		}
	}

	if cfg.Database.Type == DatabaseSQLite && cfg.Database.Path == "" {
		cfg.Database.Path = filepath.Join(cfg.DataDir, DefaultSQLiteFile)
	}
	if cfg.Boot.URL == "" {
		if cfg.Boot.Listen != "" {
			cfg.Boot.URL = defaultBootURL(cfg.Boot.Listen)
		} else {
			cfg.Boot.URL = defaultBootURL(cfg.HTTP.Listen)
		}
	}
	l.checkListeners(cfg)
	l.checkReferences(cfg)
	return cfg
}

// checkListeners refuses one address for both listeners, and warns when
// the admin API shares the machines' listener on a non-loopback address:
// every machine on the boot network could then reach /api/v1.
func (l *loader) checkListeners(cfg *Config) {
	h, b := cfg.HTTP, cfg.Boot
	if b.Listen != "" {
		_, port, _ := net.SplitHostPort(b.Listen)
		if b.Listen == h.Listen && port != "0" && l.bootListen != nil {
			l.invalid(l.bootListen,
				"boot.listen %q is also http.listen: give the boot listener the boot network's address and keep http.listen on loopback or a management address.", b.Listen)
		}
		return
	}
	if isLoopback(h.Listen) || l.httpListen == nil {
		return
	}
	l.diags = append(l.diags, warningAt(l.httpListen.Expr.Range(), "Admin API on the boot network",
		"http.listen %q is not a loopback address and boot.listen is not set, so /api/v1 and /metrics are served wherever machines fetch /boot; set boot { listen = \"<boot network address>:9184\" } and keep http.listen on loopback or a management address.", h.Listen))
}

// isLoopback reports whether the host of a host:port address is
// "localhost" or a loopback IP; an empty host means every interface.
func isLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// imageImports decodes the images {} block.
func (l *loader) imageImports(b *hcl.Block, cfg *Config) {
	c := l.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "import_dirs"}}})
	var dirs []string
	a := l.strings(c.Attributes, "import_dirs", &dirs)
	if a == nil {
		return
	}
	for i, d := range dirs {
		rng := a.Expr.Range()
		if e, ok := a.Expr.(hclsyntax.Expression); ok {
			if el := elementExpr(e, pathSub{index: i}, l.ctx); el != nil {
				rng = el.Range()
			}
		}
		bad := func(format string, args ...any) {
			l.diags = append(l.diags, errorAt(rng, `Invalid value for "import_dirs"`, "Element %d: "+format, append([]any{i}, args...)...))
		}
		if !filepath.IsAbs(d) {
			bad("%q is not an absolute path; import_dirs are folders on the host such as \"/srv/images\".", d)
			continue
		}
		fi, err := os.Stat(d)
		switch {
		case err != nil:
			bad("%v.", err)
			continue
		case !fi.IsDir():
			bad("%q is not a folder.", d)
			continue
		}
		cfg.ImportDirs = append(cfg.ImportDirs, filepath.Clean(d))
	}
}

// defaultBootURL is http://<listen> when listen names a specific IP.
func defaultBootURL(listen string) string {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.IsUnspecified() {
		return ""
	}
	return "http://" + listen
}

// checkReferences checks the names blocks use to point at each other.
func (l *loader) checkReferences(cfg *Config) {
	if cfg.Boot.UnknownClients == UnknownClientsRegister && cfg.Boot.DefaultImage == "" && l.unknownClients != nil {
		l.diags = append(l.diags, errorAt(l.unknownClients.Expr.Range(), `Missing boot.default_image`,
			`unknown_clients = "register" needs default_image, the image registered clients boot.`))
	}
	if a := l.defaultImage; a != nil && l.images[cfg.Boot.DefaultImage] == nil {
		l.diags = append(l.diags, errorAt(a.Expr.Range(), "Unknown image",
			"No image block is named %q.", cfg.Boot.DefaultImage))
	}
	for _, im := range cfg.Images {
		if im.Storage == "" {
			continue // missing: already reported
		}
		p := l.plugins[im.Storage]
		switch {
		case p == nil:
			l.diags = append(l.diags, errorAt(im.storageRange, "Unknown storage instance",
				"No storage block is named %q.", im.Storage))
		case p.Kind != KindStorage:
			l.diags = append(l.diags, errorAt(im.storageRange, "Not a storage instance",
				"%q is a %s instance (%s), not a storage instance.", im.Storage, p.Kind, position(p.DeclRange)))
		}
	}
	for _, c := range cfg.Clients {
		if c.Image != "" && l.images[c.Image] == nil {
			l.diags = append(l.diags, errorAt(c.imageRange, "Unknown image",
				"No image block is named %q.", c.Image))
		}
	}
}

// once records the first block of a kind that may appear once, and
// reports any later one.
func (l *loader) once(first **hcl.Block, b *hcl.Block) bool {
	if *first != nil {
		l.diags = append(l.diags, errorAt(b.DefRange, fmt.Sprintf("Duplicate %s block", b.Type),
			"Only one %s block is allowed; the first is at %s.", b.Type, position((*first).DefRange)))
		return false
	}
	*first = b
	return true
}

func (l *loader) http(b *hcl.Block, h *HTTP) {
	c := l.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "listen"}, {Name: "scrape_timeout"}, {Name: "tls_cert"}, {Name: "tls_key"},
		{Name: "session_lifetime"},
	}})
	l.path(c.Attributes, "tls_cert", &h.TLSCert)
	if a := l.path(c.Attributes, "tls_key", &h.TLSKey); a != nil && h.TLSCert == "" {
		l.invalid(a, "tls_key needs tls_cert.")
	}
	if a := l.str(c.Attributes, "listen", &h.Listen); a != nil {
		l.httpListen = a
		if err := checkHostPort(h.Listen); err != nil {
			l.invalid(a, "%v.", err)
		}
	}
	if a := l.duration(c.Attributes, "scrape_timeout", &h.ScrapeTimeout); a != nil && h.ScrapeTimeout <= 0 {
		l.invalid(a, "The scrape timeout must be more than zero.")
	}
	if a := l.duration(c.Attributes, "session_lifetime", &h.SessionLifetime); a != nil && h.SessionLifetime < time.Minute {
		l.invalid(a, "session_lifetime must be at least 1m (admins log in again when it ends).")
	}
}

func (l *loader) boot(b *hcl.Block, bt *Boot) {
	c := l.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "listen"}, {Name: "url"}, {Name: "iqn_prefix"}, {Name: "unknown_clients"}, {Name: "default_image"}, {Name: "files"},
		{Name: "script"}, {Name: "stage_timeout"}, {Name: "max_registered"}, {Name: "session_history"},
		{Name: "max_discovered"},
	}})
	if a := l.integer(c.Attributes, "max_registered", &bt.MaxRegistered); a != nil && bt.MaxRegistered < 0 {
		l.invalid(a, "max_registered must be 0 (no bound) or more.")
	}
	if a := l.integer(c.Attributes, "max_discovered", &bt.MaxDiscovered); a != nil && bt.MaxDiscovered < 0 {
		l.invalid(a, "max_discovered must be 0 (no bound) or more.")
	}
	l.path(c.Attributes, "script", &bt.Script)
	if a := l.duration(c.Attributes, "stage_timeout", &bt.StageTimeout); a != nil && bt.StageTimeout <= 0 {
		l.invalid(a, "The stage timeout must be more than zero.")
	}
	if a := l.duration(c.Attributes, "session_history", &bt.SessionHistory); a != nil && bt.SessionHistory < 0 {
		l.invalid(a, `session_history must be "0" (keep forever) or longer.`)
	}
	if a := l.str(c.Attributes, "listen", &bt.Listen); a != nil {
		l.bootListen = a
		if err := checkHostPort(bt.Listen); err != nil {
			l.invalid(a, "%v.", err)
		}
	}
	if a := l.str(c.Attributes, "url", &bt.URL); a != nil {
		u, err := url.Parse(bt.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			l.invalid(a, "%q is not an http:// or https:// URL such as \"http://192.168.77.1:9180\".", bt.URL)
		}
		bt.URL = strings.TrimRight(bt.URL, "/")
	}
	if a := l.str(c.Attributes, "iqn_prefix", &bt.IQNPrefix); a != nil && !validIQNPrefix(bt.IQNPrefix) {
		l.invalid(a, "%q is not an iSCSI qualified name prefix such as %q (lower case).", bt.IQNPrefix, DefaultIQNPrefix)
	}
	if a := l.str(c.Attributes, "unknown_clients", &bt.UnknownClients); a != nil {
		l.unknownClients = a
		if bt.UnknownClients != UnknownClientsIgnore && bt.UnknownClients != UnknownClientsRegister && bt.UnknownClients != UnknownClientsDiscover {
			l.invalid(a, "Use %q, %q or %q, not %q.", UnknownClientsIgnore, UnknownClientsRegister, UnknownClientsDiscover, bt.UnknownClients)
		}
	}
	l.defaultImage = l.str(c.Attributes, "default_image", &bt.DefaultImage)
	l.path(c.Attributes, "files", &bt.Files)
}

func (l *loader) database(b *hcl.Block, db *Database) {
	db.Type = b.Labels[0]
	db.DeclRange = b.DefRange
	switch db.Type {
	case DatabaseSQLite:
		c := l.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "path"}, {Name: "sync"}}})
		l.path(c.Attributes, "path", &db.Path)
		if a := l.str(c.Attributes, "sync", &db.Sync); a != nil && db.Sync != SyncFull && db.Sync != SyncNormal {
			l.invalid(a, "sync is %q (every commit synced to disk, the default) or %q (survives a crash of DLS, not a power cut), not %q.", SyncFull, SyncNormal, db.Sync)
		}
	case DatabasePostgres:
		c := l.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "dsn", Required: true}}})
		if a := l.str(c.Attributes, "dsn", &db.DSN); a != nil && db.DSN == "" {
			l.invalid(a, "The PostgreSQL connection string must not be empty.")
		}
	default:
		l.diags = append(l.diags, errorAt(b.LabelRanges[0], "Unsupported database type",
			"Use database %q or database %q, not %q.", DatabaseSQLite, DatabasePostgres, db.Type))
		db.Type = DatabaseSQLite
	}
}

func (l *loader) plugin(b *hcl.Block) *PluginBlock {
	p := &PluginBlock{
		Kind:      b.Type,
		Type:      b.Labels[0],
		Name:      b.Labels[1],
		Restart:   DefaultRestartPolicy(),
		DeclRange: b.DefRange,
		ctx:       l.ctx,
	}
	l.checkName(b.LabelRanges[0], "plugin type", p.Type, pluginNameChars)
	l.checkName(b.LabelRanges[1], "instance name", p.Name, pluginNameChars)
	if first := l.plugins[p.Name]; first != nil {
		l.diags = append(l.diags, errorAt(b.LabelRanges[1], "Duplicate plugin instance name",
			"%q is already the name of %s %q %q at %s; instance names are unique across protocol, storage and auth blocks.",
			p.Name, first.Kind, first.Type, first.Name, position(first.DeclRange)))
	} else {
		l.plugins[p.Name] = p
	}

	c := l.content(b.Body, &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "source"}, {Name: "sha256"}, {Name: "host_services"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "restart"}, {Type: "config"}},
	})
	l.hostServices(c.Attributes, p)
	if a := l.str(c.Attributes, "source", &p.Source); a != nil && p.Source == "" {
		l.invalid(a, "The plugin source must not be empty; leave it out to use %s in plugin_dir.", p.binaryName())
	}
	if a := l.str(c.Attributes, "sha256", &p.SHA256); a != nil {
		if !validSHA256(p.SHA256) {
			l.invalid(a, "A SHA-256 checksum is 64 hexadecimal digits.")
		}
		p.SHA256 = strings.ToLower(p.SHA256)
	}
	var restartBlock, configBlock *hcl.Block
	for _, nb := range c.Blocks {
		switch nb.Type {
		case "restart":
			if l.once(&restartBlock, nb) {
				l.restart(nb, &p.Restart)
			}
		case "config":
			if l.once(&configBlock, nb) {
				p.ConfigBody = nb.Body
				p.configRange = nb.DefRange
				p.configSrc = l.source(nb.Body)
			}
		}
	}
	return p
}

func (l *loader) restart(b *hcl.Block, r *RestartPolicy) {
	c := l.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "initial_delay"}, {Name: "max_delay"}, {Name: "max_failures"}, {Name: "reset_after"},
	}})
	var initial, maxDelay *hcl.Attribute
	for _, d := range []struct {
		name string
		dst  *time.Duration
		attr **hcl.Attribute
	}{
		{"initial_delay", &r.InitialDelay, &initial},
		{"max_delay", &r.MaxDelay, &maxDelay},
		{"reset_after", &r.ResetAfter, nil},
	} {
		a := l.duration(c.Attributes, d.name, d.dst)
		if a != nil && *d.dst <= 0 {
			l.invalid(a, "%s must be more than zero.", d.name)
		}
		if d.attr != nil {
			*d.attr = a
		}
	}
	if r.MaxDelay < r.InitialDelay {
		at := maxDelay
		if at == nil {
			at = initial
		}
		if at != nil {
			l.invalid(at, "max_delay (%s) is shorter than initial_delay (%s).", r.MaxDelay, r.InitialDelay)
		}
	}
	if a := l.integer(c.Attributes, "max_failures", &r.MaxFailures); a != nil && r.MaxFailures < 1 {
		l.invalid(a, "max_failures must be at least 1.")
	}
}

func (l *loader) image(b *hcl.Block) *Image {
	im := &Image{Name: b.Labels[0], DeclRange: b.DefRange}
	l.checkName(b.LabelRanges[0], "image name", im.Name, imageNameChars)
	if first := l.images[im.Name]; first != nil {
		l.diags = append(l.diags, errorAt(b.LabelRanges[0], "Duplicate image name",
			"Image %q is already declared at %s.", im.Name, position(first.DeclRange)))
	} else {
		l.images[im.Name] = im
	}
	c := l.content(b.Body, &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "storage", Required: true}, {Name: "source", Required: true}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "boot"}},
	})
	if a := l.str(c.Attributes, "storage", &im.Storage); a != nil {
		im.storageRange = a.Expr.Range()
	}
	if a := l.str(c.Attributes, "source", &im.Source); a != nil && im.Source == "" {
		l.invalid(a, "The image source must not be empty.")
	}
	var bootBlock *hcl.Block
	for _, nb := range c.Blocks {
		if l.once(&bootBlock, nb) {
			im.Boot = l.imageBoot(nb)
		}
	}
	return im
}

func (l *loader) imageBoot(b *hcl.Block) *ImageBoot {
	c := l.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "kernel", Required: true}, {Name: "initrd"}, {Name: "cmdline"}, {Name: "confirm"}, {Name: "loader"},
	}})
	ib := &ImageBoot{Loader: LoaderIPXE}
	if a := l.str(c.Attributes, "kernel", &ib.Kernel); a != nil && ib.Kernel == "" {
		l.invalid(a, "The kernel path must not be empty.")
	}
	l.str(c.Attributes, "initrd", &ib.Initrd)
	l.str(c.Attributes, "cmdline", &ib.Cmdline)
	l.boolean(c.Attributes, "confirm", &ib.Confirm)
	if a := l.str(c.Attributes, "loader", &ib.Loader); a != nil && ib.Loader != LoaderIPXE && ib.Loader != LoaderShim {
		l.invalid(a, "loader must be %q (iPXE, the default) or %q (shim, GRUB and a signed kernel, for Secure Boot), not %q.", LoaderIPXE, LoaderShim, ib.Loader)
	}
	return ib
}

func (l *loader) client(b *hcl.Block) *Client {
	cl := &Client{Name: b.Labels[0], Persistent: true, DeclRange: b.DefRange}
	l.checkName(b.LabelRanges[0], "client name", cl.Name, clientNameChars)
	if first := l.clients[cl.Name]; first != nil {
		l.diags = append(l.diags, errorAt(b.LabelRanges[0], "Duplicate client name",
			"Client %q is already declared at %s.", cl.Name, position(first.DeclRange)))
	} else {
		l.clients[cl.Name] = cl
	}
	c := l.content(b.Body, &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{
			{Name: "mac", Required: true}, {Name: "image", Required: true},
			{Name: "address"}, {Name: "initiators"}, {Name: "persistent"}, {Name: "script"},
			{Name: "extra_addresses"}, {Name: "labels"},
		},
		Blocks: []hcl.BlockHeaderSchema{{Type: "chap"}},
	})
	if a := l.str(c.Attributes, "mac", &cl.MAC); a != nil {
		hw, err := net.ParseMAC(cl.MAC)
		switch {
		case err != nil || len(hw) != 6:
			l.invalid(a, "%q is not a MAC address such as \"52:54:00:12:34:56\".", cl.MAC)
		case l.macs[hw.String()] != nil:
			first := l.macs[hw.String()]
			l.invalid(a, "MAC address %s already belongs to client %q (%s).", hw, first.Name, position(first.DeclRange))
		default:
			cl.MAC = hw.String()
			l.macs[cl.MAC] = cl
		}
	}
	if a := l.str(c.Attributes, "image", &cl.Image); a != nil {
		cl.imageRange = a.Expr.Range()
	}
	if a := l.str(c.Attributes, "address", &cl.Address); a != nil {
		addr, err := netip.ParseAddr(cl.Address)
		switch {
		case err != nil || !addr.Is4():
			l.invalid(a, "%q is not an IPv4 address.", cl.Address)
		case l.addrs[addr.String()] != nil:
			first := l.addrs[addr.String()]
			l.invalid(a, "Address %s is already reserved for client %q (%s).", addr, first.Name, position(first.DeclRange))
		default:
			cl.Address = addr.String()
			l.addrs[cl.Address] = cl
		}
	}
	if a := l.strings(c.Attributes, "initiators", &cl.Initiators); a != nil {
		for i, iqn := range cl.Initiators {
			if !strings.HasPrefix(iqn, "iqn.") && !strings.HasPrefix(iqn, "eui.") && !strings.HasPrefix(iqn, "naa.") {
				rng := a.Expr.Range()
				if e, ok := a.Expr.(hclsyntax.Expression); ok {
					if el := elementExpr(e, pathSub{index: i}, l.ctx); el != nil {
						rng = el.Range()
					}
				}
				l.diags = append(l.diags, errorAt(rng, `Invalid value for "initiators"`,
					"Element %d: %q is not an iSCSI initiator name (iqn., eui. or naa.).", i, iqn))
			}
		}
	}
	l.extraAddresses(c.Attributes, cl)
	l.labels(c.Attributes, cl)
	l.boolean(c.Attributes, "persistent", &cl.Persistent)
	l.path(c.Attributes, "script", &cl.Script)
	var chapBlock *hcl.Block
	for _, nb := range c.Blocks {
		if l.once(&chapBlock, nb) {
			cl.CHAP = l.chap(nb)
		}
	}
	return cl
}

// Bounds of a client's labels, the same as the admin API's.
const (
	maxLabels        = 64
	maxLabelKeyLen   = 63
	maxLabelValueLen = 255
)

// labels reads a client's labels = { room = "r1" }: string values, keys of
// 1-63 characters and values of at most 255, at most 64 of them, and no
// key of the dls. prefix (the host's own, such as dls.origin). An error
// points at the offending element.
func (l *loader) labels(attrs hcl.Attributes, cl *Client) {
	v, a := l.value(attrs, "labels", cty.Map(cty.String))
	if a == nil {
		return
	}
	if v.LengthInt() > maxLabels {
		l.invalid(a, "A client has at most %d labels, not %d.", maxLabels, v.LengthInt())
		return
	}
	out := make(map[string]string, v.LengthInt())
	for k, ev := range v.AsValueMap() {
		rng := a.Expr.Range()
		if e, ok := a.Expr.(hclsyntax.Expression); ok {
			if el := elementExpr(e, pathSub{key: &k}, l.ctx); el != nil {
				rng = el.Range()
			}
		}
		bad := func(detail string, args ...any) {
			l.diags = append(l.diags, errorAt(rng, `Invalid value for "labels"`, detail, args...))
		}
		switch {
		case ev.IsNull():
			bad("Label %q is null.", k)
		case k == "" || len(k) > maxLabelKeyLen:
			bad("Label key %q: want 1-%d characters.", k, maxLabelKeyLen)
		case strings.HasPrefix(k, "dls."):
			bad("Label key %q: keys starting with \"dls.\" are the host's own.", k)
		case len(ev.AsString()) > maxLabelValueLen:
			bad("Label %q: the value has %d characters, at most %d.", k, len(ev.AsString()), maxLabelValueLen)
		default:
			out[k] = ev.AsString()
		}
	}
	cl.Labels = out
}

func (l *loader) chap(b *hcl.Block) *CHAP {
	c := l.content(b.Body, &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "secret", Required: true}, {Name: "mutual_secret"},
	}})
	ch := &CHAP{}
	if a := l.str(c.Attributes, "secret", &ch.Secret); a != nil {
		switch {
		case ch.Secret == "":
			l.invalid(a, "The CHAP secret must not be empty; leave the chap block out to have DLS generate one.")
		default:
			if err := chapsecret.Check("the CHAP secret", ch.Secret); err != nil {
				l.invalid(a, "%s.", upperFirst(err.Error()))
			}
		}
	}
	if a := l.str(c.Attributes, "mutual_secret", &ch.MutualSecret); a != nil {
		switch {
		case ch.MutualSecret == "":
			l.invalid(a, "The mutual CHAP secret must not be empty; leave it out for one-way CHAP.")
		case ch.MutualSecret == ch.Secret:
			l.invalid(a, "The mutual CHAP secret must differ from the secret (RFC 3720).")
		default:
			if err := chapsecret.Check("the mutual CHAP secret", ch.MutualSecret); err != nil {
				l.invalid(a, "%s.", upperFirst(err.Error()))
			}
		}
	}
	return ch
}

// checkName checks a block label with validName. A bad name is still
// used, so that references to it do not cascade into more errors.
func (l *loader) checkName(rng hcl.Range, what, name, extra string) {
	if validName(name, extra) {
		return
	}
	allowed := "lower-case letters, digits"
	for i, c := range extra {
		sep := ", "
		if i == len(extra)-1 {
			sep = " and "
		}
		allowed += sep + strconv.Quote(string(c))
	}
	l.diags = append(l.diags, errorAt(rng, "Invalid "+what,
		"%q: use %s, starting with a letter or digit.", name, allowed))
}

// content decodes body against schema, keeping the diagnostics.
func (l *loader) content(body hcl.Body, schema *hcl.BodySchema) *hcl.BodyContent {
	c, diags := body.Content(schema)
	l.diags = append(l.diags, diags...)
	return c
}

// value evaluates the attribute name, if present and not null, and
// converts it to ty. It returns a nil attribute when there is no usable
// value (absent, null, or wrong: then the problem is reported).
func (l *loader) value(attrs hcl.Attributes, name string, ty cty.Type) (cty.Value, *hcl.Attribute) {
	a, ok := attrs[name]
	if !ok {
		return cty.NilVal, nil
	}
	v, diags := a.Expr.Value(l.ctx)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() || v.IsNull() {
		return cty.NilVal, nil
	}
	cv, err := convert.Convert(v, ty)
	if err == nil && !cv.IsWhollyKnown() {
		err = fmt.Errorf("the value is not known")
	}
	if err != nil {
		l.diags = append(l.diags, errorAt(a.Expr.Range(), "Incorrect attribute value type",
			"Inappropriate value for attribute %q: %s.", name, err))
		return cty.NilVal, nil
	}
	return cv, a
}

func (l *loader) str(attrs hcl.Attributes, name string, dst *string) *hcl.Attribute {
	v, a := l.value(attrs, name, cty.String)
	if a != nil {
		*dst = v.AsString()
	}
	return a
}

func (l *loader) boolean(attrs hcl.Attributes, name string, dst *bool) *hcl.Attribute {
	v, a := l.value(attrs, name, cty.Bool)
	if a != nil {
		*dst = v.True()
	}
	return a
}

func (l *loader) integer(attrs hcl.Attributes, name string, dst *int) *hcl.Attribute {
	v, a := l.value(attrs, name, cty.Number)
	if a == nil {
		return nil
	}
	if err := gocty.FromCtyValue(v, dst); err != nil {
		l.invalid(a, "%s must be a whole number: %v.", name, err)
		return nil
	}
	return a
}

func (l *loader) strings(attrs hcl.Attributes, name string, dst *[]string) *hcl.Attribute {
	v, a := l.value(attrs, name, cty.List(cty.String))
	if a == nil {
		return nil
	}
	out := make([]string, 0, v.LengthInt())
	for i, e := range v.AsValueSlice() {
		if e.IsNull() {
			l.invalid(a, "Element %d is null.", i)
			return nil
		}
		out = append(out, e.AsString())
	}
	*dst = out
	return a
}

func (l *loader) duration(attrs hcl.Attributes, name string, dst *time.Duration) *hcl.Attribute {
	var s string
	a := l.str(attrs, name, &s)
	if a == nil {
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		l.invalid(a, "%q is not a duration such as \"90s\" or \"1h30m\".", s)
		return nil
	}
	*dst = d
	return a
}

// path decodes a path attribute, resolved against the config's folder.
func (l *loader) path(attrs hcl.Attributes, name string, dst *string) *hcl.Attribute {
	var s string
	a := l.str(attrs, name, &s)
	if a == nil {
		return nil
	}
	if s == "" {
		l.invalid(a, "The path must not be empty.")
		return nil
	}
	*dst = l.resolve(s)
	return a
}

func (l *loader) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(l.dir, p)
}

// invalid reports a bad value of attribute a.
func (l *loader) invalid(a *hcl.Attribute, detailFormat string, args ...any) {
	l.diags = append(l.diags, errorAt(a.Expr.Range(), fmt.Sprintf("Invalid value for %q", a.Name), detailFormat, args...))
}

// source returns the source text of body, for ConfigHash.
func (l *loader) source(body hcl.Body) []byte {
	r, ok := body.(interface{ Range() hcl.Range })
	if !ok {
		return nil
	}
	rng := r.Range()
	if rng.Start.Byte < 0 || rng.End.Byte > len(l.src) || rng.Start.Byte > rng.End.Byte {
		return nil
	}
	return append([]byte(nil), l.src[rng.Start.Byte:rng.End.Byte]...)
}

// checkHostPort checks a "host:port" address with a numeric port.
func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") {
			if i := strings.LastIndex(s, ":"); i > 0 {
				return fmt.Errorf("%q is not a host:port address: write an IPv6 address in brackets, as in \"[%s]:%s\"", s, s[:i], s[i+1:])
			}
		}
		return fmt.Errorf("%q is not a host:port address such as \"127.0.0.1:69\"", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: the port %q is not a number from 0 to 65535", s, port)
	}
	return nil
}
