package hostservices

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/dls-project/dls/core/clientfeed"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
)

// WithFeed serves Watch from f (host.ClientWatcher): the DHCP plugin's
// table of known clients. Without it Watch fails, and plugins use Lookup.
func WithFeed(f *clientfeed.Feed) Option { return func(s *Services) { s.feed = f } }

// WithFeedReads makes the services answer their reads of one client (a
// DHCP query, a script, an iSCSI login, attach, detach, each boot event)
// from the feed's table instead of the store. Give it only when no other
// host writes the store (SQLite): the table learns another host's writes
// at its next resync, and an iSCSI login must not be let in on a client
// or a CHAP secret another host has just removed.
func WithFeedReads() Option { return func(s *Services) { s.feedReads = true } }

// errNoFeed answers Watch on services built without a feed.
var errNoFeed = errors.New("client watch: this host has no client feed")

// Watch implements host.ClientWatcher: the feed's clients as the
// decisions Lookup gives a DHCP query, without BootFile (by architecture,
// the plugin's choice) and AllowedAddresses (iSCSI's).
func (s *Services) Watch(ctx context.Context, fn func(host.ClientUpdate) error) error {
	if s.feed == nil {
		return errNoFeed
	}
	policy := s.boot.UnknownClients
	if policy == "" {
		policy = UnknownIgnore
	}
	return s.feed.Watch(ctx, func(c clientfeed.Change) error {
		u := host.ClientUpdate{Version: c.Version, Full: c.Full, Removed: c.Removed,
			UnknownClients: policy, Set: make([]host.ClientDecision, len(c.Set))}
		loaders := loaderCache{}
		for i, cl := range c.Set {
			d, err := s.watchDecision(ctx, cl, loaders)
			if err != nil {
				return err // the watcher watches again, from a snapshot
			}
			u.Set[i] = host.ClientDecision{MAC: cl.MAC, Decision: d}
		}
		return fn(u)
	})
}

// watchDecision is Lookup's decision for a DHCP query of c, minus what
// depends on the query.
func (s *Services) watchDecision(ctx context.Context, c store.Client, loaders loaderCache) (host.Decision, error) {
	d := s.decide(c, host.Query{MAC: c.MAC})
	d.BootFile = ""
	loader, err := s.loaderOf(ctx, c.Image, loaders)
	if err != nil {
		return host.Decision{}, fmt.Errorf("client watch: client %s: %w", c.Name, err)
	}
	d.Loader = loader
	return d, nil
}

// unknownSeen records a dhcp_unknown event's machine (discover mode).
func (s *Services) unknownSeen(e host.Event) {
	if !s.discovering() {
		return
	}
	q := host.Query{VendorClass: e.Attrs[host.AttrVendorClass], UserClass: e.Attrs[host.AttrUserClass]}
	if a, err := parseArch(e.Attrs[host.AttrArch]); err == nil {
		q.Arch = a
	}
	if !firmwareQuery(q) {
		return // an OS's DHCP client is never discovered (as in Lookup)
	}
	s.discover(e.MAC, q, e.Address)
}

func parseArch(s string) (uint16, error) {
	a, err := strconv.ParseUint(s, 10, 16)
	return uint16(a), err
}

var _ host.ClientWatcher = (*Services)(nil)
