package daemon

import "golang.org/x/sys/unix"

// protocolCaps are the capabilities a protocol plugin keeps when it runs
// as plugin.user: DHCP binds port 67 and sends raw ICMP probes, TFTP binds
// port 69. Storage and auth plugins keep none.
func protocolCaps() []uintptr {
	return []uintptr{unix.CAP_NET_BIND_SERVICE, unix.CAP_NET_RAW}
}
