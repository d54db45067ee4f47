// Package hostservices implements the services the host offers plugins
// (sdk/host): boot decisions, boot events, volume attachment and leases,
// on top of the state store and the storage plugins.
//
// A client's iPXE script, rendered by core/bootscript, goes only to the
// address bound to its boot (Script, core/bootbind): the address of its
// DHCP lease (Commit binds it before the DHCP plugin's ACK leaves), or in
// proxy mode the first requester after DLS's proxy answer (reported as an
// event with host.AttrProxy). A binding lasts while its lease, or a live
// iSCSI session of the client from that address, lasts; an address with a
// live session is not leased to another MAC. Decisions carry no script;
// iSCSI decisions carry the bound address (AllowedAddresses).
//
// Limits: proxy mode binds on first use, so a machine that sends a DHCP
// discover with a powered-off client's MAC and asks first gets that
// client's script; a client with a live iSCSI session cannot be taken
// over that way. In full mode, a machine that spoofs a powered-off
// client's MAC and wins its lease is that client to DLS. Bindings live in
// memory: leases are read back from the store at the first request after
// a restart, proxy bindings and live sessions are not (the machine's next
// boot binds again).
//
// Boot events go to the boot-session tracker (core/sessions) when one is
// given.
//
// Plugins never see Services whole: the host serves each plugin instance
// For() through that instance's guard (core/grants), which refuses the
// methods outside its grant with PermissionDenied and strips CHAP secrets
// from decisions unless the grant has "secrets" (only iSCSI's has).
package hostservices

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dls-project/dls/core/bootbind"
	"github.com/dls-project/dls/core/bootscript"
	"github.com/dls-project/dls/core/clientfeed"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/internal/pluginrpc/storagerpc"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Boot holds the site's boot settings the decisions are made from.
type Boot struct {
	// URL is the base URL clients use to reach the host's HTTP server.
	URL string
	// IQNPrefix makes target "<prefix>:<client>" and initiator
	// "<prefix>:initiator:<client>".
	IQNPrefix string
	// ServerAddress is the address of the iSCSI and TFTP services.
	ServerAddress string
	// ISCSIPort is the iSCSI listener's TCP port, which scripts name; 0
	// leaves it out (iPXE then uses 3260).
	ISCSIPort int
	// UnknownClients is what happens to a machine the store does not know:
	// "ignore" (or "") answers unknown; "register" creates the client
	// (see Lookup) with DefaultImage; "discover" answers unknown and
	// records the machine (discovery.go) for an admin to adopt, seen by
	// Lookup or reported in a dhcp_unknown event (a DHCP plugin answering
	// from the pushed client table, watch.go).
	UnknownClients string
	DefaultImage   string
	// MaxRegistered bounds the clients registration creates; 0: none.
	MaxRegistered int
	// MaxDiscovered bounds the machines discovery records; 0: none.
	MaxDiscovered int
}

// Values of Boot.UnknownClients.
const (
	UnknownIgnore   = "ignore"
	UnknownRegister = "register"
	UnknownDiscover = "discover"
)

// Sessions is what the services need of the boot-session tracker
// (*sessions.Tracker): the events, and the per-boot tokens of the scripts
// of clients that confirm their boot.
type Sessions interface {
	host.Events
	Token(ctx context.Context, client string) (string, error)
	LoaderFailed(ctx context.Context, token, stage string, bound func(client string) bool) error
}

// Option adds an optional part to the services.
type Option func(*Services)

// WithSessions sends boot events to the tracker and puts its tokens in the
// scripts of clients whose image confirms.
func WithSessions(t Sessions) Option { return func(s *Services) { s.sessions = t } }

// WithTemplates sets the site's custom script templates (SetTemplates).
func WithTemplates(t *bootscript.Templates) Option { return func(s *Services) { s.templates.Store(t) } }

// StorageResolver finds the storage plugin holding an image.
type StorageResolver interface {
	// StorageForImage returns the storage client of the image, or an error
	// when the image or its storage is unknown or not running.
	StorageForImage(ctx context.Context, image string) (*storagerpc.Client, error)
}

// Services implements host.Services for one host.
type Services struct {
	boot      Boot
	clients   store.Clients
	images    store.Images
	leases    store.Leases
	audit     store.AuditLog
	storage   StorageResolver
	logger    hclog.Logger
	sessions  Sessions
	templates atomic.Pointer[bootscript.Templates]
	bind      *bootbind.Index
	refused   *prometheus.CounterVec
	disc      *discoveries
	feed      *clientfeed.Feed // nil: Watch fails
	feedReads bool             // reads of one client from feed's table (WithFeedReads)
	prep      *volumePrep
	scripts   *scriptCache // nil: every script is rendered at its request

	loadMu sync.Mutex
	loaded atomic.Bool // bind holds the store's leases (read without loadMu once set)

	mu       sync.Mutex
	recent   []host.Event    // the newest raw events, for the admin view
	resetDue map[string]bool // non-persistent clients whose reset waits for their old boot's detach

	regs registrations // registrations group-committed

	regMu      sync.Mutex
	registered int       // clients registered so far; -1: not counted yet
	regCounted time.Time // when registered was last counted from the store
	regWarned  time.Time // when the bound was last logged
}

// New builds the host services.
func New(boot Boot, st store.Store, storage StorageResolver, logger hclog.Logger, opts ...Option) *Services {
	s := &Services{boot: boot, clients: st, images: st, leases: st, audit: st, storage: storage, logger: logger, resetDue: map[string]bool{}, registered: -1,
		bind: bootbind.New(nil), refused: newRefusedCounter(), disc: newDiscoveries(st, boot.MaxDiscovered), prep: newVolumePrep()}
	var err error
	if s.scripts, err = newScriptCache(); err != nil {
		logger.Warn("boot scripts rendered at every request", "error", err)
	}
	for _, o := range opts {
		o(s)
	}
	// To st itself: s.clients may wrap it, hiding its batches.
	s.regs.write = func(ctx context.Context, cs []store.Client, audit []store.AuditEntry) error {
		return store.PutClientsAudited(ctx, st, cs, audit)
	}
	if s.feed != nil && s.feedReads {
		// A boot asks for its client at every step: from the feed's
		// table, not the store (clientfeed.Reads).
		s.clients = clientfeed.Reads(st, s.feed)
	}
	return s
}

// SetTemplates replaces the custom script templates (config reload); nil
// goes back to the built-in ones.
func (s *Services) SetTemplates(t *bootscript.Templates) { s.templates.Store(t) }

// For returns the services as plugins see them.
func (s *Services) For() host.Services {
	return host.Services{Clients: s, Events: s, Volumes: s, Leases: s}
}

// Lookup implements host.Clients. With unknown_clients = "register", an
// unknown MAC asking as boot firmware (vendor class PXEClient or
// HTTPClient, or user class iPXE: never an OS's DHCP client) is registered
// and answered as known; with "discover", such a MAC is recorded (with
// q.Peer, the relay or source address the DHCP plugin saw) and answered
// unknown. The decision carries no script: scripts go only
// to the requester bound to the boot (Script).
func (s *Services) Lookup(ctx context.Context, q host.Query) (host.Decision, error) {
	c, err := s.find(ctx, q)
	if errors.Is(err, store.ErrNotFound) && q.MAC != "" && s.boot.UnknownClients == UnknownRegister && firmwareQuery(q) {
		c, err = s.register(ctx, q.MAC)
	}
	if errors.Is(err, store.ErrNotFound) {
		if q.MAC != "" && s.discovering() && firmwareQuery(q) {
			s.discover(q.MAC, q, q.Peer)
		}
		return host.Decision{Known: false}, nil
	}
	if err != nil {
		return host.Decision{}, fmt.Errorf("look up client (mac %q, initiator %q): %w", q.MAC, q.Initiator, err)
	}
	d := s.decide(c, q)
	if q.MAC != "" {
		// A DHCP query: the image says which first stage EFI x64 gets.
		if err := s.setLoader(ctx, &d, c, q.Arch); err != nil {
			return host.Decision{}, fmt.Errorf("look up client %s: %w", c.Name, err)
		}
	}
	if q.MAC == "" {
		// An iSCSI query: where a Normal session may come from.
		d.AllowedAddresses = allowedAddresses(c, s.boundAddresses(ctx, c))
	}
	return d, nil
}

// loaderFailed fails the boot session a boot loader's boot_failed event
// names by its token, when the event comes from the address bound to
// that boot, and returns the event without the token (events are kept
// and shown; the token is the boot's secret).
func (s *Services) loaderFailed(ctx context.Context, e host.Event) host.Event {
	attrs := maps.Clone(e.Attrs)
	token := attrs[host.AttrToken]
	delete(attrs, host.AttrToken)
	e.Attrs = attrs
	if s.sessions == nil {
		return e
	}
	err := s.sessions.LoaderFailed(ctx, token, attrs[host.AttrStage], func(client string) bool {
		if s.BoundClient(ctx, client, e.Address) {
			e.Client = client
			return true
		}
		return false
	})
	if err != nil {
		s.logger.Info("boot failure report refused", "address", e.Address, "stage", attrs[host.AttrStage], "error", err)
	}
	return e
}

// firmwareQuery reports whether a DHCP query comes from boot firmware.
func firmwareQuery(q host.Query) bool {
	return strings.HasPrefix(q.VendorClass, "PXEClient") || strings.HasPrefix(q.VendorClass, "HTTPClient") || q.UserClass == "iPXE"
}

func (s *Services) find(ctx context.Context, q host.Query) (store.Client, error) {
	switch {
	case q.MAC != "":
		return s.clients.ClientByMAC(ctx, q.MAC)
	case q.Target != "":
		name, ok := strings.CutPrefix(strings.ToLower(q.Target), strings.ToLower(s.boot.IQNPrefix)+":")
		if !ok {
			return store.Client{}, store.ErrNotFound
		}
		return s.clients.GetClient(ctx, name)
	case q.Initiator != "":
		iqn := strings.ToLower(q.Initiator)
		if name, ok := strings.CutPrefix(iqn, strings.ToLower(s.boot.IQNPrefix)+":initiator:"); ok {
			return s.clients.GetClient(ctx, name)
		}
		return s.clients.ClientByInitiator(ctx, iqn)
	}
	return store.Client{}, store.ErrNotFound
}

// Boot files by DHCP option 93 architecture.
func bootFile(arch uint16) string {
	switch arch {
	case 6, 7, 9, 15, 16, 17: // and their UEFI HTTP boot variants
		return "ipxe.efi"
	case 10, 11, 18, 19:
		return "snp.efi"
	}
	return "undionly.kpxe"
}

// decide is the decision for client c, without the script. CHAP: the
// initiator authenticates as its initiator IQN, the target (mutual CHAP)
// as its target IQN.
func (s *Services) decide(c store.Client, q host.Query) host.Decision {
	target := s.boot.IQNPrefix + ":" + c.Name
	initiator := s.boot.IQNPrefix + ":initiator:" + c.Name
	d := host.Decision{
		Known: true, Client: c.Name, BootFile: bootFile(q.Arch), NextServer: s.boot.ServerAddress,
		ScriptURL:    s.ScriptURL(c.MAC),
		TargetIQN:    target,
		InitiatorIQN: initiator,
		Initiators:   append([]string{initiator}, c.Initiators...),
	}
	if c.Address.IsValid() {
		d.ReservedAddress = c.Address.String()
	}
	if c.CHAPSecret != "" {
		d.CHAPUser, d.CHAPSecret, d.CHAPMutualSecret = initiator, c.CHAPSecret, c.CHAPMutualSecret
	}
	return d
}

// ScriptURL is the URL of the iPXE script of the client with mac
// (canonical form): <boot url>/boot/<mac with dashes>.ipxe.
func (s *Services) ScriptURL(mac string) string {
	return strings.TrimRight(s.boot.URL, "/") + "/boot/" + strings.ReplaceAll(mac, ":", "-") + ".ipxe"
}

// maxRecent bounds the in-memory event history.
const maxRecent = 1024

// Report implements host.Events: it keeps the newest events (Recent) and
// hands the known ones to the boot-session tracker.
func (s *Services) Report(ctx context.Context, events []host.Event) error {
	kept := make([]host.Event, 0, len(events))
	for _, e := range events {
		if !knownEvent(e.Type) {
			s.logger.Warn("plugin reported an unknown event type; dropped", "type", e.Type)
			continue
		}
		if e.Type == host.EventDHCPUnknown {
			s.unknownSeen(e)
		}
		if e.Type == host.EventBootFailed {
			e = s.loaderFailed(ctx, e)
		}
		s.logger.Debug("boot event", "type", e.Type, "mac", e.MAC, "client", e.Client, "address", e.Address)
		kept = append(kept, e)
	}
	for i, e := range kept {
		kept[i] = s.loaderMachine(ctx, e) // loader.go
		s.observeBinding(ctx, e)
		if (e.Type == host.EventDHCPDiscover || e.Type == host.EventDHCPRequest) && e.Client != "" {
			s.prepareForBoot(e.Client) // the clone is ready before the login asks
		}
	}
	s.mu.Lock()
	s.recent = append(s.recent, kept...)
	if over := len(s.recent) - maxRecent; over > 0 {
		s.recent = append(s.recent[:0], s.recent[over:]...)
	}
	s.mu.Unlock()
	// dhcp_unknown is a sighting for discovery, never part of a boot session.
	sessionEvents := slices.DeleteFunc(slices.Clone(kept), func(e host.Event) bool { return e.Type == host.EventDHCPUnknown })
	if s.sessions != nil && len(sessionEvents) > 0 {
		return s.sessions.Report(ctx, sessionEvents)
	}
	return nil
}

// Recent returns the newest events, oldest first.
func (s *Services) Recent() []host.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]host.Event(nil), s.recent...)
}

func knownEvent(t string) bool {
	for _, k := range host.EventTypes {
		if t == k {
			return true
		}
	}
	return false
}

// ResetVolume gives a non-persistent client a fresh clone for the boot
// that starts now (the session tracker calls it). While the machine's
// previous boot still has the volume attached (a machine that reboots
// never logs out of iSCSI), the reset waits for the client's next Attach,
// which comes after the protocol plugin has let the old session go.
func (s *Services) ResetVolume(ctx context.Context, client string) error {
	s.mu.Lock()
	delete(s.resetDue, client)
	s.mu.Unlock()
	err := s.reset(ctx, client)
	if errors.Is(err, storage.ErrInUse) {
		s.mu.Lock()
		s.resetDue[client] = true
		s.mu.Unlock()
		s.logger.Debug("volume still attached by the previous boot: reset at its next attach", "client", client)
		return nil
	}
	return err
}

// reset resets the client's volume; one not made yet needs nothing (the
// first attach clones it).
func (s *Services) reset(ctx context.Context, client string) error {
	c, err := s.clients.GetClient(ctx, client)
	if err != nil {
		return fmt.Errorf("reset volume of client %s: %w", client, err)
	}
	if since, ok := c.Labels[store.LabelMaintenance]; ok {
		// The volume being prepared as the next version stays.
		s.logger.Info("client in maintenance: its volume is kept across boots", "client", client, "since", since)
		return nil
	}
	st, err := s.storage.StorageForImage(ctx, c.Image)
	if err != nil {
		return fmt.Errorf("reset volume of client %s: %w", client, err)
	}
	if err := s.awaitCreation(ctx, c.VolumeName()); err != nil {
		return fmt.Errorf("reset volume of client %s: %w", client, err)
	}
	req := storage.VolumeRequest{Volume: c.VolumeName(), Image: c.Image}
	if req.Version, err = pinnedVersion(c); err != nil {
		return fmt.Errorf("reset volume of client %s: %w", client, err)
	}
	_, err = st.ResetVolume(ctx, req)
	if errors.Is(err, storage.ErrNotFound) {
		s.forgetVolume(c.VolumeName())
		s.prep.enqueue(c.Name) // made ahead of the login
		return nil
	}
	if err != nil {
		return fmt.Errorf("reset volume of client %s: %w", client, err)
	}
	return nil
}

// Attach implements host.Volumes: the client's volume on the storage its
// image lives on, created from the image's current version on first use.
// A non-persistent client's reset that had to wait is done first; if the
// volume is still in use it is refused rather than served with the last
// boot's writes.
func (s *Services) Attach(ctx context.Context, client string) (volume.Descriptor, error) {
	c, err := s.clients.GetClient(ctx, client)
	if err != nil {
		return volume.Descriptor{}, fmt.Errorf("attach volume of client %s: %w", client, err)
	}
	s.mu.Lock()
	due := s.resetDue[c.Name]
	s.mu.Unlock()
	if due {
		if err := s.reset(ctx, c.Name); err != nil {
			return volume.Descriptor{}, fmt.Errorf("attach volume of client %s: its fresh clone for this boot: %w", client, err)
		}
		s.mu.Lock()
		delete(s.resetDue, c.Name)
		s.mu.Unlock()
	}
	st, err := s.storage.StorageForImage(ctx, c.Image)
	if err != nil {
		return volume.Descriptor{}, fmt.Errorf("attach volume of client %s: %w", client, err)
	}
	// A background creation of the volume under way is waited for; one
	// still queued is made here, by this login (volumeprep.go).
	s.prep.unqueue(c.Name)
	if err := s.awaitCreation(ctx, c.VolumeName()); err != nil {
		return volume.Descriptor{}, fmt.Errorf("attach volume of client %s: %w", client, err)
	}
	d, err := st.Attach(ctx, c.VolumeName())
	if errors.Is(err, storage.ErrNotFound) {
		s.forgetVolume(c.VolumeName())
		if err = s.createVolume(ctx, c, st); err != nil {
			return volume.Descriptor{}, fmt.Errorf("attach volume of client %s: %w", client, err)
		}
		d, err = st.Attach(ctx, c.VolumeName())
	}
	if err != nil {
		return volume.Descriptor{}, fmt.Errorf("attach volume of client %s: %w", client, err)
	}
	return d, nil
}

// Detach implements host.Volumes.
func (s *Services) Detach(ctx context.Context, client string) error {
	c, err := s.clients.GetClient(ctx, client)
	if err != nil {
		return fmt.Errorf("detach volume of client %s: %w", client, err)
	}
	st, err := s.storage.StorageForImage(ctx, c.Image)
	if err != nil {
		return fmt.Errorf("detach volume of client %s: %w", client, err)
	}
	return st.Detach(ctx, c.VolumeName())
}

// Load implements host.Leases.
func (s *Services) Load(ctx context.Context, pool string) ([]host.Lease, error) {
	ls, err := s.leases.LoadLeases(ctx, pool)
	if err != nil {
		return nil, err
	}
	out := make([]host.Lease, len(ls))
	for i, l := range ls {
		out[i] = host.Lease{Pool: l.Pool, Address: l.Address.String(), MAC: l.MAC, Expires: l.Expires, State: string(l.State), Hostname: l.Hostname}
	}
	return out, nil
}

// Commit implements host.Leases. A bound lease of an address with a live
// iSCSI session of another MAC is refused with that MAC as the holder;
// every lease the store accepts updates the boot binding before Commit
// returns, so before the DHCP plugin sends its ACK.
func (s *Services) Commit(ctx context.Context, leases []host.Lease) ([]host.CommitResult, error) {
	in := make([]store.Lease, len(leases))
	for i, l := range leases {
		addr, err := netip.ParseAddr(l.Address)
		if err != nil {
			return nil, fmt.Errorf("commit leases: lease %d: address %q: %w", i, l.Address, err)
		}
		in[i] = store.Lease{Pool: l.Pool, Address: addr, MAC: l.MAC, Expires: l.Expires, State: store.LeaseState(l.State), Hostname: l.Hostname}
	}
	return s.commitBound(ctx, in)
}

var _ host.Clients = (*Services)(nil)
var _ host.Events = (*Services)(nil)
var _ host.Volumes = (*Services)(nil)
var _ host.Leases = (*Services)(nil)

// pinnedVersion is the version a staged rollout pins the client to (its
// store.LabelVersion), 0 (the current one) when none.
func pinnedVersion(c store.Client) (uint64, error) {
	pin, ok := c.Labels[store.LabelVersion]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseUint(pin, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("label %s=%q is no version number", store.LabelVersion, pin)
	}
	return n, nil
}
