package api

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/dls-project/dls/internal/pluginrpc/storagerpc"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
)

// servedStorage makes fakeStorage a storage plugin, so that the API can
// drive it through a real *storagerpc.Client over gRPC.
type servedStorage struct{ *fakeStorage }

var _ storage.Storage = servedStorage{}
var _ storage.Promoter = servedStorage{}

func (servedStorage) Info() base.Info                                        { return base.Info{Type: "fake", Version: "0"} }
func (servedStorage) NewConfig() any                                         { return nil }
func (servedStorage) Configure(context.Context, base.ConfigureRequest) error { return nil }
func (servedStorage) ListImages(context.Context) ([]storage.Image, error)    { return nil, nil }
func (servedStorage) CreateVolume(context.Context, storage.VolumeRequest) (storage.Volume, error) {
	return storage.Volume{}, storage.ErrInvalidName
}
func (servedStorage) DeleteVolume(context.Context, string) error            { return nil }
func (servedStorage) ListVolumes(context.Context) ([]storage.Volume, error) { return nil, nil }
func (servedStorage) Capacity(context.Context) (storage.Capacity, error) {
	return storage.Capacity{}, nil
}
func (servedStorage) Attach(context.Context, string) (volume.Descriptor, error) {
	return volume.Descriptor{}, storage.ErrNotFound
}
func (servedStorage) Detach(context.Context, string) error { return nil }

// TestThroughStorageClient: the API's answers to a storage plugin's errors
// survive the gRPC path (StorageResolver over a *storagerpc.Client).
func TestThroughStorageClient(t *testing.T) {
	e := newEnv(t)
	h := plugintest.Start(t, servedStorage{e.stor})
	client := h.Storage()
	e.api.deps.Storage = StorageResolver(func(context.Context, string) (*storagerpc.Client, error) { return client, nil })
	tok := e.login("alice").AccessToken

	var vs []versionJSON
	e.want(e.do("GET", "/images/win11/versions", tok, nil), http.StatusOK, &vs)
	if len(vs) != 1 || vs[0].Number != 1 || !vs[0].Current || vs[0].Created.IsZero() {
		t.Errorf("versions %+v", vs)
	}
	var v versionJSON
	e.mustCreateClient(tok, "pc1", "52:54:00:00:00:01")
	e.want(e.do("POST", "/images/win11/versions", tok, map[string]any{"action": "promote", "client": "pc1"}), http.StatusCreated, &v)
	if v.Number != 2 {
		t.Errorf("promote %+v", v)
	}
	e.stor.mu.Lock()
	e.stor.attached["pc1"] = true
	e.stor.mu.Unlock()
	e.wantError(e.do("POST", "/clients/pc1/volume", tok, map[string]any{"action": "reset"}), http.StatusConflict, "in use (attached)", "")
	e.wantError(e.do("DELETE", "/images/win11/versions/2", tok, nil), http.StatusConflict, "is current", "")
	// An upload reaches the plugin, over gRPC, as a file it can read.
	body := bytes.Repeat([]byte("disk"), 1024)
	e.want(e.do("POST", "/images/win11/versions", tok, body, "Content-Type", "application/octet-stream"), http.StatusCreated, &v)
	if v.Number != 3 || !bytes.Equal(e.stor.imported["win11"], body) {
		t.Errorf("upload: version %+v, plugin read %d bytes", v, len(e.stor.imported["win11"]))
	}
}
