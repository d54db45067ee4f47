package dhcpd

import (
	"time"

	"github.com/dls-project/dls/sdk/host/clienttable"
	"github.com/dls-project/dls/sdk/host/leasecommit"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a message is dropped or refused (label reason of
// dls_dhcp_errors_total).
const (
	reasonMalformed      = "malformed"            // does not parse as DHCP
	reasonTruncated      = "truncated"            // shorter than a BOOTP header
	reasonOversized      = "oversized"            // longer than maxPacket
	reasonWrongOp        = "wrong_op"             // not a BOOTREQUEST
	reasonHardware       = "unsupported_hardware" // not Ethernet with a 6-byte MAC
	reasonBOOTP          = "bootp"                // no DHCP message type
	reasonUnsupported    = "unsupported_type"     // a message type servers do not take
	reasonOtherServer    = "other_server"         // a REQUEST or RELEASE naming another server
	reasonNoPool         = "no_pool"              // no pool serves the client's network
	reasonExhausted      = "pool_exhausted"       // no address left
	reasonUnknownClient  = "unknown_client"       // proxy and reservation modes: the host does not know it
	reasonUnknownLimit   = refusedUnknownLimit    // full mode: the pool's addresses for unknown MACs are all held
	reasonNoReservation  = "no_reservation"       // reservation mode: known, but no reserved address
	reasonReservedInUse  = "reservation_in_use"   // reservation mode: another MAC holds the address
	reasonRateLimited    = "rate_limited"         // its MAC sent too many packets
	reasonNotPXE         = "not_pxe"              // proxy mode: not boot firmware
	reasonNoBootFile     = "no_boot_file"         // firmware the host gave nothing to boot
	reasonLookupFailed   = "lookup_failed"        // the host did not answer who the client is
	reasonCommitFailed   = "commit_failed"        // the host did not store the lease: no ACK
	reasonCommitQueue    = "commit_queue_full"    // too many leases waiting to be stored
	reasonConflict       = "lease_conflict"       // another DLS host holds the address: NAK
	reasonAddressInUse   = "address_in_use"       // the ICMP probe got an answer
	reasonSendFailed     = "send_failed"          // the reply could not be sent
	reasonNotOurs        = nakNotOurs             // NAK: the address is not of the client's network
	reasonAddressTaken   = nakTaken               // NAK: another MAC holds it
	reasonReservedOther  = nakReserved            // NAK: reserved for another MAC
	reasonReservationMov = nakReservation         // NAK: the client has a reservation elsewhere
)

// errorReasons are created at start so every series exists from the
// first scrape.
var errorReasons = []string{
	reasonMalformed, reasonTruncated, reasonOversized, reasonWrongOp, reasonHardware, reasonBOOTP,
	reasonUnsupported, reasonOtherServer, reasonNoPool, reasonExhausted, reasonUnknownClient, reasonUnknownLimit,
	reasonNoReservation, reasonReservedInUse, reasonRateLimited, reasonNotPXE, reasonNoBootFile,
	reasonLookupFailed, reasonCommitFailed, reasonCommitQueue, reasonConflict, reasonAddressInUse,
	reasonSendFailed, reasonNotOurs, reasonAddressTaken, reasonReservedOther, reasonReservationMov,
}

// Reply types (label type of the replies and latency families).
const (
	replyOffer = "offer"
	replyAck   = "ack"
	replyNak   = "nak"
)

// dhcpMetrics are the plugin's metric families, with the hot series
// resolved once.
type dhcpMetrics struct {
	requests   *prometheus.CounterVec
	errors     *prometheus.CounterVec
	replies    *prometheus.CounterVec
	poolSize   *prometheus.GaugeVec
	poolActive *prometheus.GaugeVec
	latency    *prometheus.HistogramVec
	commit     leasecommit.Metrics
	table      clienttable.Metrics // lookups asked of the host, the pushed table's gauges

	byType  [9]prometheus.Counter // by DHCP message type; 0 is BOOTP (none)
	other   prometheus.Counter
	reasons map[string]prometheus.Counter
	sent    map[string]prometheus.Counter
	lat     map[string]prometheus.Observer
}

func newMetrics(reg *metrics.Registry) *dhcpMetrics {
	m := &dhcpMetrics{
		requests: reg.Counter("dls_dhcp_requests_total", "DHCP messages received from clients, by message type.", "type"),
		errors:   reg.Counter("dls_dhcp_errors_total", "DHCP messages dropped or refused, by reason.", "reason"),
		replies:  reg.Counter("dls_dhcp_replies_total", "DHCP replies sent, by message type.", "type"),
		poolSize: reg.Gauge("dls_dhcp_pool_addresses", "Addresses a pool can lease.", "pool"),
		poolActive: reg.Gauge("dls_dhcp_pool_active_leases",
			"Addresses of a pool leased and not expired.", "pool"),
		latency: reg.Histogram("dls_dhcp_reply_duration_seconds",
			"Time from a request's arrival to its reply leaving (an ACK waits for its lease to be stored), by reply type.",
			[]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}, "type"),
		reasons: map[string]prometheus.Counter{},
		sent:    map[string]prometheus.Counter{},
		lat:     map[string]prometheus.Observer{},
	}
	m.commit = leasecommit.NewMetrics(reg, "dls_dhcp_lease_commit_duration_seconds", "dls_dhcp_lease_commit_batch_size")
	m.table = clienttable.NewMetrics(reg, "dls_dhcp")
	for t := dhcpv4.MessageType(0); int(t) < len(m.byType); t++ {
		m.byType[t] = m.requests.WithLabelValues(typeLabel(t))
	}
	m.other = m.requests.WithLabelValues("other")
	for _, r := range errorReasons {
		m.reasons[r] = m.errors.WithLabelValues(r)
	}
	for _, t := range []string{replyOffer, replyAck, replyNak} {
		m.sent[t] = m.replies.WithLabelValues(t)
		m.lat[t] = m.latency.WithLabelValues(t)
	}
	return m
}

func typeLabel(t dhcpv4.MessageType) string {
	switch t {
	case dhcpv4.MessageTypeNone:
		return "bootp"
	case dhcpv4.MessageTypeDiscover:
		return "discover"
	case dhcpv4.MessageTypeOffer:
		return "offer"
	case dhcpv4.MessageTypeRequest:
		return "request"
	case dhcpv4.MessageTypeDecline:
		return "decline"
	case dhcpv4.MessageTypeAck:
		return "ack"
	case dhcpv4.MessageTypeNak:
		return "nak"
	case dhcpv4.MessageTypeRelease:
		return "release"
	case dhcpv4.MessageTypeInform:
		return "inform"
	}
	return "other"
}

// received counts a message of type t.
func (m *dhcpMetrics) received(t dhcpv4.MessageType) {
	if int(t) < len(m.byType) {
		m.byType[t].Inc()
		return
	}
	m.other.Inc()
}

// drop counts a message dropped or refused for reason.
func (m *dhcpMetrics) drop(reason string) {
	if c, ok := m.reasons[reason]; ok {
		c.Inc()
		return
	}
	m.errors.WithLabelValues(reason).Inc()
}

// replied counts a reply of type typ, answered d after its request came.
func (m *dhcpMetrics) replied(typ string, d time.Duration) {
	m.sent[typ].Inc()
	m.lat[typ].Observe(d.Seconds())
}
