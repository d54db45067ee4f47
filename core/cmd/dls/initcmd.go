package main

// dls init: a working site config for this machine's LAN (core/siteinit).

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dls-project/dls/core/siteinit"
)

// packagedPluginDir is where the dls package installs the plugins.
const packagedPluginDir = "/usr/lib/dls/plugins"

// initOptions are dls init's flags.
type initOptions struct {
	fs        *flag.FlagSet
	iface     string
	mode      string
	pool      string
	storage   string
	dataDir   string
	pluginDir string
	ipxeDir   string
	out       string
	force     bool
}

func initCommand() *command {
	o := &initOptions{}
	return &command{
		name: "init", args: "--interface IFACE [--mode full|proxy] [--pool START-END] [--storage dir|zfs:DATASET] [--data-dir DIR] --out FILE",
		summary: "Write a site config for this machine's LAN",
		help: `Reads the interface's address, prefix and router, proposes a DHCP pool
that avoids the host's address and the router's, and writes a commented
dls.hcl: DHCP, TFTP, iSCSI and the boot listener on that address, the
admin API on loopback, unknown machines discovered, the iPXE builds of
Debian's package ipxe served over TFTP. On a terminal without flags it
asks; otherwise it takes the proposals (--mode full; the first interface
that is up with an IPv4 address unless --interface names one).
`,
		example: "dls init --interface br0 --out /etc/dls/dls.hcl",
		flags: func(fs *flag.FlagSet) {
			o.fs = fs
			fs.StringVar(&o.iface, "interface", "", "`IFACE` interface the machines boot on (default: the first one up with an IPv4 address)")
			fs.StringVar(&o.mode, "mode", siteinit.ModeFull, "`full|proxy` DHCP hands out addresses (full), or only boot answers beside the site's DHCP server (proxy)")
			fs.StringVar(&o.pool, "pool", "", "`START-END` addresses DHCP hands out in full mode (default: proposed from the subnet)")
			fs.StringVar(&o.storage, "storage", "dir", "`dir|zfs:DATASET` where images and volumes live")
			fs.StringVar(&o.dataDir, "data-dir", "", "`DIR` state folder (default /var/lib/dls as root, else var beside the config)")
			fs.StringVar(&o.pluginDir, "plugin-dir", "", "`DIR` plugin folder (default: plugins/ beside this dls, else "+packagedPluginDir+")")
			fs.StringVar(&o.ipxeDir, "ipxe-dir", siteinit.IPXEDir, "`DIR` folder of the iPXE builds (Debian's package ipxe)")
			fs.StringVar(&o.out, "out", "dls.hcl", "`FILE` config to write (\"-\": standard output)")
			fs.BoolVar(&o.force, "force", false, "overwrite FILE if it exists")
		},
		run: func(ctx context.Context, c *cli, _ []string) error {
			return runInit(ctx, c, o)
		},
	}
}

func runInit(_ context.Context, c *cli, o *initOptions) error {
	var q *asker
	if tty, ok := terminal(c.stdin); ok && len(given(o.fs)) == 0 {
		q = &asker{r: bufio.NewReader(tty), w: c.stderr}
	}
	s, err := o.site(c, q)
	if err != nil {
		return err
	}
	if q != nil {
		if o.out, err = q.ask("Config file to write", o.out, func(v string) error {
			if _, err := os.Stat(v); err == nil && !o.force {
				return fmt.Errorf("%s exists: name another file", v)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if o.out != "-" && !o.force {
		if _, err := os.Stat(o.out); err == nil {
			return fmt.Errorf("%s exists: give another --out, or --force to overwrite it", o.out)
		}
	}
	text, err := siteinit.Render(s)
	if err != nil {
		return err
	}
	if o.out == "-" {
		_, err := c.stdout.Write(text)
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return fmt.Errorf("create the config's folder: %w", err)
	}
	if err := os.WriteFile(o.out, text, 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	fmt.Fprintf(c.stdout, "wrote %s: %s on %s (%s)", o.out, s.Mode, s.Network.Interface, s.Network.Addr)
	if s.Mode == siteinit.ModeFull {
		fmt.Fprintf(c.stdout, ", pool %s", s.Pool)
	}
	fmt.Fprintf(c.stdout, ", boot URL %s\nnext:\n  dls validate --deep --config %[2]s\n  dls user add admin --password-stdin --role admin --config %[2]s\n  dls serve --config %[2]s\n", s.BootURL(), o.out)
	return nil
}

// site gathers the answers: from the flags, or asked on a terminal, or
// proposed.
func (o *initOptions) site(c *cli, q *asker) (siteinit.Site, error) {
	s := siteinit.Site{Written: c.now(), Storage: "dir"}
	iface := o.iface
	var err error
	switch {
	case iface != "":
	case q != nil:
		if iface, err = q.askInterface(); err != nil {
			return s, err
		}
	default:
		if iface, err = siteinit.FirstInterface(); err != nil {
			return s, err
		}
	}
	if s.Network, err = siteinit.ReadNetwork(iface); err != nil {
		return s, err
	}
	if q != nil {
		if o.mode, err = q.ask("DHCP mode: full (DLS hands out addresses) or proxy (beside the site's DHCP server)", o.mode, func(v string) error {
			_, err := checkMode(v)
			return err
		}); err != nil {
			return s, err
		}
	}
	if s.Mode, err = checkMode(o.mode); err != nil {
		return s, usagef("%v", err)
	}
	if s.Mode == siteinit.ModeFull {
		if s.Pool, err = o.choosePool(s.Network, q); err != nil {
			return s, err
		}
	} else if o.pool != "" {
		return s, usagef("--pool is for --mode full: in proxy mode the site's DHCP server hands out addresses")
	}
	storage := o.storage
	if q != nil {
		if storage, err = q.ask("Storage: dir, or zfs:DATASET", storage, func(v string) error { _, _, err := parseStorage(v); return err }); err != nil {
			return s, err
		}
	}
	if s.Storage, s.Dataset, err = parseStorage(storage); err != nil {
		return s, usagef("%v", err)
	}
	dataDir := o.dataDir
	if dataDir == "" {
		// A service run as root keeps its state where Debian's services
		// do; anyone else is trying DLS out, beside the config file.
		dataDir = "var"
		if os.Geteuid() == 0 {
			dataDir = "/var/lib/dls"
		}
		if q != nil {
			if dataDir, err = q.ask("Data folder (state, images, volumes)", dataDir, nil); err != nil {
				return s, err
			}
		}
	}
	if dataDir != "var" && !filepath.IsAbs(dataDir) {
		// Written relative to the config file's folder, given relative
		// to where dls init runs.
		if dataDir, err = filepath.Abs(dataDir); err != nil {
			return s, err
		}
	}
	s.DataDir = dataDir
	if s.PluginDir = o.pluginDir; s.PluginDir == "" {
		s.PluginDir = findPluginDir(c)
	} else if s.PluginDir, err = filepath.Abs(s.PluginDir); err != nil {
		return s, err
	}
	if missing := siteinit.MissingBootFiles(o.ipxeDir); len(missing) == 0 {
		s.TFTPRoot = o.ipxeDir
	} else {
		c.warn(fmt.Sprintf("dls init: %s not found in %s: install Debian's package ipxe (apt-get install ipxe) and run dls init again, or copy the iPXE builds into <data_dir>/plugins/tftp/tftp/", strings.Join(missing, " and "), o.ipxeDir))
	}
	return s, nil
}

func (o *initOptions) choosePool(n siteinit.Network, q *asker) (siteinit.Pool, error) {
	if o.pool != "" {
		p, err := siteinit.ParsePool(o.pool, n)
		if err != nil {
			return p, usagef("--pool: %v", err)
		}
		return p, nil
	}
	p, err := siteinit.ProposePool(n)
	if err != nil || q == nil {
		return p, err
	}
	ans, err := q.ask(fmt.Sprintf("Addresses for the machines in %s", n.Subnet()), p.String(), func(v string) error {
		_, err := siteinit.ParsePool(v, n)
		return err
	})
	if err != nil {
		return p, err
	}
	return siteinit.ParsePool(ans, n)
}

func checkMode(m string) (string, error) {
	switch m {
	case siteinit.ModeFull, siteinit.ModeProxy:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want full or proxy", m)
}

// parseStorage reads --storage: "dir", or "zfs:DATASET".
func parseStorage(v string) (typ, dataset string, err error) {
	switch {
	case v == "dir":
		return "dir", "", nil
	case strings.HasPrefix(v, "zfs:") && len(v) > len("zfs:") && !strings.HasPrefix(v, "zfs:/"):
		return "zfs", strings.TrimPrefix(v, "zfs:"), nil
	}
	return "", "", fmt.Errorf("storage %q: want dir, or zfs:DATASET such as zfs:tank/dls", v)
}

// findPluginDir is where this dls finds its plugins: plugins/ beside the
// binary (make build's bin/), else the package's folder.
func findPluginDir(c *cli) string {
	var beside string
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		beside = filepath.Join(filepath.Dir(exe), "plugins")
		if hasPlugins(beside) {
			return beside
		}
	}
	if hasPlugins(packagedPluginDir) {
		return packagedPluginDir
	}
	if beside == "" {
		beside = packagedPluginDir
	}
	c.warn(fmt.Sprintf("dls init: no plugins in %s or %s: plugin_dir is %s; build them (make build) or give --plugin-dir", beside, packagedPluginDir, beside))
	return beside
}

func hasPlugins(dir string) bool {
	m, _ := filepath.Glob(filepath.Join(dir, "dls-protocol-*"))
	return len(m) > 0
}

// asker asks questions on a terminal: each with a proposed answer that
// Enter takes; a wrong answer is said and asked again.
type asker struct {
	r *bufio.Reader
	w io.Writer
}

func (q *asker) ask(question, proposed string, check func(string) error) (string, error) {
	for {
		fmt.Fprintf(q.w, "%s [%s]: ", question, proposed)
		line, err := q.r.ReadString('\n')
		switch {
		case errors.Is(err, io.EOF) && line == "":
			return "", errors.New("no answer (end of input)")
		case err != nil && !errors.Is(err, io.EOF):
			return "", err
		}
		ans := strings.TrimSpace(line)
		if ans == "" {
			ans = proposed
		}
		if check == nil {
			return ans, nil
		}
		if err := check(ans); err != nil {
			fmt.Fprintf(q.w, "  %v\n", err)
			continue
		}
		return ans, nil
	}
}

// askInterface lists the interfaces that could serve and asks for one.
func (q *asker) askInterface() (string, error) {
	cands, err := siteinit.Candidates()
	if err != nil {
		return "", err
	}
	if len(cands) == 0 {
		return "", errors.New("no interface is up with an IPv4 address: give the LAN interface an address first")
	}
	fmt.Fprintln(q.w, "Interfaces with an IPv4 address:")
	for _, n := range cands {
		fmt.Fprintf(q.w, "  %-12s %s\n", n.Interface, n.Addr)
	}
	return q.ask("Interface the machines boot on", cands[0].Interface, func(v string) error {
		for _, n := range cands {
			if n.Interface == v {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of them", v)
	})
}
