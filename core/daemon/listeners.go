package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/dls-project/dls/core/api"
	"github.com/dls-project/dls/core/config"
	"github.com/dls-project/dls/core/console"
	"github.com/dls-project/dls/core/httpserver"
)

// listeners are the host's HTTP servers: the admin listener (http.listen:
// /api/v1, /metrics, /healthz, /readyz, and /boot unless boot.listen is
// set, and the console at / and /ui/) and the boot listener (boot.listen: /boot only, plain HTTP).
type listeners struct {
	servers []*http.Server
	// errc receives the first error of any server.
	errc chan error
}

// listen binds both listeners and starts serving. The addresses are read
// once: a reload that changes http.listen or boot.listen is logged and
// applied at the next start (see Reload).
func (d *Daemon) listen(cfg *config.Config) (*listeners, error) {
	adminLn, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, fmt.Errorf("http listen %s: %w", cfg.HTTP.Listen, err)
	}
	var bootLn net.Listener
	if cfg.Boot.Listen != "" {
		if bootLn, err = net.Listen("tcp", cfg.Boot.Listen); err != nil {
			_ = adminLn.Close()
			return nil, fmt.Errorf("boot listen %s: %w", cfg.Boot.Listen, err)
		}
	}
	boot := httpserver.BootHandler(httpserver.BootOptions{
		Scripts: d.services, Events: d.services, Confirmer: d.sessions, Binding: d.services,
		Files: cfg.Boot.Files, Logger: d.logger.Named("boot"),
	})
	mux := http.NewServeMux()
	mux.Handle(api.Prefix+"/", d.api.Handler())
	if bootLn == nil {
		mux.Handle("/boot/", boot)
	}
	mux.Handle("/", httpserver.Handler(d.reg, d, cfg.HTTP.ScrapeTimeout))
	// The floor console: the page at /, its files under /ui/.
	ui := console.Handler()
	mux.Handle("GET /{$}", ui)
	mux.Handle("GET /ui/", ui)

	ls := &listeners{errc: make(chan error, 2)}
	// No WriteTimeout: image uploads and imports run for minutes, and
	// kernels and initrds are large.
	ls.serve(&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, adminLn, cfg.HTTP.TLSCert, cfg.HTTP.TLSKey)
	d.addr = adminLn.Addr().String()
	if bootLn != nil {
		// Plain HTTP whatever http's TLS settings: iPXE does not trust a
		// self-signed certificate, and scripts are bound to the boot.
		ls.serve(&http.Server{Handler: httpserver.BootOnly(boot), ReadHeaderTimeout: 10 * time.Second}, bootLn, "", "")
		d.bootAddr = bootLn.Addr().String()
	}
	close(d.listening)
	return ls, nil
}

// serve runs srv on ln, with TLS when cert is set.
func (ls *listeners) serve(srv *http.Server, ln net.Listener, cert, key string) {
	ls.servers = append(ls.servers, srv)
	go func() {
		var err error
		if cert != "" {
			err = srv.ServeTLS(ln, cert, key)
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			ls.errc <- err
		}
	}()
}

// shutdown stops every server, waiting up to 5 seconds for requests. ctx
// is the daemon's, usually ended by then: the wait keeps its values, not
// its cancellation.
func (ls *listeners) shutdown(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, srv := range ls.servers {
		_ = srv.Shutdown(ctx)
	}
}

// BootAddr waits until the listeners are bound and returns the boot
// listener's address: "" without boot.listen, or when ctx ends first.
func (d *Daemon) BootAddr(ctx context.Context) string {
	select {
	case <-d.listening:
		return d.bootAddr
	case <-ctx.Done():
		return ""
	}
}
