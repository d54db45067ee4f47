package grants

import (
	"context"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/volume"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Host service methods, the "method" label of the denied counter.
const (
	MethodLookup = "Clients.Lookup"
	MethodWatch  = "Clients.Watch"
	MethodScript = "Clients.Script"
	MethodReport = "Events.Report"
	MethodAttach = "Volumes.Attach"
	MethodDetach = "Volumes.Detach"
	MethodLoad   = "Leases.Load"
	MethodCommit = "Leases.Commit"
)

// Metrics counts refused calls.
type Metrics struct {
	denied *prometheus.CounterVec
}

// NewMetrics registers dls_host_service_denied_total on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{denied: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dls_host_service_denied_total",
		Help: "Host service calls refused (PermissionDenied) because the calling plugin instance's grant does not include them; method is Service.Method.",
	}, []string{"plugin", "method"})}
	if err := reg.Register(m.denied); err != nil {
		return nil, err
	}
	return m, nil
}

// Plugin names the instance a guard serves, for refusals.
type Plugin struct {
	// Name is the instance name; Kind and Type its block's kind and type.
	Name, Kind, Type string
}

// Guard returns svc as the instance p may see it with grant g: every
// service is present (so a refused call is PermissionDenied, not
// Unimplemented), calls outside g are refused and counted on m (nil: not
// counted), and without "secrets" Lookup's decisions carry no CHAP
// secrets.
func Guard(svc host.Services, p Plugin, g Set, m *Metrics) host.Services {
	gd := &guard{p: p, g: g, m: m, svc: svc}
	return host.Services{Clients: clients{gd}, Events: events{gd}, Volumes: volumes{gd}, Leases: leases{gd}}
}

type guard struct {
	p   Plugin
	g   Set
	m   *Metrics
	svc host.Services
}

// allow returns nil when the grant includes name and the implementation
// exists, a counted PermissionDenied otherwise.
func (gd *guard) allow(name, method string, impl any) error {
	if gd.g.Has(name) && impl != nil {
		return nil
	}
	if gd.m != nil {
		gd.m.denied.WithLabelValues(gd.p.Name, method).Inc()
	}
	return status.Errorf(codes.PermissionDenied, "plugin %s (%s %q) may not call %s: its host_services grant is %s, and %s needs %q",
		gd.p.Name, gd.p.Kind, gd.p.Type, method, gd.g, method, name)
}

type clients struct{ gd *guard }

func (c clients) Lookup(ctx context.Context, q host.Query) (host.Decision, error) {
	if err := c.gd.allow(Lookup, MethodLookup, c.gd.svc.Clients); err != nil {
		return host.Decision{}, err
	}
	d, err := c.gd.svc.Clients.Lookup(ctx, q)
	if err != nil {
		return host.Decision{}, err
	}
	if !c.gd.g.secrets {
		d = withoutSecrets(d)
	}
	return d, nil
}

// withoutSecrets is d as a plugin without "secrets" sees it: the CHAP
// secrets and the CHAP user (which only says the client has secrets) gone.
func withoutSecrets(d host.Decision) host.Decision {
	d.CHAPUser, d.CHAPSecret, d.CHAPMutualSecret = "", "", ""
	return d
}

// Watch implements host.ClientWatcher under the "lookup" grant: it pushes
// what Lookup answers, and strips the same secrets. Services whose Clients
// cannot watch answer Unimplemented, so the plugin falls back to Lookup.
func (c clients) Watch(ctx context.Context, fn func(host.ClientUpdate) error) error {
	if err := c.gd.allow(Lookup, MethodWatch, c.gd.svc.Clients); err != nil {
		return err
	}
	w, ok := c.gd.svc.Clients.(host.ClientWatcher)
	if !ok {
		return status.Error(codes.Unimplemented, "this host does not push client tables")
	}
	if c.gd.g.secrets {
		return w.Watch(ctx, fn)
	}
	return w.Watch(ctx, func(u host.ClientUpdate) error {
		for i := range u.Set {
			u.Set[i].Decision = withoutSecrets(u.Set[i].Decision)
		}
		return fn(u)
	})
}

func (c clients) Script(ctx context.Context, q host.ScriptQuery) (host.Script, error) {
	if err := c.gd.allow(Scripts, MethodScript, c.gd.svc.Clients); err != nil {
		return host.Script{}, err
	}
	return c.gd.svc.Clients.Script(ctx, q)
}

type events struct{ gd *guard }

func (e events) Report(ctx context.Context, evs []host.Event) error {
	if err := e.gd.allow(Events, MethodReport, e.gd.svc.Events); err != nil {
		return err
	}
	return e.gd.svc.Events.Report(ctx, evs)
}

type volumes struct{ gd *guard }

func (v volumes) Attach(ctx context.Context, client string) (volume.Descriptor, error) {
	if err := v.gd.allow(Volumes, MethodAttach, v.gd.svc.Volumes); err != nil {
		return volume.Descriptor{}, err
	}
	return v.gd.svc.Volumes.Attach(ctx, client)
}

func (v volumes) Detach(ctx context.Context, client string) error {
	if err := v.gd.allow(Volumes, MethodDetach, v.gd.svc.Volumes); err != nil {
		return err
	}
	return v.gd.svc.Volumes.Detach(ctx, client)
}

type leases struct{ gd *guard }

func (l leases) Load(ctx context.Context, pool string) ([]host.Lease, error) {
	if err := l.gd.allow(Leases, MethodLoad, l.gd.svc.Leases); err != nil {
		return nil, err
	}
	return l.gd.svc.Leases.Load(ctx, pool)
}

func (l leases) Commit(ctx context.Context, ls []host.Lease) ([]host.CommitResult, error) {
	if err := l.gd.allow(Leases, MethodCommit, l.gd.svc.Leases); err != nil {
		return nil, err
	}
	return l.gd.svc.Leases.Commit(ctx, ls)
}
