package api

import (
	"errors"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/supervisor"
)

// sessionJSON is a boot session as the API shows it (without its token
// hash).
type sessionJSON struct {
	ID          int64                `json:"id"`
	Client      string               `json:"client,omitempty"`
	MAC         string               `json:"mac"`
	Address     string               `json:"address,omitempty"`
	Stages      map[string]time.Time `json:"stages"`
	Expect      string               `json:"expect"`
	State       string               `json:"state"`
	FailedStage string               `json:"failed_stage,omitempty"`
	TokenUsed   bool                 `json:"token_used"`
	Started     time.Time            `json:"started"`
	Ended       time.Time            `json:"ended,omitzero"`
}

func toSessionJSON(s store.Session) sessionJSON {
	stages := s.Stages
	if stages == nil {
		stages = map[string]time.Time{}
	}
	return sessionJSON{
		ID: s.ID, Client: s.Client, MAC: s.MAC, Address: s.Address, Stages: stages, Expect: s.Expect,
		State: s.State, FailedStage: s.FailedStage, TokenUsed: s.TokenUsed, Started: s.Started, Ended: s.Ended,
	}
}

// listSessions: GET sessions?client=&state=&limit=, newest first.
func (a *API) listSessions(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.SessionFilter{Client: q.Get("client"), State: q.Get("state")}
	switch f.State {
	case "", store.SessionActive, store.SessionDone, store.SessionFailed:
	default:
		return fieldError("state", "state %q: want active, done or failed", f.State)
	}
	var err error
	if f.Limit, err = queryLimit(r, 100, 10000); err != nil {
		return err
	}
	ss, err := a.deps.Store.ListSessions(r.Context(), f)
	if err != nil {
		return err
	}
	out := make([]sessionJSON, len(ss))
	for i, s := range ss {
		out[i] = toSessionJSON(s)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// getSession: GET sessions/{id}.
func (a *API) getSession(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return errorf(http.StatusBadRequest, "session id %q: want a number from 1", r.PathValue("id"))
	}
	s, err := a.deps.Store.GetSession(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "no session %d", id)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toSessionJSON(s))
	return nil
}

// listPlugins: GET plugins, by name.
func (a *API) listPlugins(w http.ResponseWriter, _ *http.Request) error {
	ps := append([]supervisor.Status{}, a.deps.Plugins()...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	writeJSON(w, http.StatusOK, ps)
	return nil
}
