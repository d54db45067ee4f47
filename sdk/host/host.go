// Package host holds the services the DLS host offers to plugins: boot
// decisions (Clients), boot events (Events), volume attachment (Volumes) and
// the lease store (Leases). A plugin receives them in Configure; they travel
// over one brokered gRPC connection back to the host.
package host

import (
	"context"
	"time"

	"github.com/dls-project/dls/sdk/volume"
)

// Services bundles the host services a plugin may call. Every field is set
// for plugins served by a DLS host; tests may leave unused ones nil. The
// host grants each plugin instance only what its kind needs (a DHCP plugin
// gets decisions without CHAP secrets, leases and events; storage and auth
// plugins nothing): a call outside the grant fails with gRPC status
// PermissionDenied.
type Services struct {
	Clients Clients
	Events  Events
	Volumes Volumes
	Leases  Leases
}

// Clients answers "who is this machine and how does it boot?".
type Clients interface {
	// Lookup decides how the machine described by q boots. An unknown
	// machine is not an error: Decision.Known is false.
	Lookup(ctx context.Context, q Query) (Decision, error)
	// Script renders the iPXE script of the machine q.MAC for the
	// requester at q.Peer. The host answers only a peer bound to that
	// machine's current boot; anything else (an unknown MAC included) is
	// Found = false, never an error, so a caller learns nothing more than
	// "no script here".
	Script(ctx context.Context, q ScriptQuery) (Script, error)
}

// ClientWatcher is implemented by the Clients a DLS host gives a plugin
// (check with a type assertion): instead of one Lookup per new machine, a
// plugin keeps its own table of the known clients, pushed by the host. A
// plugin uses it for answers that depend only on the MAC (DHCP); answers
// that depend on the request (iSCSI's AllowedAddresses, registration of
// an unknown machine) still need Lookup.
type ClientWatcher interface {
	// Watch calls fn with a snapshot of every known client (Full), then
	// with each committed change to them, in order, one Version higher
	// each time, until ctx ends, fn returns an error, or the stream
	// breaks; it returns the reason (never nil). A caller that watches
	// again (after a broken stream, or a host restart, which starts
	// versions over) gets a new snapshot first. fn runs on Watch's
	// goroutine: keep it short. A table built this way lags the host's
	// last committed change by at most the push in flight.
	Watch(ctx context.Context, fn func(ClientUpdate) error) error
}

// ClientUpdate is one step of a client table (ClientWatcher).
type ClientUpdate struct {
	// Version numbers the host's table after this update. It grows by one
	// per update within one Watch.
	Version uint64
	// Full: Set is every known client; drop what was held before.
	Full bool
	// Set holds the clients added or changed (all of them when Full).
	Set []ClientDecision
	// Removed are the MACs (canonical form) no longer known: a client
	// deleted, or one whose MAC changed (its new MAC is in Set).
	Removed []string
	// UnknownClients is the host's policy for machines it does not know:
	// "ignore" (no answer), "discover" (no answer; the host records the
	// machine from an EventDHCPUnknown) or "register" (Lookup creates the
	// client and answers it).
	UnknownClients string
}

// ClientDecision is a known client's decision as a DHCP plugin uses it.
type ClientDecision struct {
	// MAC in canonical form, lower-case and colon separated.
	MAC string
	// Decision is what Lookup answers for this MAC, except BootFile,
	// which is empty (the plugin picks the first-stage file by the
	// request's architecture) and AllowedAddresses (iSCSI only).
	Decision Decision
}

// ScriptQuery asks for a machine's boot script on behalf of a requester.
type ScriptQuery struct {
	// MAC of the machine, colon- or dash-separated, any case.
	MAC string
	// Peer is the IP address the request came from (no port).
	Peer string
	// Platform is iPXE's ${platform} when the request tells it ("efi",
	// "pcbios"), "" otherwise; PlatformGRUB asks for the machine's GRUB
	// configuration (the shim chain) instead of its iPXE script.
	Platform string
}

// PlatformGRUB is ScriptQuery.Platform for a GRUB configuration: what
// Debian's signed GRUB, loaded by shim, runs for the machine.
const PlatformGRUB = "grub"

// Script is a rendered boot script.
type Script struct {
	// Found is false when there is no script for this requester.
	Found bool
	// Client is the client's name.
	Client string
	// Body is the rendered iPXE script. It may carry secrets of this boot
	// (CHAP, the boot token): serve it only to the requester that asked.
	Body string
}

// Query identifies a machine by MAC (DHCP, TFTP, HTTP) or by iSCSI
// initiator and target names.
type Query struct {
	// MAC in canonical form, lower-case and colon separated.
	MAC string
	// Initiator is the iSCSI initiator IQN that logs in.
	Initiator string
	// Target is the iSCSI target IQN the initiator asks for.
	Target string
	// Arch is DHCP option 93 (0 BIOS, 7 and 9 UEFI x64, 11 ARM64 UEFI).
	Arch uint16
	// UserClass is DHCP option 77 ("iPXE" once iPXE runs).
	UserClass string
	// VendorClass is DHCP option 60 ("PXEClient...", "HTTPClient...").
	VendorClass string
	// Peer is the requester's IP address when the plugin knows it (the
	// iSCSI initiator's TCP peer).
	Peer string
}

// Decision is the host's answer for one machine.
type Decision struct {
	// Known is false for machines the host will not boot.
	Known bool
	// Client is the client's name.
	Client string
	// BootFile is the first-stage file for the machine's architecture.
	BootFile string
	// NextServer is the TFTP server address for BootFile.
	NextServer string
	// ScriptURL is the URL of the client's own iPXE script.
	ScriptURL string
	// TargetIQN is the client's iSCSI target; InitiatorIQN the initiator
	// name its script sets; Initiators every initiator allowed to log in.
	TargetIQN    string
	InitiatorIQN string
	Initiators   []string
	// CHAP credentials, empty when the client has none. The host gives
	// secrets only to the plugin that serves the client's target (iSCSI).
	CHAPUser         string
	CHAPSecret       string
	CHAPMutualSecret string
	// ReservedAddress is the client's fixed IPv4 address, if any.
	ReservedAddress string
	// AllowedAddresses are the addresses a Normal iSCSI session of this
	// client may come from: the address bound to its current boot (its
	// lease, or where its proxy boot came from), then the client's
	// extra_addresses. Empty: no boot is bound now.
	AllowedAddresses []string
	// Loader is the first stage of the client's EFI x64 firmware: "" for
	// iPXE (BootFile), LoaderShim for the signed chain shim → GRUB →
	// kernel, which machines with Secure Boot on can run. It does not
	// depend on the query, so the pushed client table carries it.
	Loader string
}

// LoaderShim is Decision.Loader for clients booting through shim.
const LoaderShim = "shim"

// ShimBootFile is the name DHCP gives EFI x64 firmware of a client whose
// Loader is LoaderShim: shim (Debian's shimx64.efi.signed, signed by the
// Microsoft UEFI CA), which then asks the same server for grubx64.efi.
const ShimBootFile = "shimx64.efi"

// Events receives boot events. Use a Batcher in packet paths: it never
// blocks the caller and sends events in batches.
type Events interface {
	// Report sends at most MaxEventBatch events; the host refuses a
	// larger batch with gRPC status InvalidArgument.
	Report(ctx context.Context, events []Event) error
}

// MaxEventBatch bounds what one Report may carry, so a plugin cannot make
// the host buffer without limit. A Batcher splits its flushes to fit.
const MaxEventBatch = 4096

// Event is one step of a machine's boot, as a plugin saw it.
type Event struct {
	// Type is one of the Event* constants.
	Type string
	// MAC and/or Client identify the machine.
	MAC    string
	Client string
	// Address is the machine's IP address, when known.
	Address string
	Time    time.Time
	// Attrs carries small extra facts (file name, arch, initiator).
	Attrs map[string]string
}

// Event types plugins report.
const (
	EventDHCPDiscover = "dhcp_discover"
	EventDHCPOffer    = "dhcp_offer"
	EventDHCPRequest  = "dhcp_request"
	EventDHCPAck      = "dhcp_ack"
	EventDHCPNak      = "dhcp_nak"
	EventDHCPRelease  = "dhcp_release"
	EventDHCPDecline  = "dhcp_decline"
	EventScriptServed = "script_served"
	EventFileServed   = "file_served"
	EventISCSILogin   = "iscsi_login"
	EventISCSIHandoff = "iscsi_handoff"
	EventISCSILogout  = "iscsi_logout"
	EventOSBooted     = "os_booted"
	// EventDHCPUnknown is boot firmware of a machine the host does not
	// know asking a DHCP plugin that answers from a ClientWatcher table
	// (the host learns of it without a Lookup). Address is where the
	// request came from (its relay, or its source); Attrs carry the
	// class options. With unknown_clients = "discover" the host records
	// the machine; it starts no boot session.
	EventDHCPUnknown = "dhcp_unknown"
	// EventBootFailed is a boot loader reporting that the boot it runs
	// cannot go on (GRUB, when the kernel is refused by Secure Boot or
	// does not load). Attrs carry AttrToken, the boot's token as the host
	// gave it to that boot (proof that the report comes from it: the
	// host checks it and drops it from the event), and AttrStage, the
	// stage that failed ("grub"). The host fails that boot's session at
	// once instead of at its stage timeout.
	EventBootFailed = "boot_failed"
)

// Event attributes (Event.Attrs keys) the host understands. A DHCP plugin
// sets the first three on dhcp_discover and dhcp_request: they tell boot
// firmware (which starts a boot session) from a running OS renewing its
// address (which does not).
const (
	AttrVendorClass = "vendor_class" // DHCP option 60, e.g. "PXEClient:Arch:00007:..."
	AttrUserClass   = "user_class"   // DHCP option 77, "iPXE" once iPXE runs
	AttrArch        = "arch"         // DHCP option 93, decimal
	AttrFile        = "file"         // file_served, script_served: the name served
	AttrInitiator   = "initiator"    // iscsi_*: the initiator IQN
	AttrTarget      = "target"       // iscsi_*: the target IQN
	AttrRemote      = "remote"       // the peer's address
	AttrLoader      = "loader"       // file_served: the boot loader it was, "shim" or "grub"
	// AttrProxy is "true" on a DHCP plugin's dhcp_offer and dhcp_ack that
	// answer as proxyDHCP (boot options, no address). The host binds the
	// machine's next script request to its requester (first use), so the
	// plugin reports these before the answer leaves (Events.Report, not a
	// Batcher).
	AttrProxy = "proxy"
	// AttrFamily is "ipv6" on a DHCPv6 plugin's DHCP events (absent:
	// IPv4): the host names their session stage dhcp6, and binds a
	// DHCPv6 proxy answer's first use to an IPv6 requester.
	AttrFamily = "family"
	// AttrToken is boot_failed's boot token; AttrStage the stage that
	// failed.
	AttrToken = "token"
	AttrStage = "stage"
)

// FamilyIPv6 is AttrFamily's value on DHCPv6 events.
const FamilyIPv6 = "ipv6"

// EventTypes lists every event type, for validation.
var EventTypes = []string{
	EventDHCPDiscover, EventDHCPOffer, EventDHCPRequest, EventDHCPAck,
	EventDHCPNak, EventDHCPRelease, EventDHCPDecline, EventScriptServed,
	EventFileServed, EventISCSILogin, EventISCSIHandoff, EventISCSILogout,
	EventOSBooted, EventDHCPUnknown, EventBootFailed,
}

// Volumes attaches clients' volumes. The host resolves the client's image
// and the storage plugin holding it; the caller opens the descriptor with
// volume.Open.
type Volumes interface {
	Attach(ctx context.Context, client string) (volume.Descriptor, error)
	Detach(ctx context.Context, client string) error
}

// Leases is the durable DHCP lease store shared by every DLS host.
type Leases interface {
	// Load returns the leases of a pool ("" for all).
	Load(ctx context.Context, pool string) ([]Lease, error)
	// Commit stores a batch in one transaction. Each lease is answered in
	// order: OK, or a conflict naming the MAC that holds the address.
	Commit(ctx context.Context, leases []Lease) ([]CommitResult, error)
}

// Lease states.
const (
	LeaseBound    = "bound"
	LeaseReleased = "released"
	LeaseDeclined = "declined"
)

// Lease binds an address of a pool to a MAC until Expires.
type Lease struct {
	Pool     string
	Address  string
	MAC      string
	Expires  time.Time
	State    string
	Hostname string
}

// CommitResult answers one lease of a Commit batch.
type CommitResult struct {
	OK bool
	// Holder is the MAC holding the address when OK is false.
	Holder string
}
