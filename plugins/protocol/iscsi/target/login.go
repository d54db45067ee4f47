package target

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dls-project/dls/plugins/protocol/iscsi/pdu"
)

// Login status classes and details (RFC 7143 §11.13.5).
const (
	loginSuccess            = 0x0000
	loginAuthFailure        = 0x0201
	loginAuthzFailure       = 0x0202
	loginNotFound           = 0x0203
	loginUnsupportedVersion = 0x0205
	loginTooManyConns       = 0x0206
	loginMissingParam       = 0x0207
	loginNoSessionType      = 0x0209
	loginNoSession          = 0x020a
	loginInvalidRequest     = 0x020b
	loginTargetError        = 0x0300
	loginOutOfResources     = 0x0302
)

// Stages.
const (
	stageSecurity    = 0
	stageOperational = 1
	stageFullFeature = 3
)

// params are a connection's negotiated operational parameters.
type params struct {
	headerDigest  bool
	dataDigest    bool
	maxSendData   int // the initiator's MaxRecvDataSegmentLength
	maxBurst      int
	firstBurst    int
	immediateData bool
	initialR2T    bool
	maxOutR2T     int
	time2wait     int
	time2retain   int
}

// defaultParams are RFC 7143's defaults, bounded by the target's limits.
func defaultParams(l Limits) params {
	return params{
		maxSendData: 8192, maxBurst: min(262144, l.MaxBurstLength), firstBurst: min(65536, l.FirstBurstLength),
		immediateData: true, initialR2T: true, maxOutR2T: 1, time2wait: 2, time2retain: 20,
	}
}

// loginError ends a login with a status.
type loginError struct {
	status uint16
	reason string // metric label
	msg    string
}

func (e *loginError) Error() string { return e.msg }

// limits reports whether the refusal counts towards its source address's
// refused-login limit: a failed authentication or authorization, or a
// name that does not exist (someone trying names). Protocol errors are
// bugs, not guesses, and a rate-limited login is not counted again.
func (e *loginError) limits() bool {
	switch e.status {
	case loginAuthFailure, loginAuthzFailure, loginNotFound:
		return e.reason != "rate_limited"
	}
	return false
}

func refuse(status uint16, reason, format string, args ...any) *loginError {
	return &loginError{status: status, reason: reason, msg: fmt.Sprintf(format, args...)}
}

// chap states.
const (
	authNone = iota // AuthMethod not yet chosen
	authWaitA
	authWaitR
	authDone
)

// login is the state of one connection's login phase.
type login struct {
	c         *conn
	first     bool
	stage     int
	isid      [6]byte
	tsih      uint16
	cid       uint16
	cmdSN     uint32
	initiator string
	target    string
	discovery bool
	peer      netip.Addr // the initiator's TCP address
	access    Access
	auth      int
	chapOK    bool // the initiator answered the target's CHAP challenge
	chapID    byte
	chapChal  []byte
	p         params
	sentMRDSL bool
	sentTPGT  bool
	pending   []byte // text data of a login request with the C bit

	// attaching delivers what startAttach began (nil: not begun).
	attaching chan attachment

	// For Hooks.LoginStep: when the first login PDU was read, how long
	// Authorize and the volume's attach took, and the target's turns
	// (each PDU's arrival to its answer) summed.
	began                     time.Time
	authorizeTook, attachTook time.Duration
	worked                    time.Duration
}

// attachment is the outcome of Server.attachFor.
type attachment struct {
	t      *attached
	status uint16
}

// startAttach begins Server.attachFor in the background. The initiator
// has authenticated and goes on to the operational stage: its round trip
// then hides the host's attach, which would otherwise come after it.
func (l *login) startAttach() {
	ch := make(chan attachment, 1)
	l.attaching = ch
	go func() {
		t, status := l.c.srv.attachFor(l.c, l)
		ch <- attachment{t, status}
	}()
}

// attach returns the target startAttach readied, or readies it now (a
// login straight from the security stage to full feature).
func (l *login) attach() (*attached, uint16) {
	if l.attaching == nil {
		return l.c.srv.attachFor(l.c, l)
	}
	a := <-l.attaching
	l.attaching = nil
	return a.t, a.status
}

// abandon releases, once it is done, what startAttach acquired for a
// login that failed after it.
func (l *login) abandon() {
	ch := l.attaching
	if ch == nil {
		return
	}
	l.attaching = nil
	go func() {
		if a := <-ch; a.t != nil {
			ctx, cancel := l.c.ctx()
			defer cancel()
			l.c.srv.release(ctx, a.t)
		}
	}()
}

// authenticated reports whether the login may leave the security stage:
// CHAP completed, or the client has no CHAP secret.
func (l *login) authenticated() bool {
	return l.access.CHAPSecret == "" || l.chapOK
}

// negotiate answers one key of the operational stage. ok false means the
// key is unknown (NotUnderstood).
func (l *login) negotiate(k, v string) (string, bool) {
	lim := l.c.srv.limits()
	num := func(lo, hi int) (int, bool) {
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return 0, false
		}
		return n, true
	}
	switch k {
	case "HeaderDigest", "DataDigest":
		for _, o := range pdu.SplitList(v) {
			if o == "CRC32C" && lim.Digests || o == "None" {
				if k == "HeaderDigest" {
					l.p.headerDigest = o == "CRC32C"
				} else {
					l.p.dataDigest = o == "CRC32C"
				}
				return o, true
			}
		}
		return "Reject", true
	case "MaxRecvDataSegmentLength":
		n, ok := num(512, pdu.MaxDataSegment)
		if !ok {
			return "Reject", true
		}
		l.p.maxSendData = n
		return "", true
	case "MaxBurstLength":
		n, ok := num(512, pdu.MaxDataSegment)
		if !ok {
			return "Reject", true
		}
		l.p.maxBurst = min(n, lim.MaxBurstLength)
		l.p.firstBurst = min(l.p.firstBurst, l.p.maxBurst)
		return strconv.Itoa(l.p.maxBurst), true
	case "FirstBurstLength":
		n, ok := num(512, pdu.MaxDataSegment)
		if !ok {
			return "Reject", true
		}
		l.p.firstBurst = min(n, lim.FirstBurstLength, l.p.maxBurst)
		return strconv.Itoa(min(n, lim.FirstBurstLength)), true
	case "InitialR2T":
		if v != "Yes" && v != "No" {
			return "Reject", true
		}
		l.p.initialR2T = v == "Yes" // OR with ours, No
		return v, true
	case "ImmediateData":
		if v != "Yes" && v != "No" {
			return "Reject", true
		}
		l.p.immediateData = v == "Yes" // AND with ours, Yes
		return v, true
	case "MaxOutstandingR2T":
		n, ok := num(1, 65535)
		if !ok {
			return "Reject", true
		}
		l.p.maxOutR2T = min(n, lim.MaxOutstandingR2T)
		return strconv.Itoa(l.p.maxOutR2T), true
	case "MaxConnections":
		if _, ok := num(1, 65535); !ok {
			return "Reject", true
		}
		return "1", true
	case "DefaultTime2Wait":
		n, ok := num(0, 3600)
		if !ok {
			return "Reject", true
		}
		l.p.time2wait = max(n, lim.DefaultTime2Wait)
		return strconv.Itoa(l.p.time2wait), true
	case "DefaultTime2Retain":
		n, ok := num(0, 3600)
		if !ok {
			return "Reject", true
		}
		l.p.time2retain = min(n, lim.DefaultTime2Retain)
		return strconv.Itoa(l.p.time2retain), true
	case "ErrorRecoveryLevel":
		if _, ok := num(0, 2); !ok {
			return "Reject", true
		}
		return "0", true
	case "DataPDUInOrder", "DataSequenceInOrder":
		if v != "Yes" && v != "No" {
			return "Reject", true
		}
		return "Yes", true
	case "IFMarker", "OFMarker":
		if v != "Yes" && v != "No" {
			return "Reject", true
		}
		return "No", true
	case "IFMarkInt", "OFMarkInt":
		return "Irrelevant", true
	case "InitiatorName", "InitiatorAlias", "TargetName", "SessionType":
		return "", true
	}
	return "", false
}

// handle processes one complete login request (text already joined) and
// returns the response's text, whether the target agrees to transit and
// to which stage.
func (l *login) handle(req *pdu.PDU, text []byte) (resp []byte, transit bool, next int, err error) {
	flags := req.Flags()
	csg := int(flags>>2) & 3
	nsg := int(flags) & 3
	wantTransit := flags&pdu.FlagTransit != 0

	kvs, perr := pdu.ParseText(text)
	if perr != nil {
		return nil, false, 0, refuse(loginInvalidRequest, "protocol", "malformed login text")
	}
	if l.first {
		if err := l.start(req, kvs); err != nil {
			return nil, false, 0, err
		}
		l.first = false
		l.stage = csg
	}
	// Nothing past the security stage before CHAP is done, whatever stage
	// the initiator starts in or claims to be in: an initiator that starts
	// in the operational stage would otherwise never be asked.
	if csg != stageSecurity && !l.authenticated() {
		return nil, false, 0, refuse(loginAuthFailure, "chap_required", "initiator %s skips CHAP (login in stage %d)", l.initiator, csg)
	}
	if csg != l.stage || csg == 2 || csg == stageFullFeature {
		return nil, false, 0, refuse(loginInvalidRequest, "protocol", "login stage %d after stage %d", csg, l.stage)
	}
	var out []byte
	add := func(k, v string) { out = pdu.AppendText(out, k, v) }
	seen := map[string]bool{}
	for _, kv := range kvs {
		if seen[kv.Key] && !strings.HasPrefix(kv.Key, "CHAP_") {
			return nil, false, 0, refuse(loginInvalidRequest, "protocol", "key %s sent twice", kv.Key)
		}
		seen[kv.Key] = true
	}
	for _, kv := range kvs {
		k, v := kv.Key, kv.Value
		if len(v) > pdu.MaxValueLen && !strings.HasPrefix(k, "CHAP_") {
			add(k, "Reject")
			continue
		}
		switch {
		case k == "AuthMethod" || strings.HasPrefix(k, "CHAP_"):
			if csg != stageSecurity {
				return nil, false, 0, refuse(loginInvalidRequest, "protocol", "%s outside the security stage", k)
			}
			continue // below, in order
		}
		ans, ok := l.negotiate(k, v)
		switch {
		case !ok:
			add(k, "NotUnderstood")
		case ans != "":
			add(k, ans)
		}
		if k == "MaxRecvDataSegmentLength" && !l.sentMRDSL {
			add(k, strconv.Itoa(l.c.srv.limits().MaxRecvDataSegmentLength))
			l.sentMRDSL = true
		}
	}
	if csg == stageSecurity {
		sec, err := l.security(kvs)
		if err != nil {
			return nil, false, 0, err
		}
		out = append(out, sec...)
	}
	if !l.discovery && !l.sentTPGT {
		add("TargetPortalGroupTag", "1")
		l.sentTPGT = true
	}
	if !wantTransit {
		return out, false, csg, nil
	}
	if nsg <= csg || nsg == 2 {
		return nil, false, 0, refuse(loginInvalidRequest, "protocol", "transit from stage %d to %d", csg, nsg)
	}
	if csg == stageSecurity && l.auth != authDone {
		if l.auth == authNone {
			if !l.authenticated() {
				return nil, false, 0, refuse(loginAuthFailure, "chap_required", "initiator %s leaves the security stage without CHAP", l.initiator)
			}
			return nil, false, 0, refuse(loginAuthFailure, "auth", "leaving the security stage without AuthMethod")
		}
		return out, false, csg, nil // CHAP not finished: no transit yet
	}
	if nsg == stageFullFeature && !l.sentMRDSL {
		add("MaxRecvDataSegmentLength", strconv.Itoa(l.c.srv.limits().MaxRecvDataSegmentLength))
		l.sentMRDSL = true
	}
	return out, true, nsg, nil
}

// start checks the first login request: source address, names, session
// type, access, and for a normal session the address it comes from.
// Nothing changes before it passes (and CHAP after it).
func (l *login) start(req *pdu.PDU, kvs []pdu.KV) error {
	if l.c.srv.refusals().limited(l.peer) {
		return refuse(loginAuthzFailure, "rate_limited", "too many refused logins from %s", l.peer)
	}
	if req.Header[3] > 0 { // Version-min
		return refuse(loginUnsupportedVersion, "protocol", "version-min %d", req.Header[3])
	}
	copy(l.isid[:], req.Header[8:14])
	l.tsih = uint16(req.Header[14])<<8 | uint16(req.Header[15])
	l.cid = uint16(req.Header[20])<<8 | uint16(req.Header[21])
	l.cmdSN = req.U32(24)
	name, _ := pdu.Get(kvs, "InitiatorName")
	if name == "" {
		return refuse(loginMissingParam, "protocol", "no InitiatorName")
	}
	l.initiator = name
	st, _ := pdu.Get(kvs, "SessionType")
	switch st {
	case "", "Normal":
	case "Discovery":
		l.discovery = true
	default:
		return refuse(loginNoSessionType, "protocol", "session type %q", st)
	}
	ctx, cancel := l.c.ctx()
	defer cancel()
	if l.discovery {
		a, err := l.c.srv.Resolver.Authorize(ctx, Request{Initiator: name, Peer: l.peer})
		if err != nil {
			return refuse(loginTargetError, "host", "authorize discovery by %s: %v", name, err)
		}
		if !a.Allowed {
			return refuse(loginAuthzFailure, "unknown_initiator", "discovery by unknown initiator %s", name)
		}
		l.access = a
		return nil
	}
	tn, _ := pdu.Get(kvs, "TargetName")
	if tn == "" {
		return refuse(loginMissingParam, "protocol", "no TargetName")
	}
	l.target = tn
	t0 := time.Now()
	a, err := l.c.srv.Resolver.Authorize(ctx, Request{Initiator: name, Target: tn, Peer: l.peer})
	l.authorizeTook = time.Since(t0)
	if err != nil {
		return refuse(loginTargetError, "host", "authorize %s for %s: %v", name, tn, err)
	}
	if !a.Known {
		return refuse(loginNotFound, "not_found", "initiator %s asked for unknown target %s", name, tn)
	}
	if !a.Allowed {
		return refuse(loginAuthzFailure, "authorization", "initiator %s may not log in to %s", name, tn)
	}
	if l.c.srv.BindToAddresses && !slices.Contains(a.Addresses, l.peer) {
		return refuse(loginAuthzFailure, "not_bound", "initiator %s logs in to %s from %s, not from an address bound to client %s (%v)", name, tn, l.peer, a.Client, a.Addresses)
	}
	l.access = a
	return nil
}

// security runs AuthMethod and CHAP.
func (l *login) security(kvs []pdu.KV) ([]byte, error) {
	var out []byte
	add := func(k, v string) { out = pdu.AppendText(out, k, v) }
	needCHAP := l.access.CHAPSecret != ""
	if am, ok := pdu.Get(kvs, "AuthMethod"); ok {
		if l.auth != authNone {
			return nil, refuse(loginInvalidRequest, "protocol", "AuthMethod negotiated twice")
		}
		chosen := ""
		for _, m := range pdu.SplitList(am) {
			if m == "CHAP" && needCHAP || m == "None" && !needCHAP {
				chosen = m
				break
			}
		}
		if chosen == "" {
			if needCHAP {
				return nil, refuse(loginAuthFailure, "chap_required", "initiator %s offers %q but CHAP is required", l.initiator, am)
			}
			// CHAP offered where none is needed: we cannot answer a
			// challenge without a secret.
			add("AuthMethod", "Reject")
			return nil, refuse(loginAuthFailure, "auth", "initiator %s offers only %q", l.initiator, am)
		}
		add("AuthMethod", chosen)
		if chosen == "None" {
			l.auth = authDone
		} else {
			l.auth = authWaitA
		}
	}
	if a, ok := pdu.Get(kvs, "CHAP_A"); ok {
		if l.auth != authWaitA {
			return nil, refuse(loginInvalidRequest, "protocol", "unexpected CHAP_A")
		}
		has5 := false
		for _, alg := range pdu.SplitList(a) {
			if alg == "5" {
				has5 = true
			}
		}
		if !has5 {
			return nil, refuse(loginAuthFailure, "chap_failed", "CHAP algorithms %q offered, MD5 (5) needed", a)
		}
		var id [1]byte
		l.chapChal = make([]byte, 16)
		if _, err := rand.Read(id[:]); err != nil {
			return nil, refuse(loginTargetError, "internal", "random: %v", err)
		}
		_, _ = rand.Read(l.chapChal)
		l.chapID = id[0]
		add("CHAP_A", "5")
		add("CHAP_I", strconv.Itoa(int(l.chapID)))
		add("CHAP_C", "0x"+hex.EncodeToString(l.chapChal))
		l.auth = authWaitR
		return out, nil
	}
	if _, ok := pdu.Get(kvs, "CHAP_R"); ok || l.auth == authWaitR {
		if l.auth != authWaitR {
			return nil, refuse(loginInvalidRequest, "protocol", "unexpected CHAP_R")
		}
		n, _ := pdu.Get(kvs, "CHAP_N")
		r, _ := pdu.Get(kvs, "CHAP_R")
		if n == "" || r == "" {
			return nil, refuse(loginAuthFailure, "chap_failed", "CHAP_N or CHAP_R missing")
		}
		resp, err := decodeBinary(r)
		if err != nil {
			return nil, refuse(loginAuthFailure, "chap_failed", "CHAP_R: %v", err)
		}
		want := chapResponse(l.chapID, l.access.CHAPSecret, l.chapChal)
		if !strings.EqualFold(n, l.access.CHAPUser) || subtle.ConstantTimeCompare(resp, want) != 1 {
			return nil, refuse(loginAuthFailure, "chap_failed", "CHAP: wrong name or secret from %s (name %q)", l.initiator, n)
		}
		ci, hasI := pdu.Get(kvs, "CHAP_I")
		cc, hasC := pdu.Get(kvs, "CHAP_C")
		if hasI || hasC {
			if !hasI || !hasC {
				return nil, refuse(loginAuthFailure, "chap_failed", "mutual CHAP needs CHAP_I and CHAP_C")
			}
			if l.access.MutualSecret == "" {
				return nil, refuse(loginAuthFailure, "chap_failed", "initiator %s asks for mutual CHAP; the client has no mutual secret", l.initiator)
			}
			id, err := strconv.Atoi(ci)
			if err != nil || id < 0 || id > 255 {
				return nil, refuse(loginAuthFailure, "chap_failed", "CHAP_I %q", ci)
			}
			chal, err := decodeBinary(cc)
			if err != nil || len(chal) == 0 || len(chal) > 1024 {
				return nil, refuse(loginAuthFailure, "chap_failed", "CHAP_C %q", cc)
			}
			if bytes.Equal(chal, l.chapChal) {
				return nil, refuse(loginAuthFailure, "chap_failed", "initiator reflected the target's challenge")
			}
			name := l.access.Name
			if name == "" {
				name = l.target
			}
			add("CHAP_N", name)
			add("CHAP_R", "0x"+hex.EncodeToString(chapResponse(byte(id), l.access.MutualSecret, chal)))
		}
		l.auth = authDone
		l.chapOK = true
	}
	return out, nil
}

// chapResponse is MD5(id || secret || challenge) (RFC 1994).
func chapResponse(id byte, secret string, challenge []byte) []byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	return h.Sum(nil)
}

// decodeBinary reads a 0x-hex or 0b-base64 value.
func decodeBinary(v string) ([]byte, error) {
	switch {
	case strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0X"):
		s := v[2:]
		if len(s)%2 == 1 {
			s = "0" + s
		}
		return hex.DecodeString(s)
	case strings.HasPrefix(v, "0b") || strings.HasPrefix(v, "0B"):
		return base64.StdEncoding.DecodeString(v[2:])
	}
	return nil, errors.New("not a hex (0x) or base64 (0b) value")
}
