// Package preflight checks a loaded config against the machine it is to
// run on (dls validate --deep, and dls serve at start): the interfaces
// exist and hold the addresses the config names, the ports are free, the
// image sources can be read, the first-stage iPXE builds the DHCP plugin
// hands out are in a TFTP root (with no TFTP block, the UEFI ones in
// boot.files, where UEFI HTTP boot fetches them), boot.url is absolute and
// its host an address of the boot interface, the iSCSI port the boot
// scripts name is the iSCSI listener's, and for images booting through
// shim, the signed chain's files (shim, GRUB, the kernel and initrd GRUB
// fetches) are where the TFTP plugin serves them from.
//
// No check depends on DLS running: none probes a DLS listener, so a
// config that dls init has just written passes before dls serve ever
// ran. Each finding is placed at file:line:col of what it is about.
// CHAP secrets are checked when the config loads (core/chapsecret's
// rule, at the secret), before any of these.
package preflight

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/dls-project/dls/core/config"
	"github.com/hashicorp/hcl/v2"
)

// Finding is one problem of the config on this machine.
type Finding struct {
	Range   hcl.Range
	Message string
	// Note marks a check that could not be made (a privileged port, when
	// not root): said, but not a problem of the config.
	Note bool
}

// String is "file:line:col: message" ("...: note: message" for a note).
func (f Finding) String() string {
	msg := f.Message
	if f.Note {
		msg = "note: " + msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", f.Range.Filename, f.Range.Start.Line, f.Range.Start.Column, msg)
}

// Input is what Check looks at.
type Input struct {
	Config *config.Config
	// Plugins holds each plugin instance's decoded config {} by instance
	// name: the JSON PluginBlock.DecodeConfig returns, with the plugin's
	// defaults filled in. A block missing here is not looked into.
	Plugins map[string][]byte
	// System is the machine; nil: Host.
	System System
}

// Check runs every check and returns the findings in file order.
func Check(ctx context.Context, in Input) []Finding {
	c := &checker{cfg: in.Config, sys: in.System}
	if c.sys == nil {
		c.sys = Host{}
	}
	c.decode(in.Plugins)
	ifcs, err := c.sys.Interfaces()
	if err != nil {
		c.add(c.cfg.FileRange(), "cannot list this machine's interfaces: %v", err)
	}
	c.ifcs = ifcs
	c.checkDHCPInterfaces()
	c.checkListeners(ctx)
	c.checkImages()
	c.checkBootFiles()
	c.checkSignedBoot()
	c.checkBootURL(ctx)
	c.checkISCSI()
	sort.SliceStable(c.out, func(i, j int) bool {
		a, b := c.out[i].Range, c.out[j].Range
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		if a.Start.Line != b.Start.Line {
			return a.Start.Line < b.Start.Line
		}
		return a.Start.Column < b.Start.Column
	})
	return c.out
}

// Problems counts the findings that are not notes.
func Problems(fs []Finding) int {
	n := 0
	for _, f := range fs {
		if !f.Note {
			n++
		}
	}
	return n
}

// The decoded settings of the first-party protocol plugins the checks
// understand; other attributes are ignored.
type dhcpConfig struct {
	Interface  string            `json:"interface"`
	Mode       string            `json:"mode"`
	ServerIP   string            `json:"server_ip"`
	NextServer string            `json:"next_server"`
	Port       int               `json:"port"`
	ProxyPort  int               `json:"proxy_port"`
	BootFiles  map[string]string `json:"boot_files"`
	// HTTPBootURL is where UEFI HTTP boot clients fetch first stages
	// ("": <boot url>/boot/files/, i.e. boot.files).
	HTTPBootURL string `json:"http_boot_url"`
}

type tftpConfig struct {
	Listen string `json:"listen"`
	Root   string `json:"root"`
	// The signed boot chain's files (signed.go).
	Shim       string `json:"shim"`
	GRUB       string `json:"grub"`
	MokManager string `json:"mok_manager"`
	GRUBConfig string `json:"grub_config"`
	Files      string `json:"files"`
}

type iscsiConfig struct {
	Listen string `json:"listen"`
}

type dhcpBlock struct {
	b *config.PluginBlock
	dhcpConfig
}

type tftpBlock struct {
	b *config.PluginBlock
	tftpConfig
}

type iscsiBlock struct {
	b *config.PluginBlock
	iscsiConfig
}

type checker struct {
	cfg  *config.Config
	sys  System
	ifcs []Interface
	out  []Finding

	dhcp  []dhcpBlock
	tftp  []tftpBlock
	iscsi []iscsiBlock
}

func (c *checker) add(r hcl.Range, format string, args ...any) {
	c.out = append(c.out, Finding{Range: r, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) note(r hcl.Range, format string, args ...any) {
	c.out = append(c.out, Finding{Range: r, Message: fmt.Sprintf(format, args...), Note: true})
}

// decode reads the protocol blocks the checks understand.
func (c *checker) decode(plugins map[string][]byte) {
	for _, b := range c.cfg.Plugins {
		js, ok := plugins[b.Name]
		if !ok || b.Kind != config.KindProtocol {
			continue
		}
		var err error
		switch b.Type {
		case "dhcp":
			d := dhcpBlock{b: b}
			if err = json.Unmarshal(js, &d.dhcpConfig); err == nil && d.Mode != "off" {
				c.dhcp = append(c.dhcp, d)
			}
		case "tftp":
			t := tftpBlock{b: b}
			if err = json.Unmarshal(js, &t.tftpConfig); err == nil {
				c.tftp = append(c.tftp, t)
			}
		case "iscsi":
			i := iscsiBlock{b: b}
			if err = json.Unmarshal(js, &i.iscsiConfig); err == nil {
				c.iscsi = append(c.iscsi, i)
			}
		}
		if err != nil {
			c.add(b.DeclRange, "plugin %s: its decoded config does not read as a %s plugin's: %v", b.Name, b.Type, err)
		}
	}
}

// iface is the interface named name, or nil.
func (c *checker) iface(name string) *Interface {
	for i := range c.ifcs {
		if c.ifcs[i].Name == name {
			return &c.ifcs[i]
		}
	}
	return nil
}

// owner is the interface holding address a, or nil.
func (c *checker) owner(a netip.Addr) *Interface {
	for i := range c.ifcs {
		if c.ifcs[i].has(a) {
			return &c.ifcs[i]
		}
	}
	return nil
}

func (c *checker) ifaceNames() string {
	names := make([]string, 0, len(c.ifcs))
	for _, i := range c.ifcs {
		names = append(names, i.Name)
	}
	return strings.Join(names, ", ")
}

func addrsOf(i *Interface) string {
	if len(i.Addrs) == 0 {
		return "none"
	}
	s := make([]string, 0, len(i.Addrs))
	for _, a := range i.Addrs {
		s = append(s, a.String())
	}
	return strings.Join(s, ", ")
}

func ipv4Of(i *Interface) (netip.Addr, bool) {
	for _, a := range i.Addrs {
		if a.Addr().Is4() {
			return a.Addr(), true
		}
	}
	return netip.Addr{}, false
}

// blockName names a plugin block as the file writes it.
func blockName(b *config.PluginBlock) string {
	return fmt.Sprintf("%s %q %q", b.Kind, b.Type, b.Name)
}

// checkDHCPInterfaces: each DHCP block's interface exists, is up and
// holds server_ip (or an IPv4 address to take it from).
func (c *checker) checkDHCPInterfaces() {
	for _, d := range c.dhcp {
		var ifc *Interface
		if d.Interface != "" {
			ifc = c.iface(d.Interface)
			switch {
			case ifc == nil:
				c.add(d.b.ConfigRange("interface"), "interface %q does not exist on this machine (it has %s)", d.Interface, c.ifaceNames())
				continue
			case !ifc.Up:
				c.add(d.b.ConfigRange("interface"), "interface %q is down: bring it up (ip link set %s up)", d.Interface, d.Interface)
			}
		}
		if d.ServerIP == "" {
			if ifc != nil {
				if _, ok := ipv4Of(ifc); !ok {
					c.add(d.b.ConfigRange("interface"), "interface %q has no IPv4 address for the DHCP server to answer from: give it the boot network's address (ip addr add 192.168.77.1/24 dev %s), or set server_ip", d.Interface, d.Interface)
				}
			}
			continue
		}
		ip, err := netip.ParseAddr(d.ServerIP)
		if err != nil {
			continue // the plugin refuses it
		}
		switch {
		case ifc != nil && !ifc.has(ip):
			c.add(d.b.ConfigRange("server_ip"), "server_ip %s is not an address of interface %q (it has %s)", ip, d.Interface, addrsOf(ifc))
		case ifc == nil && c.owner(ip) == nil:
			c.add(d.b.ConfigRange("server_ip"), "server_ip %s is not an address of this machine", ip)
		}
	}
}

// bootInterface is the interface machines boot on: the first DHCP
// block's, when it names one that exists; nil otherwise.
func (c *checker) bootInterface() (*Interface, *dhcpBlock) {
	for i := range c.dhcp {
		if c.dhcp[i].Interface == "" {
			continue
		}
		if ifc := c.iface(c.dhcp[i].Interface); ifc != nil {
			return ifc, &c.dhcp[i]
		}
		return nil, nil
	}
	return nil, nil
}

// hostIP is the IP address of a host:port, when it names one that is
// not the unspecified address.
func hostIP(hostport string) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsUnspecified() {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}
