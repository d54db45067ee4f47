package protocolrpc

import (
	"context"
	"errors"

	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/dls-project/dls/sdk/protocol"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type server struct {
	dlsv1.UnimplementedProtocolServer
	impl protocol.Protocol
}

// toStatus gives protocol.ErrUnimplemented its gRPC code; other errors
// cross as they are (gRPC's Unknown, with their message).
func toStatus(err error) error {
	if errors.Is(err, protocol.ErrUnimplemented) {
		return status.Error(codes.Unimplemented, err.Error())
	}
	return err
}

func (s *server) Start(ctx context.Context, _ *dlsv1.Empty) (*dlsv1.Empty, error) {
	if err := s.impl.Start(ctx); err != nil {
		return nil, toStatus(err)
	}
	return &dlsv1.Empty{}, nil
}

func (s *server) Status(ctx context.Context, _ *dlsv1.Empty) (*dlsv1.ProtocolStatus, error) {
	st, err := s.impl.Status(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &dlsv1.ProtocolStatus{Serving: st.Serving, Listeners: st.Listeners, Message: st.Message}, nil
}
