// Package siteinit writes a site's first dls.hcl (dls init): from the
// LAN interface's address and router it proposes a DHCP pool that avoids
// both, puts every boot-network listener on that address, keeps the
// admin API on loopback, and names things predictably (storage "local",
// DHCP "lan", TFTP "tftp", iSCSI "iscsi", auth "admins"), with comments
// that explain each choice. The config it renders loads with core/config.
package siteinit

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"text/template"
	"time"
)

// Modes of the DHCP block.
const (
	ModeFull  = "full"
	ModeProxy = "proxy"
)

// Ports of the listeners dls init writes.
const (
	AdminListen = "127.0.0.1:9180"
	BootPort    = 9184
	TFTPPort    = 69
	ISCSIPort   = 3260
)

// IPXEDir is where Debian's package ipxe installs its builds.
const IPXEDir = "/usr/lib/ipxe"

// BootFiles are the first-stage iPXE builds by DHCP architecture key,
// as the DHCP block's boot_files names them: files inside IPXEDir itself
// (ipxe.efi there is a link to /boot, out of a TFTP root of IPXEDir,
// which the TFTP plugin refuses to follow; snponly.efi drives the NIC
// through the firmware and is a file of its own).
var BootFiles = []BootFile{
	{Arch: "bios", File: "undionly.kpxe", What: "BIOS PXE ROMs"},
	{Arch: "efi_x64", File: "snponly.efi", What: "64-bit UEFI"},
}

// BootFile is one first-stage boot file and the firmware that gets it.
type BootFile struct {
	Arch, File, What string
}

// Site is everything a rendered config says.
type Site struct {
	Network Network
	// Mode is ModeFull (DLS hands out addresses from Pool) or ModeProxy
	// (the site's DHCP server does; DLS only answers boot firmware).
	Mode string
	// Pool is the DHCP pool in full mode.
	Pool Pool
	// Storage is "dir", or "zfs" with Dataset.
	Storage string
	Dataset string
	// DataDir and PluginDir as written (absolute, or relative to the
	// config file's folder).
	DataDir   string
	PluginDir string
	// TFTPRoot is the TFTP plugin's root: IPXEDir when it holds
	// BootFiles, else "" (the plugin's own folder under the data dir).
	TFTPRoot string
	// Written is when (for the header comment).
	Written time.Time
}

// MissingBootFiles lists the BootFiles that dir lacks (as regular files
// of its own, not links out of it).
func MissingBootFiles(dir string) []string {
	var missing []string
	root, err := os.OpenRoot(dir)
	if err != nil {
		for _, b := range BootFiles {
			missing = append(missing, b.File)
		}
		return missing
	}
	defer root.Close()
	for _, b := range BootFiles {
		fi, err := root.Stat(b.File)
		if err != nil || !fi.Mode().IsRegular() {
			missing = append(missing, b.File)
		}
	}
	return missing
}

// Check refuses a Site that would not load or serve: a mode other than
// full or proxy, a full mode without a pool, an unknown storage.
func (s Site) Check() error {
	switch s.Mode {
	case ModeFull:
		if !s.Pool.Start.IsValid() {
			return fmt.Errorf("mode full needs a pool")
		}
	case ModeProxy:
	default:
		return fmt.Errorf("mode %q: want full or proxy", s.Mode)
	}
	switch s.Storage {
	case "dir":
	case "zfs":
		if s.Dataset == "" || strings.HasPrefix(s.Dataset, "/") {
			return fmt.Errorf("storage zfs needs a dataset such as zfs:tank/dls, not %q", s.Dataset)
		}
	default:
		return fmt.Errorf("storage %q: want dir or zfs:DATASET", s.Storage)
	}
	if !s.Network.Addr.IsValid() || s.Network.Interface == "" {
		return fmt.Errorf("no interface address")
	}
	return nil
}

// Render writes the site's dls.hcl.
func Render(s Site) ([]byte, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := siteTemplate.Execute(&b, s); err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	return b.Bytes(), nil
}

// Helpers the template calls.

// AdminListen is the admin API's address: loopback.
func (Site) AdminListen() string { return AdminListen }

// HostIP is the host's address on the boot network.
func (s Site) HostIP() string { return s.Network.Addr.Addr().String() }

// Listen is host:port on the boot network's address.
func (s Site) Listen(port int) string { return fmt.Sprintf("%s:%d", s.HostIP(), port) }

// BootListen, TFTPListen and ISCSIListen are the boot network's
// listeners.
func (s Site) BootListen() string  { return s.Listen(BootPort) }
func (s Site) TFTPListen() string  { return s.Listen(TFTPPort) }
func (s Site) ISCSIListen() string { return s.Listen(ISCSIPort) }

// BootURL is the absolute URL machines fetch their scripts from.
func (s Site) BootURL() string { return fmt.Sprintf("http://%s:%d", s.HostIP(), BootPort) }

// IPXEDir is where Debian's package ipxe installs its builds.
func (Site) IPXEDir() string { return IPXEDir }

// BootFiles are the first-stage builds the DHCP block names.
func (Site) BootFiles() []BootFile { return BootFiles }

var siteTemplate = template.Must(template.New("dls.hcl").Funcs(template.FuncMap{
	"q":   quote,
	"pad": func(s string, n int) string { return s + strings.Repeat(" ", max(0, n-len(s))) },
}).Parse(siteText))

// quote writes s as an HCL string literal: quotes, backslashes and
// control characters escaped, and "${" and "%{" doubled so that a path is
// never read as a template.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		case (r == '$' || r == '%') && strings.HasPrefix(s[i+1:], "{"):
			b.WriteRune(r)
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

const siteText = `# dls.hcl for interface {{.Network.Interface}} ({{.Network.Addr}}{{if .Network.Router.IsValid}}, router {{.Network.Router}}{{end}}),
# written by dls init on {{.Written.Format "2006-01-02"}}. Check it against this machine with
#   dls validate --deep --config <this file>
# Relative paths are relative to this file's folder.

# State: the database, each plugin's folder (plugins/<instance>/), uploads.
# /var/lib/dls for a service run as root; "var" (beside this file) when
# dls init ran without root, to try DLS out.
data_dir   = {{q .DataDir}}
# Where dls finds its plugin binaries (dls-<kind>-<type>).
plugin_dir = {{q .PluginDir}}

# Admins: the API (/api/v1), /metrics, /healthz, /readyz. Loopback only:
# machines on the boot network never reach it.
http {
  listen = {{q .AdminListen}}
}

# Machines: /boot/... only, plain HTTP, on the boot network's address.
boot {
  listen          = {{q .BootListen}}
  url             = {{q .BootURL}}  # what scripts and DHCP answers name
  iqn_prefix      = "iqn.2026-11.io.dls"
  # Unknown machines that PXE-boot are recorded, not booted:
  #   dls client discovered; dls client adopt MAC --name pc01 --image IMAGE
  unknown_clients = "discover"
}

database "sqlite" {}  # dls.db in data_dir

# Admin users in data_dir/plugins/admins/. The first one:
#   dls user add admin --password-stdin --role admin
auth "local" "admins" {}

{{if eq .Storage "zfs"}}# Images, versions and each client's copy-on-write volume as ZFS datasets,
# snapshots and clones under {{.Dataset}} (created when missing).
storage "zfs" "local" {
  config {
    dataset = {{q .Dataset}}
  }
}
{{else}}# Images, versions and each client's copy-on-write volume as files, in
# data_dir/plugins/local/storage/. Add an image with
#   dls image add NAME --source disk.img
storage "dir" "local" {
  config {
    root = "storage"
  }
}
{{end}}
{{if eq .Mode "full"}}# DHCP on {{.Network.Interface}}: addresses for the machines, and the boot answers
# (first-stage iPXE over TFTP, then each machine's own script).
protocol "dhcp" "lan" {
  config {
    interface = {{q .Network.Interface}}
    mode      = "full"
    server_ip = {{q .HostIP}}
    boot_files = {
{{- range .BootFiles}}
      {{pad .Arch 7}} = {{q .File}}  # {{.What}}
{{- end}}
    }
    pool {
      start   = {{q .Pool.Start.String}}  # {{.Pool.Size}} addresses; not the host's nor the router's
      end     = {{q .Pool.End.String}}
      netmask = {{q .Network.Netmask}}
{{- if .Network.Router.IsValid}}
      router  = {{q .Network.Router.String}}
{{- end}}
    }
  }
}
{{else}}# Proxy DHCP on {{.Network.Interface}}: the site's DHCP server hands out addresses;
# DLS answers only boot firmware (ports 67 and 4011), with the boot files.
protocol "dhcp" "lan" {
  config {
    interface = {{q .Network.Interface}}
    mode      = "proxy"
    server_ip = {{q .HostIP}}
    boot_files = {
{{- range .BootFiles}}
      {{pad .Arch 7}} = {{q .File}}  # {{.What}}
{{- end}}
    }
  }
}
{{end}}
{{if .TFTPRoot}}# First-stage iPXE builds over TFTP, straight from Debian's package ipxe.
{{else}}# First-stage iPXE builds over TFTP, from data_dir/plugins/tftp/tftp/: copy
# {{range $i, $b := .BootFiles}}{{if $i}} and {{end}}{{$b.File}}{{end}} there (Debian's package ipxe has them in {{.IPXEDir}}).
{{end -}}
protocol "tftp" "tftp" {
  config {
    listen      = {{q .TFTPListen}}
    single_port = true  # every transfer from port 69: one firewall rule
{{- if .TFTPRoot}}
    root        = {{q .TFTPRoot}}
{{- end}}
  }
}

# Each client's volume as its own iSCSI target (CHAP on, bound to its boot).
protocol "iscsi" "iscsi" {
  config {
    listen = {{q .ISCSIListen}}
  }
}
`
