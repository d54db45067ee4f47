package hostservices

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dls-project/dls/core/bootscript"
	"github.com/dls-project/dls/core/chapsecret"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
)

// Platforms a script request may name: iPXE's ${platform}.
const (
	PlatformEFI  = "efi"
	PlatformBIOS = "pcbios"
)

// archOf is what the renderer knows of the machine's architecture.
type archOf struct {
	arch  uint16
	known bool
}

// Script implements host.Clients: the iPXE script of the machine with
// q.MAC (any spelling), as served at /boot/<mac>.ipxe and over TFTP, for
// the requester q.Peer. q.Platform is iPXE's ${platform} when the request
// tells it (PlatformEFI, PlatformBIOS), "" otherwise: the script then
// decides when it runs. host.PlatformGRUB asks for the machine's GRUB
// configuration instead (the shim chain, grubcfg.go), under the same
// binding.
//
// Only the address bound to the machine's boot gets it (its lease, or the
// first requester after DLS's proxy answer: bootbind); any other requester,
// an unknown MAC and one that does not parse are Found = false, counted in
// dls_boot_refused_total, and change nothing. unknown_clients = "register"
// registers an unknown MAC here only for a bound requester, and
// "discover" records it only for one.
func (s *Services) Script(ctx context.Context, q host.ScriptQuery) (host.Script, error) {
	m, err := store.CanonicalMAC(q.MAC)
	peer, ok := peerAddr(q.Peer)
	if err != nil || !ok || !s.bindings(ctx).Claim(m, peer) {
		s.Refused(RefusedNotBound)
		return host.Script{}, nil
	}
	c, err := s.clients.ClientByMAC(ctx, m)
	if errors.Is(err, store.ErrNotFound) && s.boot.UnknownClients == UnknownRegister {
		c, err = s.register(ctx, m)
	}
	if errors.Is(err, store.ErrNotFound) {
		if s.discovering() {
			s.discover(m, host.Query{}, peer.String())
		}
		s.Refused(RefusedUnknown)
		return host.Script{}, nil
	}
	if err != nil {
		return host.Script{}, fmt.Errorf("boot script for %s: %w", m, err)
	}
	if q.Platform == host.PlatformGRUB {
		body, err := s.renderGRUB(ctx, c) // grubcfg.go
		if err != nil {
			return host.Script{}, err
		}
		return host.Script{Found: true, Client: c.Name, Body: body}, nil
	}
	var a archOf
	switch q.Platform {
	case PlatformEFI:
		a = archOf{arch: 7, known: true}
	case PlatformBIOS:
		a = archOf{arch: 0, known: true}
	}
	body, err := s.render(ctx, c, a) // scriptcache.go: rendered once per change
	if err != nil {
		return host.Script{}, err
	}
	return host.Script{Found: true, Client: c.Name, Body: body}, nil
}

// render renders client c's script: its custom template, boot.script's, or
// the built-in one for its image (sanboot, or a kernel for an image with a
// boot profile). An image that confirms gets the boot's token.
func (s *Services) render(ctx context.Context, c store.Client, a archOf) (string, error) {
	d, err := s.scriptData(ctx, c, a)
	if err != nil {
		return "", err
	}
	return s.scripts.render(c.Name, a, d, s.templates.Load().For(c.Name))
}

// scriptData is what client c's script (or GRUB configuration) is made
// of: the client, its image's boot profile, the boot's token when the
// image confirms.
func (s *Services) scriptData(ctx context.Context, c store.Client, a archOf) (bootscript.ScriptData, error) {
	target := s.boot.IQNPrefix + ":" + c.Name
	initiator := s.boot.IQNPrefix + ":initiator:" + c.Name
	d := bootscript.ScriptData{
		Client: c.Name, MAC: c.MAC, InitiatorIQN: initiator, TargetIQN: target,
		Server: s.boot.ServerAddress, ISCSIPort: s.boot.ISCSIPort, BootURL: strings.TrimRight(s.boot.URL, "/"),
		Arch: a.arch, ArchKnown: a.known, UEFI: a.known && bootscript.UEFIArch(a.arch),
		Image: c.Image,
	}
	if c.CHAPSecret != "" {
		d.CHAPUser, d.CHAPSecret = initiator, c.CHAPSecret
		if c.CHAPMutualSecret != "" {
			d.CHAPMutualUser, d.CHAPMutualSecret = target, c.CHAPMutualSecret
		}
	}
	if s.images != nil && c.Image != "" {
		img, err := s.images.GetImage(ctx, c.Image)
		switch {
		case err == nil && img.Boot != nil:
			d.Kernel, d.Initrd, d.Cmdline, d.Confirm = img.Boot.Kernel, img.Boot.Initrd, img.Boot.Cmdline, img.Boot.Confirm
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return d, fmt.Errorf("boot script for client %s: image %s: %w", c.Name, c.Image, err)
		}
	}
	if d.Confirm && s.sessions != nil {
		tok, err := s.sessions.Token(ctx, c.Name)
		if err != nil {
			return d, fmt.Errorf("boot script for client %s: boot token: %w", c.Name, err)
		}
		d.Token = tok
	}
	return d, nil
}

// RegisteredPrefix starts the names of clients registered on first boot:
// "auto-" and the MAC's hex digits.
const RegisteredPrefix = "auto-"

// register creates the client of an unknown MAC (unknown_clients =
// "register"): named auto-<mac hex>, booting boot.default_image,
// persistent, labelled dls.origin = "register", with a generated CHAP
// secret (CHAP is on for every client); the audit log records it.
func (s *Services) register(ctx context.Context, mac string) (store.Client, error) {
	name := RegisteredPrefix + strings.ReplaceAll(mac, ":", "")
	switch c, err := s.clients.GetClient(ctx, name); {
	case err == nil && c.MAC == mac:
		return c, nil // registered by a concurrent lookup
	case err == nil:
		return store.Client{}, fmt.Errorf("register %s: the name %s belongs to the client with MAC %s: %w", mac, name, c.MAC, store.ErrConflict)
	case !errors.Is(err, store.ErrNotFound):
		return store.Client{}, fmt.Errorf("register %s: %w", mac, err)
	}
	if err := s.mayRegister(ctx); err != nil {
		return store.Client{}, fmt.Errorf("register %s: %w", mac, err)
	}
	secret, err := chapsecret.Generate()
	if err != nil {
		return store.Client{}, fmt.Errorf("register %s: %w", mac, err)
	}
	c := store.Client{
		Name: name, MAC: mac, Image: s.boot.DefaultImage, Persistent: true,
		Labels:     map[string]string{"dls.origin": "register"},
		CHAPSecret: secret,
	}
	entry := store.AuditEntry{
		Actor: "host", Action: "client.register", Object: "client/" + name,
		Detail: fmt.Sprintf(`{"mac":%q,"image":%q}`, mac, s.boot.DefaultImage), Source: "boot",
	}
	joined, err := s.regs.put(ctx, c, entry)
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			// The MAC was given to another client meanwhile.
			if other, err2 := s.clients.ClientByMAC(ctx, mac); err2 == nil {
				return other, nil
			}
		}
		return store.Client{}, fmt.Errorf("register %s as %s: %w", mac, name, err)
	}
	if joined {
		return s.clients.GetClient(ctx, name) // counted and logged by the first
	}
	s.regMu.Lock()
	if s.registered >= 0 {
		s.registered++
	}
	s.regMu.Unlock()
	s.logger.Info("unknown machine registered", "client", name, "mac", mac, "image", s.boot.DefaultImage)
	s.PrepareVolume(name)
	return s.clients.GetClient(ctx, name)
}

// recountRegistered is how often, at most, a registration at the bound
// counts the registered clients again (an admin may have deleted some).
const recountRegistered = 10 * time.Second

// mayRegister refuses a registration once boot.max_registered clients were
// registered, as store.ErrNotFound: the machine is then simply unknown.
// The count comes from the store once, is kept in memory, and is taken
// again (at most every recountRegistered) while at the bound.
func (s *Services) mayRegister(ctx context.Context) error {
	max := s.boot.MaxRegistered
	if max <= 0 {
		return nil
	}
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if s.registered >= 0 && s.registered < max {
		return nil
	}
	if now := time.Now(); s.registered < 0 || now.Sub(s.regCounted) >= recountRegistered {
		cs, err := s.clients.ListClients(ctx)
		if err != nil {
			return fmt.Errorf("count registered clients: %w", err)
		}
		n := 0
		for _, c := range cs {
			if c.Labels["dls.origin"] == "register" {
				n++
			}
		}
		s.registered, s.regCounted = n, now
	}
	if s.registered < max {
		return nil
	}
	if time.Since(s.regWarned) >= time.Minute {
		s.regWarned = time.Now()
		s.logger.Warn("unknown machine not registered: boot.max_registered reached", "registered", s.registered, "max_registered", max)
	}
	return fmt.Errorf("%d clients registered, boot.max_registered is %d: %w", s.registered, max, store.ErrNotFound)
}
