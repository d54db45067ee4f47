// Command dls-protocol-echo is the smallest DLS protocol plugin: a UDP echo
// server that reports each packet it answers to the host as a boot event.
// The plugin owns its socket; only the events cross to the host.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/dls-project/dls/sdk"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/protocol"
)

// Config is the plugin's config {} block.
type Config struct {
	Listen string `hcl:"listen,optional" format:"host_port" doc:"UDP address to echo on"`
}

func (c *Config) SetDefaults() { c.Listen = "127.0.0.1:7007" }

// Echo serves between Start and Stop. The host configures it (through the
// embedded config.Current) before the first Start and, on a reload,
// between a Stop and the next Start.
type Echo struct {
	protocol.Unimplemented
	config.Current[Config]

	mu     sync.Mutex
	conn   net.PacketConn // nil when not serving
	events *host.Batcher
	done   chan struct{} // closed when serve returns
}

func (*Echo) Info() base.Info { return base.Info{Type: "echo", Version: "0.1.0"} }

func (e *Echo) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	conn, err := new(net.ListenConfig).ListenPacket(ctx, "udp", e.Config().Listen)
	if err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	// The Batcher reports from its own goroutine: no packet waits on the host.
	e.conn, e.events, e.done = conn, host.NewBatcher(ctx, e.Request().Host.Events, 100*time.Millisecond, 64, 4096), make(chan struct{})
	go serve(conn, e.events, e.done)
	return nil
}

// serve answers packets until Stop closes conn.
func serve(conn net.PacketConn, events *host.Batcher, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 64<<10)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if _, err := conn.WriteTo(buf[:n], peer); err == nil {
			// Event types are the host's boot stages (host.EventTypes); an
			// echo is none of them, so it reports a file served, "echo".
			events.Emit(host.Event{Type: host.EventFileServed,
				Attrs: map[string]string{host.AttrFile: "echo", host.AttrRemote: peer.String()}})
		}
	}
}

func (e *Echo) Stop(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return nil
	}
	err := e.conn.Close()
	<-e.done // ReadFrom returns at once on a closed conn
	e.conn = nil
	return errors.Join(err, e.events.Close(ctx))
}

func (e *Echo) Status(context.Context) (protocol.Status, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return protocol.Status{}, nil
	}
	return protocol.Status{Serving: true, Listeners: []string{"udp " + e.conn.LocalAddr().String()}}, nil
}

func main() { sdk.Serve(&Echo{}) }
