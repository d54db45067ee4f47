// Package store defines the host's state store: the clients it boots, the
// DHCP leases it has handed out, the audit log, and the control plane's
// images, boot sessions and refresh tokens, with the purge of old sessions
// and tokens (controlplane.go). The host's services consume the Store
// interface; core/store/sqlite implements it on embedded SQLite and
// core/store/postgres on PostgreSQL for hosts that share state, both
// passing the same suite (core/store/storetest).
//
// Times are kept with millisecond precision and returned in UTC.
package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Errors every implementation wraps, so that callers can test with errors.Is
// whatever backend they run on.
var (
	// ErrNotFound: the client (or other object) asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the write would break a uniqueness rule (a MAC, reserved
	// address or initiator that belongs to another client).
	ErrConflict = errors.New("conflict")
	// ErrInvalid: the value given cannot be stored (bad MAC, empty name,
	// unknown lease state, ...). Nothing was written.
	ErrInvalid = errors.New("invalid value")
	// ErrSchemaTooNew: the database was migrated by a newer DLS than this
	// binary; opening it could misread or damage data the newer schema holds.
	ErrSchemaTooNew = errors.New("database schema is newer than this binary")
)

// Store is the host's state store. It is safe for concurrent use.
//
// It is split into small interfaces so that a service takes only the part
// it uses (the DHCP lease service takes a Leases, the admin API a Clients).
type Store interface {
	Clients
	Leases
	AuditLog
	Images
	Sessions
	Tokens
	Purger
	Discovered

	// Ping reports whether the store can answer queries (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the database. Calling it more than once is harmless.
	Close() error
}

// Clients holds the machines DLS boots, each known by a unique name and a
// unique MAC.
type Clients interface {
	// PutClient creates the client, or replaces the one with the same name
	// (CreatedAt is kept). It fails with ErrConflict when the MAC, the
	// reserved address or an initiator belongs to another client, and with
	// ErrInvalid when the client does not pass Normalize.
	PutClient(ctx context.Context, c Client) error
	// GetClient returns the client called name, or ErrNotFound.
	GetClient(ctx context.Context, name string) (Client, error)
	// ClientByMAC returns the client with this MAC (any spelling net.ParseMAC
	// accepts), or ErrNotFound.
	ClientByMAC(ctx context.Context, mac string) (Client, error)
	// ClientByInitiator returns the client that lists iqn among its extra
	// Initiators, or ErrNotFound. The initiator IQN DLS derives from the
	// client's name is not stored: the caller resolves that one itself.
	ClientByInitiator(ctx context.Context, iqn string) (Client, error)
	// ListClients returns every client, ordered by name.
	ListClients(ctx context.Context) ([]Client, error)
	// DeleteClient removes the client called name, or returns ErrNotFound.
	DeleteClient(ctx context.Context, name string) error
	// RenameClient gives the client called old the name new, keeping
	// everything else, its volume too (Client.Volume is set to the name
	// the volume was made under). ErrNotFound when there is no client old;
	// ErrConflict when new is another client's name or another client's
	// volume; ErrInvalid for an empty new.
	RenameClient(ctx context.Context, old, new string) error
}

// ClientBatcher is what a store may add: many new clients and their audit
// entries in one transaction, so that a storm of machines registered at
// their first DHCP (unknown_clients = "register") costs one commit (one
// fsync) per batch rather than two per machine.
type ClientBatcher interface {
	// PutClientsAudited puts each client as PutClient does, then appends
	// the entries, all or none: on an error nothing was written.
	PutClientsAudited(ctx context.Context, cs []Client, audit []AuditEntry) error
}

// PutClientsAudited puts cs, then appends audit, through st: in one
// transaction when st is a ClientBatcher; else client by client, then
// entry by entry, stopping at the first error (what was put stays).
func PutClientsAudited(ctx context.Context, st interface {
	Clients
	AuditLog
}, cs []Client, audit []AuditEntry) error {
	if b, ok := st.(ClientBatcher); ok {
		return b.PutClientsAudited(ctx, cs, audit)
	}
	for _, c := range cs {
		if err := st.PutClient(ctx, c); err != nil {
			return err
		}
	}
	for _, e := range audit {
		if err := st.AppendAudit(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// Leases holds DHCP leases. The store, not its callers, guarantees that an
// address is held by at most one MAC, so that several DHCP servers (or
// several hosts sharing a database) can never hand one address to two
// machines.
type Leases interface {
	// LoadLeases returns the leases of pool ("" = every pool), ordered by
	// address, including released, declined and expired ones: a DHCP server
	// uses them to offer a returning client its previous address.
	LoadLeases(ctx context.Context, pool string) ([]Lease, error)
	// CommitLeases writes the batch in one transaction, so a DHCP server can
	// pay for one durable commit per batch of requests (group commit), and
	// answers each lease in order. A lease is committed when its address is
	// free, already held by the same MAC (a renewal, release or decline), or
	// held by another MAC whose lease was released or has expired; otherwise
	// it is refused with the holder's MAC. Leases earlier in the batch count:
	// two leases of one batch for one address and different MACs give the
	// second a conflict.
	//
	// An error means nothing was committed: a lease that fails Normalize
	// (ErrInvalid), or a database failure.
	CommitLeases(ctx context.Context, leases []Lease) ([]LeaseResult, error)
}

// AuditLog records who changed what, for the admin API's audit view.
type AuditLog interface {
	// AppendAudit adds an entry; a zero Time is set to now. Action must not
	// be empty.
	AppendAudit(ctx context.Context, e AuditEntry) error
	// ListAudit returns the newest entries first, at most limit of them
	// (limit <= 0: all).
	ListAudit(ctx context.Context, limit int) ([]AuditEntry, error)
}

// Client is a machine DLS boots.
type Client struct {
	// Name identifies the client (config block label, API path, IQN suffix).
	Name string
	// MAC is the boot NIC's hardware address, canonical form
	// "aa:bb:cc:dd:ee:ff" (lower case, colons) once stored.
	MAC string
	// Image is the name of the image the client boots.
	Image string
	// Address is the IPv4 address reserved for the client; the zero Addr
	// means none.
	Address netip.Addr
	// Initiators are extra iSCSI initiator IQNs allowed to log in as this
	// client, stored in lower case (iSCSI names are case-insensitive,
	// RFC 3722) without duplicates. Nil when there are none.
	Initiators []string
	// ExtraAddresses are the addresses the client's extra Initiators may
	// log in from besides its boot address (IPv4 unmapped, or IPv6), in
	// the order given, without duplicates. Nil when there are none.
	ExtraAddresses []netip.Addr
	// Persistent clients keep their clone across boots; the others get a
	// fresh clone at every boot.
	Persistent bool
	// CHAPSecret is the secret the client's initiator answers the target's
	// CHAP challenge with; "" means no CHAP (the host gives every client a
	// generated one, see core/chapsecret, so "" is only seen before that). CHAPMutualSecret is the one
	// the target answers with in mutual CHAP ("" for one-way).
	//
	// Both are stored as given, in clear: CHAP is a shared-secret
	// challenge-response, so the iSCSI target needs the secret itself and a
	// hash would be useless. Protect the database accordingly (the SQLite
	// file is created 0600) and keep them out of logs and API answers.
	CHAPSecret       string
	CHAPMutualSecret string
	// Labels are free-form admin tags. Nil when there are none. Keys of
	// the dls. prefix are the host's own (LabelMaintenance, dls.origin).
	Labels map[string]string
	// Volume is the name of the client's storage volume when it differs
	// from Name: set by RenameClient (the volume keeps the name it was made
	// under), "" otherwise. PutClient keeps the stored one, and writes
	// this one only for a new client (a restore). Use VolumeName.
	Volume string
	// CreatedAt and UpdatedAt are set by the store.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// VolumeName is the name of the client's storage volume.
func (c Client) VolumeName() string {
	if c.Volume != "" {
		return c.Volume
	}
	return c.Name
}

// Normalize returns c in the form the store keeps (canonical MAC, IPv4
// address unmapped, initiators lower-cased and deduplicated, extra
// addresses unmapped and deduplicated, empty collections nil), or an error wrapping ErrInvalid. Implementations call
// it before writing; callers need not.
func (c Client) Normalize() (Client, error) {
	if strings.TrimSpace(c.Name) == "" {
		return c, fmt.Errorf("client name is empty: %w", ErrInvalid)
	}
	mac, err := CanonicalMAC(c.MAC)
	if err != nil {
		return c, fmt.Errorf("client %s: %w", c.Name, err)
	}
	c.MAC = mac
	if c.Address.IsValid() {
		c.Address = c.Address.Unmap()
		if !c.Address.Is4() {
			return c, fmt.Errorf("client %s: address %s is not IPv4: %w", c.Name, c.Address, ErrInvalid)
		}
	}
	var iqns []string
	seen := make(map[string]bool, len(c.Initiators))
	for _, iqn := range c.Initiators {
		iqn = strings.ToLower(strings.TrimSpace(iqn))
		if iqn == "" {
			return c, fmt.Errorf("client %s: empty initiator: %w", c.Name, ErrInvalid)
		}
		if !seen[iqn] {
			seen[iqn] = true
			iqns = append(iqns, iqn)
		}
	}
	c.Initiators = iqns
	var extra []netip.Addr
	for _, a := range c.ExtraAddresses {
		if !a.IsValid() {
			return c, fmt.Errorf("client %s: empty extra address: %w", c.Name, ErrInvalid)
		}
		a = a.Unmap().WithZone("")
		if !slices.Contains(extra, a) {
			extra = append(extra, a)
		}
	}
	c.ExtraAddresses = extra
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	return c, nil
}

// LeaseState is where a lease stands in its DHCP life.
type LeaseState string

// Lease states. Only a released lease (or an expired one, whatever its
// state) frees its address for another MAC: a declined address stays
// quarantined until the lease expires, because the decline means some
// machine answered ARP for it.
const (
	LeaseBound    LeaseState = "bound"
	LeaseReleased LeaseState = "released"
	LeaseDeclined LeaseState = "declined"
)

// Lease is one DHCP lease. The address is the key: pools must not overlap.
type Lease struct {
	// Pool is the name of the DHCP pool the address belongs to.
	Pool string
	// Address is the leased address: IPv4 (protocol "dhcp") or IPv6
	// (protocol "dhcp6"), without a zone.
	Address netip.Addr
	// MAC is the client's hardware address, canonical form once stored.
	MAC string
	// Expires is when the lease ends; from then on another MAC may take
	// the address.
	Expires time.Time
	// State is bound, released or declined.
	State LeaseState
	// Hostname is what the client sent in option 12, if anything.
	Hostname string
}

// Normalize returns l in the form the store keeps (canonical MAC, an IPv4
// address unmapped, an IPv6 address without zone), or an error wrapping
// ErrInvalid.
func (l Lease) Normalize() (Lease, error) {
	if !l.Address.IsValid() {
		return l, fmt.Errorf("lease without address: %w", ErrInvalid)
	}
	l.Address = l.Address.Unmap()
	if a := l.Address; a.Is6() && (a.Zone() != "" || !a.IsGlobalUnicast()) {
		// A DHCPv6 server leases global and unique-local addresses; a
		// zone or a link-local address would be one machine's view.
		return l, fmt.Errorf("lease address %s is not a global or unique-local IPv6 address: %w", a, ErrInvalid)
	}
	mac, err := CanonicalMAC(l.MAC)
	if err != nil {
		return l, fmt.Errorf("lease %s: %w", l.Address, err)
	}
	l.MAC = mac
	switch l.State {
	case LeaseBound, LeaseReleased, LeaseDeclined:
	default:
		return l, fmt.Errorf("lease %s: unknown state %q: %w", l.Address, l.State, ErrInvalid)
	}
	return l, nil
}

// LeaseResult answers one lease of a CommitLeases batch.
type LeaseResult struct {
	// OK is true when the lease was committed.
	OK bool
	// Holder is, for a refused lease, the MAC that holds the address.
	Holder string
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	// ID is set by the store; it orders entries.
	ID int64
	// Time is when it happened; AppendAudit sets a zero Time to now.
	Time time.Time
	// Actor is who did it (user name, "config", "dhcp:lan", ...).
	Actor string
	// Action is what was done ("client.put", "client.delete", ...).
	Action string
	// Object is what it was done to ("client/pc-01").
	Object string
	// Detail is free text or JSON with the specifics.
	Detail string
	// Source is where the request came from (remote address, "cli").
	Source string
}

// CanonicalMAC returns mac in the form the store keeps it
// ("aa:bb:cc:dd:ee:ff"), accepting any spelling net.ParseMAC does, or an
// error wrapping ErrInvalid.
func CanonicalMAC(mac string) (string, error) {
	hw, err := net.ParseMAC(strings.TrimSpace(mac))
	if err != nil {
		return "", fmt.Errorf("mac %q: %w", mac, ErrInvalid)
	}
	return hw.String(), nil
}

// LabelMaintenance marks a client in maintenance mode (its value: when the
// mode started, RFC 3339): its volume, a fresh clone of the image's current
// version when the mode started, is kept across boots even when the client
// is not persistent, until an admin promotes it to the image's next
// version or the mode is cancelled (POST clients/{name}/maintenance).
const LabelMaintenance = "dls.maintenance"

// LabelVersion pins a client to one version of its image during a staged
// rollout (its value: the version number): the host's boot-time resets
// clone that version instead of the current one, so the rollout's ring
// (ring=canary) boots the new version first. POST images/{name}/rollout
// sets and clears it.
const LabelVersion = "dls.version"
