// Command testplugin is a protocol plugin whose faults are chosen by its
// config. The host's tests run it as a real subprocess to exercise the
// supervisor, the metrics proxy and config decoding.
//
// Its type is "test", or <type> when its binary is named
// dls-protocol-<type>: a test installs it as dls-protocol-dhcp to get the
// host services the host grants DHCP. With probe_host it calls every host
// service through the raw gRPC stubs when configured and writes what the
// host answered to host-probe.json in its data dir (core/internal/hostprobe).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dls-project/dls/core/internal/hostprobe"
	"github.com/dls-project/dls/sdk"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

type conf struct {
	Listen       string        `hcl:"listen,optional" format:"host_port" doc:"TCP address to listen on; empty: no socket"`
	CrashOnStart bool          `hcl:"crash_on_start,optional" doc:"exit during Configure, every time"`
	HangCollect  bool          `hcl:"hang_collect,optional" doc:"never answer CollectMetrics once started"`
	Unhealthy    bool          `hcl:"unhealthy,optional" doc:"fail every health check"`
	Port         int           `hcl:"port,optional" doc:"must be 1-65535 when set (semantic check)"`
	Tick         time.Duration `hcl:"tick,optional" doc:"how often to count a fake request"`
	Events       []string      `hcl:"events,optional" doc:"boot events to report, one per TCP connection to listen"`
	EventMAC     string        `hcl:"event_mac,optional" doc:"the MAC those events are about"`
	ProbeHost    bool          `hcl:"probe_host,optional" doc:"call every host service once configured; write host-probe.json"`
	TryRead      []string      `hcl:"try_read,optional" doc:"files to try to open once configured; the outcomes go to try-read.json"`
	Pools        []struct {
		Name string `hcl:"name"`
	} `hcl:"pool,block" doc:"repeatable block"`
}

type plugin struct {
	reg      *metrics.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec

	mu      sync.Mutex
	cfg     conf
	started bool
	ln      net.Listener
	stop    chan struct{}
	host    host.Services
	next    int // index of the next event to report
}

func newPlugin() *plugin {
	reg := metrics.NewRegistry()
	return &plugin{
		reg:      reg,
		requests: reg.Counter("dls_test_requests_total", "Fake requests served.", "type"),
		latency:  reg.Histogram("dls_test_latency_seconds", "Fake request latency.", []float64{0.01, 0.1, 1}),
	}
}

func (p *plugin) Info() base.Info { return base.Info{Type: binaryType(), Version: "1.2.3"} }

// binaryType is <type> of a binary named dls-protocol-<type>, else "test".
func binaryType() string {
	if t, ok := strings.CutPrefix(filepath.Base(os.Args[0]), "dls-protocol-"); ok && t != "" {
		return t
	}
	return "test"
}

func (p *plugin) NewConfig() any { return &conf{Tick: 50 * time.Millisecond} }

func (p *plugin) Configure(ctx context.Context, req base.ConfigureRequest) error {
	c := *req.Config.(*conf)
	if c.CrashOnStart {
		os.Exit(3)
	}
	if c.Port != 0 && (c.Port < 1 || c.Port > 65535) {
		return config.Errorf("port", "port %d is out of range 1-65535", c.Port)
	}
	if len(c.TryRead) > 0 {
		if err := tryRead(c.TryRead, filepath.Join(req.DataDir, "try-read.json")); err != nil {
			return err
		}
	}
	if c.ProbeHost {
		if err := hostprobe.RunAndWrite(ctx, req.HostConn, req.DataDir); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg, p.host = c, req.Host
	return nil
}

func (p *plugin) Metrics() *metrics.Registry {
	p.mu.Lock()
	hang := p.cfg.HangCollect && p.started
	p.mu.Unlock()
	if hang {
		select {} // simulate a plugin stuck while collecting
	}
	return p.reg
}

func (p *plugin) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("already started")
	}
	if p.cfg.Listen != "" {
		ln, err := net.Listen("tcp", p.cfg.Listen)
		if err != nil {
			return err
		}
		p.ln = ln
		// The accept loop outlives the Start RPC: its reports run under
		// Start's values, not its cancellation; Stop ends the loop.
		serveCtx := context.WithoutCancel(ctx)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				p.requests.WithLabelValues("tcp").Inc()
				p.reportNext(serveCtx)
				_ = c.Close()
			}
		}()
	}
	p.started, p.stop, p.next = true, make(chan struct{}), 0
	go p.tick(p.stop, p.cfg.Tick)
	return nil
}

// reportNext reports the next configured event to the host, synchronously,
// so a test knows it arrived once its connection is closed.
func (p *plugin) reportNext(ctx context.Context) {
	p.mu.Lock()
	if p.next >= len(p.cfg.Events) || p.host.Events == nil {
		p.mu.Unlock()
		return
	}
	e := host.Event{Type: p.cfg.Events[p.next], MAC: p.cfg.EventMAC, Time: time.Now()}
	if e.Type == host.EventDHCPDiscover {
		e.Attrs = map[string]string{"vendor_class": "PXEClient:Arch:00000:UNDI:002001"}
	}
	p.next++
	events := p.host.Events
	p.mu.Unlock()
	_ = events.Report(ctx, []host.Event{e})
}

func (p *plugin) tick(stop chan struct{}, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			p.requests.WithLabelValues("tick").Inc()
			p.latency.WithLabelValues().Observe(0.05)
		}
	}
}

func (p *plugin) Stop(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		return nil
	}
	close(p.stop)
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	p.started = false
	return nil
}

func (p *plugin) Status(context.Context) (protocol.Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := protocol.Status{Serving: p.started}
	if p.ln != nil {
		st.Listeners = []string{"tcp " + p.ln.Addr().String()}
	}
	return st, nil
}

func (p *plugin) Health(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.Unhealthy {
		return errors.New("configured to be unhealthy")
	}
	return nil
}

// tryRead opens each path for reading and writes, as JSON to out, "ok"
// or the error per path: what a plugin running as another user can reach.
func tryRead(paths []string, out string) error {
	res := map[string]string{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			res[p] = err.Error()
			continue
		}
		_, err = f.Read(make([]byte, 1))
		_ = f.Close()
		res[p] = "ok"
		if err != nil && !errors.Is(err, io.EOF) {
			res[p] = err.Error()
		}
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return os.WriteFile(out, b, 0o600)
}

func main() { sdk.Serve(newPlugin()) }
