// Package baserpc carries the Base service every plugin serves, whatever its
// kind (sdk/base): the plugin side's Server adapts a base.Plugin to gRPC, the
// host side's Client calls it, and GRPCPlugin is the go-plugin glue each kind
// builds on. Vendors never see it; sdk.Serve, sdk/plugintest and the host's
// supervisor do.
package baserpc
