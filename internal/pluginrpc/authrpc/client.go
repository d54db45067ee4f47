package authrpc

import (
	"context"
	"fmt"

	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Client is the host's side of an auth plugin.
type Client struct {
	base *baserpc.Client
	rpc  dlsv1.AuthClient
}

// Base returns the plugin's Base client.
func (c *Client) Base() *baserpc.Client { return c.base }

func fromStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	switch status.Code(err) {
	case codes.Unauthenticated:
		return fmt.Errorf("%s: %w", op, auth.ErrInvalidCredentials)
	case codes.AlreadyExists:
		return fmt.Errorf("%s: %w", op, auth.ErrUserExists)
	case codes.NotFound:
		return fmt.Errorf("%s: %w", op, auth.ErrUserNotFound)
	case codes.Unimplemented:
		// Keep the plugin's word on what it lacks (a method, user admin).
		return fmt.Errorf("%s: %w (%s)", op, auth.ErrUnimplemented, status.Convert(err).Message())
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Verify calls the plugin's auth.Auth Verify.
func (c *Client) Verify(ctx context.Context, username, password string) (auth.Identity, error) {
	id, err := c.rpc.Verify(ctx, &dlsv1.VerifyRequest{Username: username, Password: password})
	if err != nil {
		return auth.Identity{}, fromStatus("verify user "+username, err)
	}
	return auth.Identity{Username: id.GetUsername(), Groups: id.GetGroups()}, nil
}

// Lookup calls the plugin's auth.Auth Lookup.
func (c *Client) Lookup(ctx context.Context, username string) (auth.Identity, error) {
	id, err := c.rpc.Lookup(ctx, &dlsv1.LookupRequest{Username: username})
	if err != nil {
		return auth.Identity{}, fromStatus("look up user "+username, err)
	}
	return auth.Identity{Username: id.GetUsername(), Groups: id.GetGroups()}, nil
}

// CreateUser calls the plugin's auth.UserAdmin method.
func (c *Client) CreateUser(ctx context.Context, username, password string, groups []string) error {
	_, err := c.rpc.CreateUser(ctx, &dlsv1.UserRequest{Username: username, Password: password, Groups: groups})
	return fromStatus("create user "+username, err)
}

// SetPassword calls the plugin's auth.UserAdmin method.
func (c *Client) SetPassword(ctx context.Context, username, password string) error {
	_, err := c.rpc.SetPassword(ctx, &dlsv1.UserRequest{Username: username, Password: password})
	return fromStatus("set password of user "+username, err)
}

// DeleteUser calls the plugin's auth.UserAdmin method.
func (c *Client) DeleteUser(ctx context.Context, username string) error {
	_, err := c.rpc.DeleteUser(ctx, &dlsv1.UserRequest{Username: username})
	return fromStatus("delete user "+username, err)
}

// ListUsers calls the plugin's auth.UserAdmin method.
func (c *Client) ListUsers(ctx context.Context) ([]auth.Identity, error) {
	r, err := c.rpc.ListUsers(ctx, &dlsv1.Empty{})
	if err != nil {
		return nil, fromStatus("list users", err)
	}
	out := make([]auth.Identity, len(r.GetUsers()))
	for i, u := range r.GetUsers() {
		out[i] = auth.Identity{Username: u.GetUsername(), Groups: u.GetGroups()}
	}
	return out, nil
}
