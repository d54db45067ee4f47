package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

// auditOf returns the audit entries with action, oldest first.
func (e *env) auditOf(action string) []store.AuditEntry {
	e.st.mu.Lock()
	defer e.st.mu.Unlock()
	var out []store.AuditEntry
	for _, a := range e.st.audit {
		if a.Action == action {
			out = append(out, a)
		}
	}
	return out
}

// TestFailedLoginAudited: a wrong password and an unknown user are in the
// audit log with the name tried and the source, never the password.
func TestFailedLoginAudited(t *testing.T) {
	e := newEnv(t)
	e.want(e.do("POST", "/auth/login", "", map[string]string{"username": "alice", "password": "s3cret-guess"}), http.StatusUnauthorized, nil)
	e.source = "198.51.100.7:555"
	e.want(e.do("POST", "/auth/login", "", map[string]string{"username": "mallory", "password": "other-guess"}), http.StatusUnauthorized, nil)
	e.want(e.do("POST", "/auth/login", "", map[string]string{"username": "nina", "password": "nina-pw"}), http.StatusForbidden, nil)
	got := e.auditOf("auth.login_failed")
	want := []struct{ actor, source, reason string }{
		{"alice", "192.0.2.10", "bad_credentials"},
		{"mallory", "198.51.100.7", "bad_credentials"},
		{"nina", "198.51.100.7", "no_role"},
	}
	if len(got) != len(want) {
		t.Fatalf("auth.login_failed entries = %+v, want %d", got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Actor != w.actor || g.Source != w.source || g.Object != "user/"+w.actor || !strings.Contains(g.Detail, w.reason) {
			t.Errorf("entry %d = %+v, want actor %s source %s reason %s", i, g, w.actor, w.source, w.reason)
		}
	}
	for _, a := range e.st.audit {
		if strings.Contains(a.Detail+a.Actor+a.Object, "guess") || strings.Contains(a.Detail, "nina-pw") {
			t.Errorf("a password is in the audit log: %+v", a)
		}
	}
}

// TestRateLimitedLoginsCoalesced: hundreds of refused logins write one
// entry when the limit is hit and one with the total when the window ends,
// per limit key; varying the username from one source does not help.
func TestRateLimitedLoginsCoalesced(t *testing.T) {
	e := newEnv(t)
	bad := map[string]string{"username": "alice", "password": "guess"}
	for range 10 {
		e.want(e.do("POST", "/auth/login", "", bad), http.StatusUnauthorized, nil)
	}
	for range 300 {
		e.want(e.do("POST", "/auth/login", "", bad), http.StatusTooManyRequests, nil)
	}
	if n := len(e.auditOf("auth.login_failed")); n != 10 {
		t.Errorf("%d auth.login_failed entries, want 10", n)
	}
	limited := e.auditOf("auth.login_rate_limited")
	if len(limited) != 1 || limited[0].Actor != "alice" || limited[0].Source != "192.0.2.10" ||
		!strings.Contains(limited[0].Detail, `"limit":"user_source"`) || !strings.Contains(limited[0].Detail, `"refused":"1"`) {
		t.Fatalf("rate-limited entries during the attack = %+v, want one for alice from 192.0.2.10", limited)
	}

	// The window ends; the next login of anyone writes its total.
	e.clock.Add(15*time.Minute + time.Second)
	e.login("vera")
	limited = e.auditOf("auth.login_rate_limited")
	if len(limited) != 2 || !strings.Contains(limited[1].Detail, `"refused":"300"`) || limited[1].Source != "192.0.2.10" {
		t.Fatalf("rate-limited entries after the window = %+v, want a second with refused 300", limited)
	}

	// Another source guessing many names hits the source limit: one entry
	// for all of them.
	e.source = "203.0.113.9:4000"
	for i := range 20 {
		e.want(e.do("POST", "/auth/login", "", map[string]string{"username": fmt.Sprintf("user%d", i), "password": "x"}), http.StatusUnauthorized, nil)
	}
	for i := range 200 {
		e.want(e.do("POST", "/auth/login", "", map[string]string{"username": fmt.Sprintf("other%d", i), "password": "x"}), http.StatusTooManyRequests, nil)
	}
	limited = e.auditOf("auth.login_rate_limited")
	if len(limited) != 3 || !strings.Contains(limited[2].Detail, `"limit":"source"`) || limited[2].Source != "203.0.113.9" {
		t.Fatalf("rate-limited entries = %+v, want a third for the source limit", limited)
	}
	if got := e.failures("rate_limited"); got != 500 {
		t.Errorf("rate_limited failures = %v, want 500 (every refusal is counted)", got)
	}
}

// TestRefusalLogBounded: the coalescing state forgets the oldest keys
// past its capacity, writing their totals then.
func TestRefusalLogBounded(t *testing.T) {
	l := newRefusalLog(time.Minute, 2)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, k := range []string{"a", "a", "a", "b"} {
		l.note(k, "source", "u", k, now)
	}
	first, closed := l.note("c", "source", "u", "c", now)
	if !first || len(closed) != 1 || closed[0].key != "a" || closed[0].count != 3 {
		t.Errorf("note past capacity: first %v closed %+v; want a's total of 3", first, closed)
	}
	if got := l.sweep(now.Add(time.Minute)); len(got) != 0 {
		t.Errorf("sweep of single refusals = %+v, want none", got)
	}
	if l.lru.Len() != 0 {
		t.Errorf("%d windows remembered after they ended", l.lru.Len())
	}
}
