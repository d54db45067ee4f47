package store

import (
	"context"
	"fmt"
	"time"
)

// SessionLister is what ListAllSessions reads from: a Sessions store, or
// the part of one a caller holds.
type SessionLister interface {
	ListSessions(ctx context.Context, f SessionFilter) ([]Session, error)
}

// ListAllSessions reads every session f keeps (f.Limit and f.Before are
// its own), newest first, page by page: a store answers at most
// MaxSessionLimit at once. Each page asks for the sessions started before
// the oldest of the last one plus that millisecond again, since a storm
// starts many sessions in one (the repeats are dropped by ID). It reports
// truncated when it stopped at max sessions (max <= 0: no bound) or when
// a page brought nothing new (more than a page started in one
// millisecond).
func ListAllSessions(ctx context.Context, l SessionLister, f SessionFilter, max int) ([]Session, bool, error) {
	var out []Session
	seen := map[int64]bool{}
	f.Limit, f.Before = MaxSessionLimit, time.Time{}
	for {
		page, err := l.ListSessions(ctx, f)
		if err != nil {
			return nil, false, fmt.Errorf("list sessions (client %q, state %q): %w", f.Client, f.State, err)
		}
		added := 0
		for _, s := range page {
			if !seen[s.ID] {
				seen[s.ID] = true
				out = append(out, s)
				added++
			}
		}
		switch {
		case len(page) < f.Limit:
			return out, false, nil
		case added == 0 || (max > 0 && len(out) >= max):
			return out, true, nil
		}
		f.Before = page[len(page)-1].Started.Truncate(time.Millisecond).Add(time.Millisecond)
	}
}
