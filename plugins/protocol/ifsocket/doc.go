// Package ifsocket holds the socket options a server on one interface
// needs, per platform: binding a UDP socket to an interface, or where the
// platform cannot (FreeBSD), the interface index whose packets alone the
// caller serves, and receive/send buffer sizes. The DHCP and DHCPv6
// plugins share it.
package ifsocket
