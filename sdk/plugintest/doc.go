// Package plugintest runs a DLS plugin inside a Go test, through the same
// gRPC path the host uses, and holds plugins of each kind to the checks the
// host relies on.
//
// Start serves a plugin value in the test process with go-plugin's test
// (reattach) mode, connects to it as the host would, offers it a FakeHost
// for the host services, and configures it:
//
//	func TestMyStorage(t *testing.T) {
//		h := plugintest.Start(t, mystorage.New(),
//			plugintest.WithConfig(map[string]any{"root": "disks"}))
//		st := h.Storage()
//		// ... calls the host would make, through st
//	}
//
// RunStorageSuite is the conformance suite every storage plugin must pass:
// imports, versions, clone isolation, reset, promote, capacity, restarts,
// concurrent clones and every refusal the host relies on.
// StorageInProcess gives it a plugin it can restart on the same data:
//
//	func TestConformance(t *testing.T) {
//		start, restart := plugintest.StorageInProcess(
//			func() storage.Storage { return mystorage.New() },
//			plugintest.WithConfig(map[string]any{"root": "disks"}))
//		plugintest.RunStorageSuite(t, plugintest.StorageSuite{Start: start, Restart: restart})
//	}
//
// Every call crosses a real gRPC connection: the plugin's errors reach the
// test the way they reach the host (a storage.ErrInUse stays matchable
// with errors.Is only if the plugin wrapped it), config is sent as JSON and
// decoded by the SDK, host events travel over the go-plugin broker.
//
// What this package does not cover: reattach mode cannot use go-plugin's
// AutoMTLS or SecureConfig (the sha256 check), and the plugin runs in the
// test's process, so the handshake cookie, the restricted environment, the
// parent watchdog and process supervision are not exercised. The host's
// subprocess tests cover those with real plugin binaries.
package plugintest
