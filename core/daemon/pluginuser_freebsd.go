package daemon

// protocolCaps is empty on FreeBSD, which has no ambient capabilities: a
// protocol plugin under plugin.user binds ports 67 and 69 when the site
// allows it (mac_portacl(4) rules for its uid, or
// net.inet.ip.portrange.reservedhigh), and the DHCP address probe's raw
// ICMP socket needs root, so the probe is off under another user.
func protocolCaps() []uintptr { return nil }
