// Package hostrpc carries the host services of sdk/host (Clients, Events,
// Volumes, Leases) over the connection the host offers each plugin through
// the go-plugin broker: the host side serves them with RegisterServer, the
// plugin side calls them through NewClient. Vendors never see it; they get a
// host.Services in Configure.
package hostrpc

import (
	"context"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/dls-project/dls/sdk/volume"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RegisterServer serves svc's non-nil services on s. The host uses it on the
// broker connection it offers each plugin; plugintest uses it for fakes.
func RegisterServer(s *grpc.Server, svc host.Services) {
	if svc.Clients != nil {
		dlsv1.RegisterClientsServer(s, &clientsServer{impl: svc.Clients})
	}
	if svc.Events != nil {
		dlsv1.RegisterEventsServer(s, &eventsServer{impl: svc.Events})
	}
	if svc.Volumes != nil {
		dlsv1.RegisterVolumesServer(s, &volumesServer{impl: svc.Volumes})
	}
	if svc.Leases != nil {
		dlsv1.RegisterLeasesServer(s, &leasesServer{impl: svc.Leases})
	}
}

type clientsServer struct {
	dlsv1.UnimplementedClientsServer
	impl host.Clients
}

func (s *clientsServer) Lookup(ctx context.Context, q *dlsv1.ClientQuery) (*dlsv1.BootDecision, error) {
	if q.GetArch() > 0xffff {
		return nil, status.Errorf(codes.InvalidArgument, "arch %d out of range", q.GetArch())
	}
	d, err := s.impl.Lookup(ctx, host.Query{
		MAC: q.GetMac(), Initiator: q.GetInitiator(), Target: q.GetTarget(), Arch: uint16(q.GetArch()),
		UserClass: q.GetUserClass(), VendorClass: q.GetVendorClass(), Peer: q.GetPeer(),
	})
	if err != nil {
		return nil, err
	}
	return decisionToProto(d), nil
}

func (s *clientsServer) Script(ctx context.Context, q *dlsv1.ScriptQuery) (*dlsv1.ScriptReply, error) {
	r, err := s.impl.Script(ctx, host.ScriptQuery{MAC: q.GetMac(), Peer: q.GetPeer(), Platform: q.GetPlatform()})
	if err != nil {
		return nil, err
	}
	return &dlsv1.ScriptReply{Found: r.Found, Client: r.Client, Script: r.Body}, nil
}

// watchChunk bounds the entries of one Watch message, so that a snapshot
// of many clients stays far below gRPC's 4 MiB message limit.
const watchChunk = 1000

// Watch streams impl's client table when impl is a host.ClientWatcher; a
// snapshot goes out in chunks of watchChunk entries (reset on the first,
// more on all but the last), a change in one message.
func (s *clientsServer) Watch(_ *dlsv1.WatchRequest, stream dlsv1.Clients_WatchServer) error {
	w, ok := s.impl.(host.ClientWatcher)
	if !ok {
		return status.Error(codes.Unimplemented, "this host does not push client tables")
	}
	return w.Watch(stream.Context(), func(u host.ClientUpdate) error {
		for _, m := range updateToProto(u, watchChunk) {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
		return nil
	})
}

// updateToProto splits u into messages of at most chunk entries.
func updateToProto(u host.ClientUpdate, chunk int) []*dlsv1.ClientUpdate {
	var out []*dlsv1.ClientUpdate
	set := u.Set
	for first := true; first || len(set) > 0; first = false {
		n := min(chunk, len(set))
		m := &dlsv1.ClientUpdate{Version: u.Version, Reset_: u.Full && first, UnknownClients: u.UnknownClients,
			Set: make([]*dlsv1.ClientEntry, n)}
		for i, e := range set[:n] {
			m.Set[i] = &dlsv1.ClientEntry{Mac: e.MAC, Decision: decisionToProto(e.Decision)}
		}
		if first {
			m.Removed = u.Removed
		}
		set = set[n:]
		out = append(out, m)
	}
	for _, m := range out[:len(out)-1] {
		m.More = true
	}
	return out
}

type eventsServer struct {
	dlsv1.UnimplementedEventsServer
	impl host.Events
}

func (s *eventsServer) Report(ctx context.Context, b *dlsv1.EventBatch) (*dlsv1.Empty, error) {
	if len(b.GetEvents()) > host.MaxEventBatch {
		return nil, status.Errorf(codes.InvalidArgument, "event batch of %d exceeds %d", len(b.GetEvents()), host.MaxEventBatch)
	}
	events := make([]host.Event, len(b.GetEvents()))
	now := time.Now()
	for i, e := range b.GetEvents() {
		t := now
		if e.GetTimeUnixNano() != 0 {
			t = time.Unix(0, e.GetTimeUnixNano())
		}
		events[i] = host.Event{
			Type: e.GetType(), MAC: e.GetMac(), Client: e.GetClient(), Address: e.GetAddress(),
			Time: t, Attrs: e.GetAttrs(),
		}
	}
	if err := s.impl.Report(ctx, events); err != nil {
		return nil, err
	}
	return &dlsv1.Empty{}, nil
}

type volumesServer struct {
	dlsv1.UnimplementedVolumesServer
	impl host.Volumes
}

func (s *volumesServer) Attach(ctx context.Context, r *dlsv1.AttachRequest) (*dlsv1.VolumeDescriptor, error) {
	d, err := s.impl.Attach(ctx, r.GetClient())
	if err != nil {
		return nil, err
	}
	return volume.ToProto(d), nil
}

func (s *volumesServer) Detach(ctx context.Context, r *dlsv1.AttachRequest) (*dlsv1.Empty, error) {
	if err := s.impl.Detach(ctx, r.GetClient()); err != nil {
		return nil, err
	}
	return &dlsv1.Empty{}, nil
}

type leasesServer struct {
	dlsv1.UnimplementedLeasesServer
	impl host.Leases
}

func (s *leasesServer) Load(ctx context.Context, r *dlsv1.LoadLeasesRequest) (*dlsv1.LeaseList, error) {
	ls, err := s.impl.Load(ctx, r.GetPool())
	if err != nil {
		return nil, err
	}
	out := &dlsv1.LeaseList{Leases: make([]*dlsv1.Lease, len(ls))}
	for i, l := range ls {
		out.Leases[i] = leaseToProto(l)
	}
	return out, nil
}

func (s *leasesServer) Commit(ctx context.Context, b *dlsv1.LeaseBatch) (*dlsv1.CommitResult, error) {
	ls := make([]host.Lease, len(b.GetLeases()))
	for i, l := range b.GetLeases() {
		ls[i] = leaseFromProto(l)
	}
	rs, err := s.impl.Commit(ctx, ls)
	if err != nil {
		return nil, err
	}
	out := &dlsv1.CommitResult{Ok: make([]bool, len(rs)), Holder: make([]string, len(rs))}
	for i, r := range rs {
		out.Ok[i], out.Holder[i] = r.OK, r.Holder
	}
	return out, nil
}
