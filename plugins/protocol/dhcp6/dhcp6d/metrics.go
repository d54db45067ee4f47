package dhcp6d

import (
	"time"

	"github.com/dls-project/dls/sdk/host/clienttable"
	"github.com/dls-project/dls/sdk/host/leasecommit"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a message is dropped or refused (label reason of
// dls_dhcp6_errors_total).
const (
	reasonMalformed    = "malformed"         // does not parse as DHCPv6, or lacks what its type needs
	reasonTruncated    = "truncated"         // shorter than a DHCPv6 header
	reasonOversized    = "oversized"         // longer than maxPacket
	reasonRelayDepth   = "relay_depth"       // more relays than RFC 8415's hop limit
	reasonUnsupported  = "unsupported_type"  // a message type servers do not take
	reasonNoMAC        = "no_mac"            // no DUID-LL(T), relay option 79 nor EUI-64 source tells the MAC
	reasonOtherServer  = "other_server"      // names another server's DUID
	reasonNotForUs     = "server_id_present" // a Solicit, Rebind or Confirm with a server identifier
	reasonNoIA         = "no_ia_na"          // nothing this server assigns was asked for
	reasonExhausted    = "pool_exhausted"    // no address left
	reasonUnknown      = "unknown_client"    // proxy mode: the host does not know it
	reasonNotPXE       = "not_firmware"      // proxy mode: not boot firmware
	reasonNoBootFile   = "no_boot_file"      // firmware the host gave nothing to boot
	reasonLookupFailed = "lookup_failed"     // the host did not answer who the client is
	reasonCommitFailed = "commit_failed"     // the host did not store the lease: no Reply
	reasonCommitQueue  = "commit_queue_full" // too many leases waiting to be stored
	reasonConflict     = "lease_conflict"    // another DLS host holds the address
	reasonSendFailed   = "send_failed"       // the reply could not be sent
)

// errorReasons are created at start so every series exists from the
// first scrape.
var errorReasons = []string{
	reasonMalformed, reasonTruncated, reasonOversized, reasonRelayDepth, reasonUnsupported, reasonNoMAC,
	reasonOtherServer, reasonNotForUs, reasonNoIA, reasonExhausted, reasonUnknown, reasonNotPXE,
	reasonNoBootFile, reasonLookupFailed, reasonCommitFailed, reasonCommitQueue, reasonConflict, reasonSendFailed,
}

// Results of a request (label result of dls_dhcp6_requests_total).
const (
	resultReplied = "replied" // an Advertise or Reply left
	resultDropped = "dropped" // no answer: the reason is in dls_dhcp6_errors_total
)

// Reply types (label type of the replies and latency families).
const (
	replyAdvertise = "advertise"
	replyReply     = "reply"
)

// requestTypes are the message types a server takes, by label.
var requestTypes = map[dhcpv6.MessageType]string{
	dhcpv6.MessageTypeSolicit:            "solicit",
	dhcpv6.MessageTypeRequest:            "request",
	dhcpv6.MessageTypeConfirm:            "confirm",
	dhcpv6.MessageTypeRenew:              "renew",
	dhcpv6.MessageTypeRebind:             "rebind",
	dhcpv6.MessageTypeRelease:            "release",
	dhcpv6.MessageTypeDecline:            "decline",
	dhcpv6.MessageTypeInformationRequest: "information_request",
}

// typeOther labels every other message, and bytes that are not one.
const typeOther = "other"

// v6Metrics are the plugin's metric families, with the hot series
// resolved once.
type v6Metrics struct {
	requests   *prometheus.CounterVec
	errors     *prometheus.CounterVec
	replies    *prometheus.CounterVec
	poolSize   *prometheus.GaugeVec
	poolActive *prometheus.GaugeVec
	latency    *prometheus.HistogramVec
	commit     leasecommit.Metrics
	table      clienttable.Metrics // lookups asked of the host, the pushed table's gauges

	done    map[string][2]prometheus.Counter // by type label: replied, dropped
	reasons map[string]prometheus.Counter
	sent    map[string]prometheus.Counter
	lat     map[string]prometheus.Observer
}

func newMetrics(reg *metrics.Registry) *v6Metrics {
	m := &v6Metrics{
		requests: reg.Counter("dls_dhcp6_requests_total",
			"DHCPv6 messages received from clients, by message type and result (replied, or dropped: the reason is in dls_dhcp6_errors_total).", "type", "result"),
		errors:   reg.Counter("dls_dhcp6_errors_total", "DHCPv6 messages dropped or refused, by reason (malformed: bad packets).", "reason"),
		replies:  reg.Counter("dls_dhcp6_replies_total", "DHCPv6 replies sent, by message type.", "type"),
		poolSize: reg.Gauge("dls_dhcp6_pool_addresses", "Addresses a pool can lease (2^64-1 for a /64).", "pool"),
		poolActive: reg.Gauge("dls_dhcp6_pool_active_leases",
			"Addresses of a pool leased and not expired.", "pool"),
		latency: reg.Histogram("dls_dhcp6_reply_duration_seconds",
			"Time from a request's arrival to its reply leaving (a Reply that binds waits for its lease to be stored), by reply type.",
			[]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}, "type"),
		done:    map[string][2]prometheus.Counter{},
		reasons: map[string]prometheus.Counter{},
		sent:    map[string]prometheus.Counter{},
		lat:     map[string]prometheus.Observer{},
	}
	m.commit = leasecommit.NewMetrics(reg, "dls_dhcp6_lease_commit_duration_seconds", "dls_dhcp6_lease_commit_batch_size")
	m.table = clienttable.NewMetrics(reg, "dls_dhcp6")
	for _, t := range append(mapValues(requestTypes), typeOther) {
		m.done[t] = [2]prometheus.Counter{m.requests.WithLabelValues(t, resultReplied), m.requests.WithLabelValues(t, resultDropped)}
	}
	for _, r := range errorReasons {
		m.reasons[r] = m.errors.WithLabelValues(r)
	}
	for _, t := range []string{replyAdvertise, replyReply} {
		m.sent[t] = m.replies.WithLabelValues(t)
		m.lat[t] = m.latency.WithLabelValues(t)
	}
	return m
}

func mapValues(m map[dhcpv6.MessageType]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// typeLabel is the label of message type t.
func typeLabel(t dhcpv6.MessageType) string {
	if l, ok := requestTypes[t]; ok {
		return l
	}
	return typeOther
}

// drop counts a message of type typ that goes unanswered, for reason.
func (m *v6Metrics) drop(typ, reason string) {
	m.note(reason)
	m.done[typ][1].Inc()
}

// note counts reason without ending the message (it is answered anyway,
// or counted again when it ends).
func (m *v6Metrics) note(reason string) {
	if c, ok := m.reasons[reason]; ok {
		c.Inc()
		return
	}
	m.errors.WithLabelValues(reason).Inc()
}

// replied counts a reply of type reply to a request of type typ, answered
// d after the request came.
func (m *v6Metrics) replied(typ, reply string, d time.Duration) {
	m.done[typ][0].Inc()
	m.sent[reply].Inc()
	m.lat[reply].Observe(d.Seconds())
}
