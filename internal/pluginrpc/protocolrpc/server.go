package protocolrpc

import (
	"context"

	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/dls-project/dls/sdk/protocol"
)

type server struct {
	dlsv1.UnimplementedProtocolServer
	impl protocol.Protocol
}

func (s *server) Start(ctx context.Context, _ *dlsv1.Empty) (*dlsv1.Empty, error) {
	if err := s.impl.Start(ctx); err != nil {
		return nil, err
	}
	return &dlsv1.Empty{}, nil
}

func (s *server) Status(ctx context.Context, _ *dlsv1.Empty) (*dlsv1.ProtocolStatus, error) {
	st, err := s.impl.Status(ctx)
	if err != nil {
		return nil, err
	}
	return &dlsv1.ProtocolStatus{Serving: st.Serving, Listeners: st.Listeners, Message: st.Message}, nil
}
