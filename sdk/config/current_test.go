package config_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
)

type currentConfig struct {
	Users map[string]string `hcl:"users,optional"`
	Group string            `hcl:"group,optional"`
}

func (c *currentConfig) SetDefaults() { c.Group = "viewer" }

func (c *currentConfig) Validate() error {
	for name, pw := range c.Users {
		if pw == "" {
			return config.Errorf("users", "user %q has an empty password", name)
		}
	}
	return nil
}

type currentPlugin struct{ config.Current[currentConfig] }

func TestCurrentDefaultsBeforeConfigure(t *testing.T) {
	var p currentPlugin
	nc, ok := p.NewConfig().(*currentConfig)
	if !ok || nc.Group != "viewer" {
		t.Fatalf("NewConfig() = %#v, want a *currentConfig with SetDefaults applied", p.NewConfig())
	}
	if got := p.Config(); got.Group != "viewer" || got.Users != nil {
		t.Errorf("Config() before Configure = %+v, want the defaults", got)
	}
	if got := p.Request(); got.Instance != "" || got.Config != nil {
		t.Errorf("Request() before Configure = %+v, want the zero request", got)
	}
}

func TestCurrentKeepsWhatPassesValidate(t *testing.T) {
	var p currentPlugin
	good := &currentConfig{Users: map[string]string{"alice": "pw"}, Group: "operator"}
	if err := p.Configure(t.Context(), base.ConfigureRequest{Config: good, Instance: "static"}); err != nil {
		t.Fatalf("Configure(good) = %v", err)
	}
	if p.Config() != good || p.Request().Instance != "static" {
		t.Fatalf("after Configure(good): Config() = %p, Request().Instance = %q; want %p, static", p.Config(), p.Request().Instance, good)
	}

	bad := &currentConfig{Users: map[string]string{"bob": ""}}
	err := p.Configure(t.Context(), base.ConfigureRequest{Config: bad, Instance: "other"})
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Path != "users" {
		t.Fatalf("Configure(empty password) = %v, want a *config.Error at users", err)
	}
	if p.Config() != good || p.Request().Instance != "static" {
		t.Errorf("a refused Configure replaced the config: %+v, %q", p.Config(), p.Request().Instance)
	}
}

func TestCurrentRefusesAnotherType(t *testing.T) {
	var p currentPlugin
	if err := p.Configure(t.Context(), base.ConfigureRequest{Config: &asConfig{}}); err == nil {
		t.Fatal("Configure with a config of another type succeeded")
	}
	if err := p.Configure(t.Context(), base.ConfigureRequest{}); err == nil {
		t.Fatal("Configure without a config succeeded")
	}
}

// Readers never see a half-applied config while reloads run (go test -race).
func TestCurrentConcurrentReload(t *testing.T) {
	var p currentPlugin
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 100 {
				cfg := &currentConfig{Users: map[string]string{"u": "pw"}, Group: string(rune('a' + i))}
				if err := p.Configure(t.Context(), base.ConfigureRequest{Config: cfg}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 100 {
				if c := p.Config(); c.Group == "" {
					t.Error("Config() returned a config without a group")
					return
				}
			}
		}()
	}
	wg.Wait()
}
