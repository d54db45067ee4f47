package baserpc

import (
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"google.golang.org/grpc"
)

// RegisterServer registers the Base service on s.
func RegisterServer(s *grpc.Server, srv *Server) {
	dlsv1.RegisterBaseServer(s, srv)
}
