package main

import (
	"errors"
	"slices"
	"testing"

	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/plugintest"
)

var users = map[string]any{"users": map[string]any{"alice": "wonderland"}, "group": "operator"}

func TestVerifyAndLookup(t *testing.T) {
	c := plugintest.Start(t, &Static{}, plugintest.WithConfig(users)).Auth()
	ctx := t.Context()

	id, err := c.Verify(ctx, "alice", "wonderland")
	if err != nil || id.Username != "alice" || !slices.Equal(id.Groups, []string{"operator"}) {
		t.Fatalf("Verify(alice, right password) = %+v, %v; want alice in [operator]", id, err)
	}
	for _, who := range [][2]string{{"alice", "wonderlan"}, {"alice", ""}, {"bob", "wonderland"}, {"bob", ""}} {
		if _, err := c.Verify(ctx, who[0], who[1]); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Errorf("Verify(%q, %q) = %v, want ErrInvalidCredentials", who[0], who[1], err)
		}
	}
	if id, err := c.Lookup(ctx, "alice"); err != nil || id.Username != "alice" {
		t.Errorf("Lookup(alice) = %+v, %v", id, err)
	}
	if _, err := c.Lookup(ctx, "bob"); !errors.Is(err, auth.ErrUserNotFound) {
		t.Errorf("Lookup(bob) = %v, want ErrUserNotFound", err)
	}
}

func TestEmptyPasswordIsAConfigError(t *testing.T) {
	h := plugintest.Start(t, &Static{}, plugintest.WithoutConfigure())
	errs, err := h.Configure(map[string]any{"users": map[string]any{"alice": ""}})
	if err != nil || len(errs) != 1 || errs[0].Path != "users" {
		t.Fatalf("Configure(alice with no password) = %v, %v; want one error at users", errs, err)
	}
	if _, err := h.Auth().Verify(t.Context(), "alice", ""); !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("Verify after a refused config = %v, want ErrInvalidCredentials", err)
	}
}
