package authrpc

import (
	"context"
	"errors"

	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type server struct {
	dlsv1.UnimplementedAuthServer
	impl auth.Auth
}

func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, auth.ErrInvalidCredentials):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, auth.ErrUserExists):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, auth.ErrUserNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, auth.ErrUnimplemented):
		return status.Error(codes.Unimplemented, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func (s *server) admin() (auth.UserAdmin, error) {
	a, ok := s.impl.(auth.UserAdmin)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this auth plugin does not administer users")
	}
	return a, nil
}

func (s *server) Verify(ctx context.Context, r *dlsv1.VerifyRequest) (*dlsv1.Identity, error) {
	id, err := s.impl.Verify(ctx, r.GetUsername(), r.GetPassword())
	if err != nil {
		return nil, toStatus(err)
	}
	return &dlsv1.Identity{Username: id.Username, Groups: id.Groups}, nil
}

func (s *server) Lookup(ctx context.Context, r *dlsv1.LookupRequest) (*dlsv1.Identity, error) {
	id, err := s.impl.Lookup(ctx, r.GetUsername())
	if err != nil {
		return nil, toStatus(err)
	}
	return &dlsv1.Identity{Username: id.Username, Groups: id.Groups}, nil
}

func (s *server) CreateUser(ctx context.Context, r *dlsv1.UserRequest) (*dlsv1.Empty, error) {
	a, err := s.admin()
	if err != nil {
		return nil, err
	}
	return &dlsv1.Empty{}, toStatus(a.CreateUser(ctx, r.GetUsername(), r.GetPassword(), r.GetGroups()))
}

func (s *server) SetPassword(ctx context.Context, r *dlsv1.UserRequest) (*dlsv1.Empty, error) {
	a, err := s.admin()
	if err != nil {
		return nil, err
	}
	return &dlsv1.Empty{}, toStatus(a.SetPassword(ctx, r.GetUsername(), r.GetPassword()))
}

func (s *server) DeleteUser(ctx context.Context, r *dlsv1.UserRequest) (*dlsv1.Empty, error) {
	a, err := s.admin()
	if err != nil {
		return nil, err
	}
	return &dlsv1.Empty{}, toStatus(a.DeleteUser(ctx, r.GetUsername()))
}

func (s *server) ListUsers(ctx context.Context, _ *dlsv1.Empty) (*dlsv1.UserList, error) {
	a, err := s.admin()
	if err != nil {
		return nil, err
	}
	users, err := a.ListUsers(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &dlsv1.UserList{Users: make([]*dlsv1.Identity, len(users))}
	for i, u := range users {
		out.Users[i] = &dlsv1.Identity{Username: u.Username, Groups: u.Groups}
	}
	return out, nil
}
