package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Retention: without a purge, boot sessions and refresh tokens would pile
// up in the state store forever. The audit log is kept forever, and
// leases belong to the DHCP servers; neither is purged.
const (
	// purgeFirst lets the start (plugins, reconcile, a boot storm the
	// host comes back to) have the database before the first purge, which
	// after an upgrade may delete months of history.
	purgeFirst = time.Minute
	purgeEvery = time.Hour
	// tokenGrace keeps a refresh token this long past its expiry, revoked
	// and used ones alike (the store does not record when a token was
	// revoked, and every token expires): until then a client presenting
	// it is told it expired, or that it was already used (a replay, which
	// revokes the user's tokens), rather than that it is unknown.
	tokenGrace = 7 * 24 * time.Hour
)

// purgeRequest is what a purge at now deletes, keeping ended boot sessions
// for history (0: forever).
func purgeRequest(now time.Time, history time.Duration) store.PurgeRequest {
	req := store.PurgeRequest{TokensBefore: now.Add(-tokenGrace)}
	if history > 0 {
		req.SessionsBefore = now.Add(-history)
	}
	return req
}

// purger deletes from the state store what the retention no longer keeps,
// purgeFirst after it starts and every purgeEvery after that.
type purger struct {
	store store.Purger
	// history is boot.session_history, read at each purge so that a
	// reload applies at the next one.
	history  func() time.Duration
	sessions prometheus.Counter
	tokens   prometheus.Counter
	logger   hclog.Logger
}

// newPurger builds a purger and registers dls_store_purged_total with reg.
func newPurger(st store.Purger, history func() time.Duration, reg prometheus.Registerer, logger hclog.Logger) (*purger, error) {
	purged := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dls_store_purged_total",
		Help: "Rows deleted from the state store by the retention purge: boot sessions that ended longer than boot.session_history ago, refresh tokens a week past their expiry.",
	}, []string{"what"})
	if err := reg.Register(purged); err != nil {
		return nil, fmt.Errorf("register purge metrics: %w", err)
	}
	// Both series exist from the start, at 0.
	return &purger{
		store: st, history: history, logger: logger,
		sessions: purged.WithLabelValues("sessions"), tokens: purged.WithLabelValues("tokens"),
	}, nil
}

// start runs the purges until ctx ends or stop is called; stop returns
// once no purge runs, so that the store may be closed after it.
func (p *purger) start(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

func (p *purger) run(ctx context.Context) {
	t := time.NewTimer(purgeFirst)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.purge(ctx, time.Now())
		t.Reset(purgeEvery)
	}
}

// purge runs one purge as of now. A failure is logged, and what was
// deleted before it still counted; the next purge tries again.
func (p *purger) purge(ctx context.Context, now time.Time) {
	history := p.history()
	res, err := p.store.Purge(ctx, purgeRequest(now, history))
	p.sessions.Add(float64(res.Sessions))
	p.tokens.Add(float64(res.Tokens))
	if res.Sessions > 0 || res.Tokens > 0 {
		p.logger.Info("state store purged", "sessions", res.Sessions, "session_history", history,
			"tokens", res.Tokens, "token_grace", tokenGrace)
	}
	if err != nil && ctx.Err() == nil {
		p.logger.Error("state store purge failed; the next purge tries again", "error", err)
	}
}
