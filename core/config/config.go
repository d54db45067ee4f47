// Package config reads the host's dls.hcl: where state and plugins live,
// the HTTP listener, boot settings, the database, the plugin instances to
// run, and the images and clients to reconcile into the state store.
//
// Every problem is reported as file:line:col: message, including problems
// inside a plugin's config {} block, which is decoded later against the
// schema the plugin declares (PluginBlock.DecodeConfig).
package config

import (
	"net/netip"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Plugin kinds, the block types of plugin blocks.
const (
	KindProtocol = "protocol"
	KindStorage  = "storage"
	KindAuth     = "auth"
)

// Database types, the label of the database block.
const (
	DatabaseSQLite = "sqlite"
	// SyncFull syncs SQLite's WAL at every commit: a power cut loses no
	// committed lease. SyncNormal survives kill -9 of the host but may
	// roll back the last commits at a power cut or kernel crash.
	SyncFull         = "full"
	SyncNormal       = "normal"
	DatabasePostgres = "postgres"
)

// Values of Boot.UnknownClients.
const (
	UnknownClientsIgnore   = "ignore"
	UnknownClientsRegister = "register"
	// UnknownClientsDiscover records unknown machines that ask to boot
	// (dls client discovered) without booting them.
	UnknownClientsDiscover = "discover"
)

// Config is a loaded and checked dls.hcl. Paths are absolute.
type Config struct {
	// File is the config file's path as given to Load; diagnostics name it.
	File string
	// DataDir holds the host's state (the SQLite database, plugin data dirs).
	DataDir string
	// PluginDir is where plugin binaries are looked up (dls-<kind>-<type>).
	PluginDir string
	HTTP      HTTP
	Boot      Boot
	Database  Database
	// PluginUser is the plugin {} block: who plugins run as.
	PluginUser PluginUser
	// Plugins are the protocol, storage and auth blocks in file order.
	Plugins []*PluginBlock
	// Images and Clients are the image and client blocks in file order.
	Images  []*Image
	Clients []*Client
	// ImportDirs is images { import_dirs }: the folders under which a
	// source path sent to the admin API may lie (absolute, existing,
	// cleaned). Empty by default: the API then refuses every server-side
	// path and takes uploads only. Image blocks' sources are not limited.
	ImportDirs []string
	// Warnings are "file:line:col: warning: ..." lines about a config that
	// loads but is risky (see FormatWarnings); dls validate prints them,
	// dls serve logs them.
	Warnings []string

	body *hclsyntax.Body // the file's top level, for AttrRange
}

// HTTP is the http {} block: the admin listener.
type HTTP struct {
	// Listen is host:port for /metrics, /healthz, /readyz and /api/v1, and
	// also /boot when Boot.Listen is empty. Default DefaultListen
	// (loopback).
	Listen string
	// ScrapeTimeout bounds how long a scrape waits for plugins' samples.
	ScrapeTimeout time.Duration
	// SessionLifetime caps an admin API session: refreshing never extends
	// it past the login's time plus this (session_lifetime, default 24h).
	SessionLifetime time.Duration
	// TLSCert and TLSKey, when set, make the listener serve HTTPS (not
	// the boot listener: iPXE does not trust a self-signed certificate).
	TLSCert string
	TLSKey  string
}

// Boot is the boot {} block.
type Boot struct {
	// Listen is host:port of the boot listener, which serves /boot only
	// (plain HTTP) on the boot network; empty: /boot is served on
	// HTTP.Listen beside the admin API.
	Listen string
	// URL is what clients use to reach the host (iPXE scripts, /boot/done),
	// without a trailing slash. By default http://<Listen>, else
	// http://<http.listen>; empty when that is not a specific IP address:
	// then nothing tells which address clients reach.
	URL string
	// IQNPrefix builds target (<prefix>:<client>) and initiator
	// (<prefix>:initiator:<client>) names.
	IQNPrefix string
	// UnknownClients is UnknownClientsIgnore, UnknownClientsRegister or
	// UnknownClientsDiscover.
	UnknownClients string
	// DefaultImage is the image of registered unknown clients; it names an
	// image block, and is set when UnknownClients is "register".
	DefaultImage string
	// MaxRegistered bounds how many clients unknown_clients = "register"
	// creates (clients labelled dls.origin = "register"): a flood of
	// random MACs from boot firmware must not fill the database and every
	// pool. 0: no bound.
	MaxRegistered int
	// MaxDiscovered bounds how many machines unknown_clients = "discover"
	// records, for the same reason. 0: no bound.
	MaxDiscovered int
	// Files is the folder served at /boot/files/ (kernels, initrds, iPXE).
	Files string
	// Script is an iPXE script template (Go text/template) replacing the
	// built-in one; empty for the built-in.
	Script string
	// StageTimeout is how long a boot session may wait for its next stage
	// before it counts as failed at that stage (default 5m).
	StageTimeout time.Duration
	// SessionHistory is how long boot sessions are kept once they ended
	// (done or failed); older ones are purged hourly. 0 keeps them
	// forever. Default 2160h (90 days).
	SessionHistory time.Duration
}

// Database is the database block; SQLite under DataDir when there is none.
type Database struct {
	// Type is DatabaseSQLite or DatabasePostgres.
	Type string
	// Path is the SQLite database file.
	Path string
	// Sync is SQLite's commit durability: SyncFull (the default) or
	// SyncNormal.
	Sync string
	// DSN is the PostgreSQL connection string.
	DSN string
	// DeclRange is the block's header; empty without a database block.
	DeclRange hcl.Range
}

// RestartPolicy is a plugin block's restart {} block: how the supervisor
// restarts a plugin that crashed or hung, with exponential backoff.
type RestartPolicy struct {
	// InitialDelay is the first wait before a restart (default 200ms).
	InitialDelay time.Duration
	// MaxDelay caps the doubling wait (default 30s).
	MaxDelay time.Duration
	// MaxFailures is how many failures in a row the supervisor tolerates
	// before it gives up on the plugin (default 5, at least 1).
	MaxFailures int
	// ResetAfter is how long a plugin must run for its failure count and
	// delay to start over (default 60s).
	ResetAfter time.Duration
}

// Image is an image block: a golden disk image and where it lives.
type Image struct {
	Name string
	// Storage is the instance name of the storage plugin holding it.
	Storage string
	// Source is where the image comes from, as written; the storage plugin
	// interprets it.
	Source string
	// Boot is set when the image boots a kernel instead of sanboot.
	Boot      *ImageBoot
	DeclRange hcl.Range

	storageRange hcl.Range // the storage attribute's value
}

// ImageBoot is an image's boot {} block.
type ImageBoot struct {
	// Kernel and Initrd are paths under Boot.Files, as written.
	Kernel string
	Initrd string
	// Cmdline is the kernel command line; the host appends dls.url and
	// dls.token when Confirm is set.
	Cmdline string
	// Confirm says the OS posts /boot/done, so boots end at "booted".
	Confirm bool
	// Loader is the first stage an EFI x64 machine gets: LoaderIPXE (the
	// default) or LoaderShim (the signed chain shim → GRUB → kernel, for
	// machines with Secure Boot on).
	Loader string
}

// Values of ImageBoot.Loader.
const (
	LoaderIPXE = "ipxe"
	LoaderShim = "shim"
)

// Client is a client block: one diskless machine.
type Client struct {
	Name string
	// MAC is lower-case and colon-separated (52:54:00:12:34:56).
	MAC string
	// Image names an image block.
	Image string
	// Address is the client's reserved IPv4 address, or empty.
	Address string
	// Initiators are extra initiator IQNs allowed to log in as this client.
	Initiators []string
	// ExtraAddresses are the addresses (IPv4 or IPv6, no zone) the
	// client's extra initiators may log in from, besides its boot address.
	ExtraAddresses []netip.Addr
	// Persistent keeps the client's volume across boots (default true);
	// false resets it at every boot.
	Persistent bool
	// Script is this client's iPXE script template, overriding boot.script.
	Script string
	// Labels are the client's free-form tags (labels = { room = "r1" }),
	// stored with the client as the API's labels are; the console groups
	// its floor by one of them. Nil when there are none.
	Labels map[string]string
	// CHAP is set when the client's chap block gives its secrets; without
	// one the host generates a secret and keeps it in the state store
	// (CHAP is on for every client).
	CHAP      *CHAP
	DeclRange hcl.Range

	imageRange hcl.Range // the image attribute's value
}

// CHAP holds a client's iSCSI CHAP secrets.
type CHAP struct {
	// Secret authenticates the client to the target; at least
	// chapsecret.MinLength characters.
	Secret string
	// MutualSecret, when set, authenticates the target to the client;
	// at least chapsecret.MinLength characters.
	MutualSecret string
}

// Plugin returns the plugin instance with the given name, or nil.
func (c *Config) Plugin(name string) *PluginBlock {
	for _, p := range c.Plugins {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// StartOrder returns the plugins in the order to start them: storage and
// auth instances first, then protocol instances (which reach storage
// through the host), each group in file order. Stop in reverse order.
func (c *Config) StartOrder() []*PluginBlock {
	out := make([]*PluginBlock, 0, len(c.Plugins))
	for _, p := range c.Plugins {
		if p.Kind != KindProtocol {
			out = append(out, p)
		}
	}
	for _, p := range c.Plugins {
		if p.Kind == KindProtocol {
			out = append(out, p)
		}
	}
	return out
}

// Image returns the image block with the given name, or nil.
func (c *Config) Image(name string) *Image {
	for _, im := range c.Images {
		if im.Name == name {
			return im
		}
	}
	return nil
}
