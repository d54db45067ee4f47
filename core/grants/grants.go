// Package grants decides which host services (sdk/host) each plugin
// instance may call, and enforces it on the host's side of the broker
// connection the instance gets: a guarded host.Services that the host
// serves to that one instance.
//
// A grant is a set of names, as written in a protocol block's
// host_services attribute:
//
//	lookup   Clients.Lookup and Clients.Watch: boot decisions, without CHAP secrets
//	secrets  with lookup: decisions carry the client's CHAP secrets
//	scripts  Clients.Script: rendered boot scripts for the bound requester
//	volumes  Volumes.Attach and Volumes.Detach
//	leases   Leases.Load and Leases.Commit
//	events   Events.Report
//
// Each instance gets the grant of its kind and type unless its block says
// otherwise (Default):
//
//	protocol "dhcp"    lookup, leases, events
//	protocol "dhcp6"   lookup, leases, events
//	protocol "tftp"    scripts, events
//	protocol "iscsi"   lookup, secrets, volumes, events
//	other protocols    events
//	storage, auth      nothing
//
// A call outside the grant fails with gRPC status PermissionDenied, naming
// the instance and the method, and is counted in
// dls_host_service_denied_total{plugin,method}. The check is in the host,
// so a plugin that talks to the broker connection with raw gRPC stubs is
// held to it as much as one using the SDK.
package grants

import (
	"fmt"
	"slices"
	"strings"
)

// Grant names, as written in host_services.
const (
	Lookup  = "lookup"
	Secrets = "secrets"
	Scripts = "scripts"
	Volumes = "volumes"
	Leases  = "leases"
	Events  = "events"
)

// Names lists every grant name in the order Set.Names gives them.
var Names = []string{Lookup, Secrets, Scripts, Volumes, Leases, Events}

// Set is what one plugin instance may call. The zero Set allows nothing.
type Set struct {
	lookup, secrets, scripts, volumes, leases, events bool
}

// Parse builds a Set from grant names. An unknown name, or "secrets"
// without "lookup", is an error; duplicates are harmless.
func Parse(names []string) (Set, error) {
	var s Set
	for _, n := range names {
		if err := s.add(n); err != nil {
			return Set{}, err
		}
	}
	if s.secrets && !s.lookup {
		return Set{}, fmt.Errorf("%q adds CHAP secrets to %q's decisions: grant %q too", Secrets, Lookup, Lookup)
	}
	return s, nil
}

// Check reports whether name is a grant name, with the list of names
// when it is not.
func Check(name string) error {
	var s Set
	return s.add(name)
}

func (s *Set) add(name string) error {
	switch name {
	case Lookup:
		s.lookup = true
	case Secrets:
		s.secrets = true
	case Scripts:
		s.scripts = true
	case Volumes:
		s.volumes = true
	case Leases:
		s.leases = true
	case Events:
		s.events = true
	default:
		return fmt.Errorf("%q is not a host service; use one of %s", name, strings.Join(quoted(Names), ", "))
	}
	return nil
}

// Names returns the grant's names in a fixed order.
func (s Set) Names() []string {
	var out []string
	for _, n := range Names {
		if s.Has(n) {
			out = append(out, n)
		}
	}
	return out
}

// Has reports whether the grant includes name.
func (s Set) Has(name string) bool {
	switch name {
	case Lookup:
		return s.lookup
	case Secrets:
		return s.secrets
	case Scripts:
		return s.scripts
	case Volumes:
		return s.volumes
	case Leases:
		return s.leases
	case Events:
		return s.events
	}
	return false
}

// String is the grant as host_services would write it.
func (s Set) String() string {
	return "[" + strings.Join(quoted(s.Names()), ", ") + "]"
}

// Plugin kinds, as in config (the block types).
const (
	kindProtocol = "protocol"
)

// Default is the grant of a plugin of kind and type whose block does not
// set host_services: each built-in protocol gets what it calls, a
// vendor's protocol only Events, storage and auth nothing.
func Default(kind, typ string) Set {
	if kind != kindProtocol {
		return Set{}
	}
	switch typ {
	case "dhcp", "dhcp6":
		return Set{lookup: true, leases: true, events: true}
	case "tftp":
		return Set{scripts: true, events: true}
	case "iscsi":
		return Set{lookup: true, secrets: true, volumes: true, events: true}
	}
	return Set{events: true}
}

func quoted(names []string) []string {
	out := slices.Clone(names)
	for i, n := range out {
		out[i] = fmt.Sprintf("%q", n)
	}
	return out
}
