package hostrpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/dls-project/dls/sdk/volume"
	"google.golang.org/grpc"
)

// NewClient returns host.Services backed by the host's gRPC services on conn.
func NewClient(conn grpc.ClientConnInterface) host.Services {
	return host.Services{
		Clients: &clientsClient{rpc: dlsv1.NewClientsClient(conn)},
		Events:  &eventsClient{rpc: dlsv1.NewEventsClient(conn)},
		Volumes: &volumesClient{rpc: dlsv1.NewVolumesClient(conn)},
		Leases:  &leasesClient{rpc: dlsv1.NewLeasesClient(conn)},
	}
}

type clientsClient struct{ rpc dlsv1.ClientsClient }

func (c *clientsClient) Lookup(ctx context.Context, q host.Query) (host.Decision, error) {
	d, err := c.rpc.Lookup(ctx, &dlsv1.ClientQuery{
		Mac: q.MAC, Initiator: q.Initiator, Target: q.Target, Arch: uint32(q.Arch),
		UserClass: q.UserClass, VendorClass: q.VendorClass, Peer: q.Peer,
	})
	if err != nil {
		return host.Decision{}, fmt.Errorf("host clients lookup: %w", err)
	}
	return decisionFromProto(d), nil
}

func (c *clientsClient) Script(ctx context.Context, q host.ScriptQuery) (host.Script, error) {
	r, err := c.rpc.Script(ctx, &dlsv1.ScriptQuery{Mac: q.MAC, Peer: q.Peer, Platform: q.Platform})
	if err != nil {
		return host.Script{}, fmt.Errorf("host boot script of %s for %s: %w", q.MAC, q.Peer, err)
	}
	return host.Script{Found: r.GetFound(), Client: r.GetClient(), Body: r.GetScript()}, nil
}

// Watch implements host.ClientWatcher over Clients.Watch, putting the
// chunks of a snapshot back together: fn sees one Full update per
// snapshot, and one update per change.
func (c *clientsClient) Watch(ctx context.Context, fn func(host.ClientUpdate) error) error {
	stream, err := c.rpc.Watch(ctx, &dlsv1.WatchRequest{})
	if err != nil {
		return fmt.Errorf("host clients watch: %w", err)
	}
	var pending *host.ClientUpdate // a snapshot still arriving
	for {
		m, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the host never ends a watch on its own
			}
			return fmt.Errorf("host clients watch: %w", err)
		}
		u := pending
		if u == nil || m.GetReset_() {
			u = &host.ClientUpdate{Full: m.GetReset_(), Removed: m.GetRemoved()}
		} else if m.GetVersion() != u.Version {
			return fmt.Errorf("host clients watch: snapshot of version %d continued by version %d", u.Version, m.GetVersion())
		}
		u.Version, u.UnknownClients = m.GetVersion(), m.GetUnknownClients()
		for _, e := range m.GetSet() {
			u.Set = append(u.Set, host.ClientDecision{MAC: e.GetMac(), Decision: decisionFromProto(e.GetDecision())})
		}
		if m.GetMore() {
			pending = u
			continue
		}
		pending = nil
		if err := fn(*u); err != nil {
			return err
		}
	}
}

type eventsClient struct{ rpc dlsv1.EventsClient }

func (c *eventsClient) Report(ctx context.Context, events []host.Event) error {
	b := &dlsv1.EventBatch{Events: make([]*dlsv1.Event, len(events))}
	for i, e := range events {
		var ts int64 // zero: "now", the host stamps it
		if !e.Time.IsZero() {
			ts = e.Time.UnixNano()
		}
		b.Events[i] = &dlsv1.Event{
			Type: e.Type, Mac: e.MAC, Client: e.Client, Address: e.Address,
			TimeUnixNano: ts, Attrs: e.Attrs,
		}
	}
	if _, err := c.rpc.Report(ctx, b); err != nil {
		return fmt.Errorf("host events report: %w", err)
	}
	return nil
}

type volumesClient struct{ rpc dlsv1.VolumesClient }

func (c *volumesClient) Attach(ctx context.Context, client string) (volume.Descriptor, error) {
	d, err := c.rpc.Attach(ctx, &dlsv1.AttachRequest{Client: client})
	if err != nil {
		return volume.Descriptor{}, fmt.Errorf("host attach volume of client %s: %w", client, err)
	}
	return volume.FromProto(d), nil
}

func (c *volumesClient) Detach(ctx context.Context, client string) error {
	if _, err := c.rpc.Detach(ctx, &dlsv1.AttachRequest{Client: client}); err != nil {
		return fmt.Errorf("host detach volume of client %s: %w", client, err)
	}
	return nil
}

type leasesClient struct{ rpc dlsv1.LeasesClient }

func (c *leasesClient) Load(ctx context.Context, pool string) ([]host.Lease, error) {
	l, err := c.rpc.Load(ctx, &dlsv1.LoadLeasesRequest{Pool: pool})
	if err != nil {
		return nil, fmt.Errorf("host load leases of pool %q: %w", pool, err)
	}
	out := make([]host.Lease, len(l.GetLeases()))
	for i, x := range l.GetLeases() {
		out[i] = leaseFromProto(x)
	}
	return out, nil
}

func (c *leasesClient) Commit(ctx context.Context, leases []host.Lease) ([]host.CommitResult, error) {
	b := &dlsv1.LeaseBatch{Leases: make([]*dlsv1.Lease, len(leases))}
	for i, l := range leases {
		b.Leases[i] = leaseToProto(l)
	}
	r, err := c.rpc.Commit(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("host commit %d leases: %w", len(leases), err)
	}
	if len(r.GetOk()) != len(leases) {
		return nil, fmt.Errorf("host commit %d leases: %d answers", len(leases), len(r.GetOk()))
	}
	out := make([]host.CommitResult, len(leases))
	for i := range out {
		out[i].OK = r.GetOk()[i]
		if i < len(r.GetHolder()) {
			out[i].Holder = r.GetHolder()[i]
		}
	}
	return out, nil
}

func decisionFromProto(d *dlsv1.BootDecision) host.Decision {
	return host.Decision{
		Known: d.GetKnown(), Client: d.GetClient(), BootFile: d.GetBootFile(),
		NextServer: d.GetNextServer(), ScriptURL: d.GetScriptUrl(),
		TargetIQN: d.GetTargetIqn(), InitiatorIQN: d.GetInitiatorIqn(), Initiators: d.GetInitiators(),
		CHAPUser: d.GetChapUser(), CHAPSecret: d.GetChapSecret(), CHAPMutualSecret: d.GetChapMutualSecret(),
		ReservedAddress: d.GetReservedAddress(), AllowedAddresses: d.GetAllowedAddresses(),
		Loader: d.GetLoader(),
	}
}

func decisionToProto(d host.Decision) *dlsv1.BootDecision {
	return &dlsv1.BootDecision{
		Known: d.Known, Client: d.Client, BootFile: d.BootFile,
		NextServer: d.NextServer, ScriptUrl: d.ScriptURL,
		TargetIqn: d.TargetIQN, InitiatorIqn: d.InitiatorIQN, Initiators: d.Initiators,
		ChapUser: d.CHAPUser, ChapSecret: d.CHAPSecret, ChapMutualSecret: d.CHAPMutualSecret,
		ReservedAddress: d.ReservedAddress, AllowedAddresses: d.AllowedAddresses,
		Loader: d.Loader,
	}
}

func leaseFromProto(l *dlsv1.Lease) host.Lease {
	return host.Lease{
		Pool: l.GetPool(), Address: l.GetAddress(), MAC: l.GetMac(),
		Expires: time.Unix(l.GetExpiresUnix(), 0), State: l.GetState(), Hostname: l.GetHostname(),
	}
}

func leaseToProto(l host.Lease) *dlsv1.Lease {
	return &dlsv1.Lease{
		Pool: l.Pool, Address: l.Address, Mac: l.MAC,
		ExpiresUnix: l.Expires.Unix(), State: l.State, Hostname: l.Hostname,
	}
}
