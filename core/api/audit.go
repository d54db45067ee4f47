package api

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/dls-project/dls/core/store"
)

// audit appends an entry to the audit log; detail (nil for none) is
// marshalled to JSON and must hold no secret. A failure is logged: the
// change it describes has been made already.
func (a *API) audit(ctx context.Context, actor, action, object string, detail any, source string) {
	e := store.AuditEntry{Time: a.clock.Now(), Actor: actor, Action: action, Object: object, Source: source}
	if detail != nil {
		b, err := json.Marshal(detail)
		if err == nil {
			e.Detail = string(b)
		}
	}
	// The request may be cancelled once the change is made; record it anyway.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := a.deps.Store.AppendAudit(ctx, e); err != nil {
		a.logger.Error("audit entry not written", "actor", actor, "action", action, "object", object, "error", err)
	}
}

// auditReq records a change made by the request's caller.
func (a *API) auditReq(r *http.Request, action, object string, detail any) {
	a.audit(r.Context(), principalOf(r).user, action, object, detail, remoteIP(r))
}

// auditEntry is an entry as GET audit shows it.
type auditEntry struct {
	ID     int64     `json:"id"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Object string    `json:"object"`
	Detail string    `json:"detail,omitempty"`
	Source string    `json:"source,omitempty"`
}

// listAudit: GET audit?limit=, newest first.
func (a *API) listAudit(w http.ResponseWriter, r *http.Request) error {
	limit, err := queryLimit(r, 100, 10000)
	if err != nil {
		return err
	}
	es, err := a.deps.Store.ListAudit(r.Context(), limit)
	if err != nil {
		return err
	}
	out := make([]auditEntry, len(es))
	for i, e := range es {
		out[i] = auditEntry{ID: e.ID, Time: e.Time, Actor: e.Actor, Action: e.Action, Object: e.Object, Detail: e.Detail, Source: e.Source}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
