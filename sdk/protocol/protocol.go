// Package protocol is the plugin kind for network protocol servers (DHCP,
// TFTP, iSCSI, ...). A protocol plugin owns its sockets: packets and blocks
// never cross gRPC; it asks the host only for decisions and reports events.
package protocol

import (
	"context"

	"github.com/dls-project/dls/sdk/base"
)

// Protocol is implemented by protocol plugins.
//
// Lifecycle: Configure (base.Plugin), then Start. On a config reload the host
// calls Stop, Configure, Start. Before the host kills the process it calls
// Stop with the grace period as the context deadline: close listeners, let
// transfers finish, flush events.
//
// Methods may be added to Protocol in later SDK versions. Embed
// Unimplemented in the plugin's type so that such an addition still
// compiles: the new method then answers with an error wrapping
// ErrUnimplemented until the plugin implements it.
type Protocol interface {
	base.Plugin
	// Start opens the plugin's sockets and begins serving. It returns once
	// serving has begun (listeners bound), not when serving ends.
	Start(ctx context.Context) error
	// Stop stops serving and drains within ctx's deadline.
	Stop(ctx context.Context) error
	// Status reports what the plugin is serving.
	Status(ctx context.Context) (Status, error)
}

// Status describes a running protocol plugin.
type Status struct {
	// Serving is true between a successful Start and Stop.
	Serving bool
	// Listeners are the addresses bound, e.g. "udp 127.0.0.1:6969".
	Listeners []string
	// Message is free text for the admin.
	Message string
}
