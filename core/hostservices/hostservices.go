// Package hostservices implements the services the host offers plugins
// (sdk/host): boot decisions, boot events, volume attachment and leases,
// on top of the state store and the storage plugins.
package hostservices

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
	"github.com/hashicorp/go-hclog"
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
}

// StorageResolver finds the storage plugin holding an image.
type StorageResolver interface {
	// StorageForImage returns the storage client of the image, or an error
	// when the image or its storage is unknown or not running.
	StorageForImage(image string) (*storage.Client, error)
}

// Services implements host.Services for one host.
type Services struct {
	boot    Boot
	clients store.Clients
	leases  store.Leases
	storage StorageResolver
	logger  hclog.Logger

	mu     sync.Mutex
	recent []host.Event // the newest events, for the admin view until sessions land
}

// New builds the host services.
func New(boot Boot, st store.Store, storage StorageResolver, logger hclog.Logger) *Services {
	return &Services{boot: boot, clients: st, leases: st, storage: storage, logger: logger}
}

// For returns the services as plugins see them.
func (s *Services) For() host.Services {
	return host.Services{Clients: s, Events: s, Volumes: s, Leases: s}
}

// Lookup implements host.Clients.
func (s *Services) Lookup(ctx context.Context, q host.Query) (host.Decision, error) {
	c, err := s.find(ctx, q)
	if errors.Is(err, store.ErrNotFound) {
		return host.Decision{Known: false}, nil
	}
	if err != nil {
		return host.Decision{}, fmt.Errorf("look up client (mac %q, initiator %q): %w", q.MAC, q.Initiator, err)
	}
	return s.decide(c, q), nil
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
	case 6, 7, 9:
		return "ipxe.efi"
	case 11:
		return "snp.efi"
	}
	return "undionly.kpxe"
}

func (s *Services) decide(c store.Client, q host.Query) host.Decision {
	target := s.boot.IQNPrefix + ":" + c.Name
	initiator := s.boot.IQNPrefix + ":initiator:" + c.Name
	d := host.Decision{
		Known: true, Client: c.Name, BootFile: bootFile(q.Arch), NextServer: s.boot.ServerAddress,
		ScriptURL:    strings.TrimRight(s.boot.URL, "/") + "/boot/" + strings.ReplaceAll(c.MAC, ":", "-") + ".ipxe",
		TargetIQN:    target,
		InitiatorIQN: initiator,
		Initiators:   append([]string{initiator}, c.Initiators...),
	}
	if c.Address.IsValid() {
		d.ReservedAddress = c.Address.String()
	}
	d.Script = fmt.Sprintf("#!ipxe\nset initiator-iqn %s\nsanboot iscsi:%s:::0:%s\n", initiator, s.boot.ServerAddress, target)
	return d
}

// maxRecent bounds the in-memory event history.
const maxRecent = 1024

// Report implements host.Events.
func (s *Services) Report(_ context.Context, events []host.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range events {
		if !knownEvent(e.Type) {
			s.logger.Warn("plugin reported an unknown event type; dropped", "type", e.Type)
			continue
		}
		s.logger.Debug("boot event", "type", e.Type, "mac", e.MAC, "client", e.Client, "address", e.Address)
		s.recent = append(s.recent, e)
	}
	if over := len(s.recent) - maxRecent; over > 0 {
		s.recent = append(s.recent[:0], s.recent[over:]...)
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

// Attach implements host.Volumes: the client's volume on the storage its
// image lives on, created from the image's current version on first use.
func (s *Services) Attach(ctx context.Context, client string) (volume.Descriptor, error) {
	c, err := s.clients.GetClient(ctx, client)
	if err != nil {
		return volume.Descriptor{}, fmt.Errorf("attach volume of client %s: %w", client, err)
	}
	st, err := s.storage.StorageForImage(c.Image)
	if err != nil {
		return volume.Descriptor{}, fmt.Errorf("attach volume of client %s: %w", client, err)
	}
	d, err := st.Attach(ctx, c.Name)
	if errors.Is(err, storage.ErrNotFound) {
		if _, err = st.CreateVolume(ctx, storage.VolumeRequest{Volume: c.Name, Image: c.Image}); err != nil {
			return volume.Descriptor{}, fmt.Errorf("attach volume of client %s: %w", client, err)
		}
		d, err = st.Attach(ctx, c.Name)
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
	st, err := s.storage.StorageForImage(c.Image)
	if err != nil {
		return fmt.Errorf("detach volume of client %s: %w", client, err)
	}
	return st.Detach(ctx, c.Name)
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

// Commit implements host.Leases.
func (s *Services) Commit(ctx context.Context, leases []host.Lease) ([]host.CommitResult, error) {
	in := make([]store.Lease, len(leases))
	for i, l := range leases {
		addr, err := netip.ParseAddr(l.Address)
		if err != nil {
			return nil, fmt.Errorf("commit leases: lease %d: address %q: %w", i, l.Address, err)
		}
		in[i] = store.Lease{Pool: l.Pool, Address: addr, MAC: l.MAC, Expires: l.Expires, State: store.LeaseState(l.State), Hostname: l.Hostname}
	}
	rs, err := s.leases.CommitLeases(ctx, in)
	if err != nil {
		return nil, err
	}
	out := make([]host.CommitResult, len(rs))
	for i, r := range rs {
		out[i] = host.CommitResult{OK: r.OK, Holder: r.Holder}
	}
	return out, nil
}

var _ host.Clients = (*Services)(nil)
var _ host.Events = (*Services)(nil)
var _ host.Volumes = (*Services)(nil)
var _ host.Leases = (*Services)(nil)
