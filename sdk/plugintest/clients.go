package plugintest

import (
	"github.com/dls-project/dls/internal/pluginrpc/authrpc"
	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/internal/pluginrpc/protocolrpc"
	"github.com/dls-project/dls/internal/pluginrpc/storagerpc"
)

// The host's clients of a plugin under test. They live with the host's
// plugin wiring, out of the kind packages' documentation; these names let a
// test hold them. Each method is one gRPC call, and errors come back the way
// they reach the host: a kind's sentinel error the plugin wrapped still
// matches with errors.Is.
type (
	// BaseClient calls the Base service every plugin serves: Info,
	// ConfigSchema, Configure, DescribeMetrics, CollectMetrics, Health and
	// Stop.
	BaseClient = baserpc.Client
	// ProtocolClient calls a protocol plugin: Start, Stop and Status, as in
	// protocol.Protocol.
	ProtocolClient = protocolrpc.Client
	// AuthClient calls an auth plugin: Verify and Lookup as in auth.Auth,
	// and CreateUser, SetPassword, DeleteUser and ListUsers as in
	// auth.UserAdmin (Unimplemented when the plugin does not offer them).
	AuthClient = authrpc.Client
	// StorageClient calls a storage plugin: the operations of
	// storage.Storage and storage.Promoter.
	StorageClient = storagerpc.Client
)
