package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlstore"
)

// TestNoDoubleACK is the acceptance test for lease safety between hosts:
// two Stores (two pools, as two DLS hosts have) on one database, many
// goroutines each, commit random batches of leases for a few addresses
// and MACs as fast as they can: bound, released and declined leases, some
// already expired, some expiring within milliseconds (so that "expired"
// changes under the committers' feet), some held for a while. Batches
// list addresses in random order, so that locking them in caller order
// would deadlock.
//
// A trigger the test installs records every row version of leases with a
// sequence number drawn while the row is locked, which is the order in
// which the writes really happened. checkNoDoubleACK then verifies,
// address by address, that each MAC that took an address over from
// another took it from a released or expired lease (no double ACK), and
// that the record and the answers the committers got agree.
//
// DLS_PG_STRESS sets how long the committers run (a Go duration; default
// 3s, 1s with -short).
func TestNoDoubleACK(t *testing.T) {
	duration := 3 * time.Second
	if testing.Short() {
		duration = time.Second
	}
	if v := os.Getenv("DLS_PG_STRESS"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("DLS_PG_STRESS=%q: %v", v, err)
		}
		duration = d
	}
	dsn := withParam(t, freshDSN(t), "pool_max_conns", "8")
	a, err := Open(t.Context(), dsn, nil)
	if err != nil {
		t.Fatalf("Open host a: %v", err)
	}
	defer a.Close()
	b, err := Open(t.Context(), dsn, nil)
	if err != nil {
		t.Fatalf("Open host b: %v", err)
	}
	defer b.Close()
	recordLeaseHistory(t, a.pool)

	start := time.Now()
	answers, commits := stressLeases(t, []committer{a, b}, duration, false)
	elapsed := time.Since(start)
	history := readLeaseHistory(t, a.pool)
	st, problems := checkNoDoubleACK(answers, history)
	for _, p := range problems {
		t.Error(p)
	}

	// Every address ends as the last write left it.
	stored, err := b.LoadLeases(t.Context(), "")
	if err != nil {
		t.Fatalf("LoadLeases: %v", err)
	}
	last := map[netip.Addr]historyRow{}
	for _, h := range history {
		last[h.address] = h
	}
	if len(stored) != len(last) {
		t.Errorf("%d leases stored, %d addresses written", len(stored), len(last))
	}
	for _, l := range stored {
		h := last[l.Address]
		if l.MAC != h.mac || l.State != h.state || !l.Expires.Equal(h.expires) || l.Hostname != h.hostname {
			t.Errorf("%s stored as %+v, last written %+v", l.Address, l, h)
		}
	}

	retries := a.retries.Load() + b.retries.Load()
	t.Logf("%v, 2 hosts x %d committers, %d addresses, %d MACs: %d commits (%.0f/s), %d leases: %d OK, %d refused; "+
		"%d takeovers from a released lease, %d from an expired one, %d writes by the holder; %d transactions retried",
		elapsed.Round(time.Millisecond), stressWorkers, stressAddrs, stressMACs, commits,
		float64(commits)/elapsed.Seconds(), st.leases, st.ok, st.refused,
		st.fromReleased, st.fromExpired, st.byHolder, retries)
	// The run must have exercised every path, or it proved little.
	if st.refused == 0 || st.fromReleased == 0 || st.fromExpired == 0 {
		t.Errorf("the committers did not race hard enough: %+v", st)
	}
	// Batches lock their addresses in order, so none can deadlock, and READ
	// COMMITTED has no serialization failures: nothing should be retried.
	if retries != 0 {
		t.Errorf("%d transactions retried: batches deadlocked despite locking addresses in order", retries)
	}
}

// TestUpsertDecidesOnLatestVersion pins down the property the lease rules
// rest on, one interleaving at a time: host A's transaction has written a
// lease and not committed yet; host B's commit for the same address, with
// another MAC, started from a snapshot in which the address was free
// (released, or no row at all). B must wait for A, then be refused in
// favour of A's lease, not decide on the stale version it started with.
func TestUpsertDecidesOnLatestVersion(t *testing.T) {
	const (
		macA = "02:00:00:00:00:0a"
		macB = "02:00:00:00:00:0b"
		macC = "02:00:00:00:00:0c"
	)
	addr := netip.MustParseAddr("10.30.0.1")
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	for _, before := range []string{"released", "absent"} {
		t.Run(before, func(t *testing.T) {
			dsn := freshDSN(t)
			a, err := Open(t.Context(), dsn, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			b, err := Open(t.Context(), dsn, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if before == "released" {
				for _, st := range []store.LeaseState{store.LeaseBound, store.LeaseReleased} {
					if _, err := a.CommitLeases(t.Context(), []store.Lease{{Pool: "lan", Address: addr, MAC: macC, Expires: exp, State: st}}); err != nil {
						t.Fatal(err)
					}
				}
			}

			// Host A, by hand: the upsert of CommitLeases, then wait.
			txA, err := a.pool.Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer txA.Rollback(context.WithoutCancel(t.Context()))
			var pidA int
			if err := txA.QueryRow(t.Context(), `SELECT pg_backend_pid()`).Scan(&pidA); err != nil {
				t.Fatal(err)
			}
			tag, err := txA.Exec(t.Context(), sqlstore.Bind(dialect{}, sqlstore.UpsertLease), addr, "lan", macA, exp, "bound", "", millis(time.Now()))
			if err != nil || tag.RowsAffected() != 1 {
				t.Fatalf("host A's upsert: %v, %v", tag, err)
			}

			// Host B commits for macB: it must block on A's row.
			type outcome struct {
				res []store.LeaseResult
				err error
			}
			done := make(chan outcome, 1)
			go func() {
				res, err := b.CommitLeases(t.Context(), []store.Lease{{Pool: "lan", Address: addr, MAC: macB, Expires: exp, State: store.LeaseBound}})
				done <- outcome{res, err}
			}()
			waitBlockedBy(t, b.pool, pidA)
			select {
			case o := <-done:
				t.Fatalf("host B answered while host A held the row: %+v", o)
			default:
			}
			if err := txA.Commit(t.Context()); err != nil {
				t.Fatal(err)
			}
			o := <-done
			if o.err != nil {
				t.Fatalf("host B: %v", o.err)
			}
			if o.res[0] != (store.LeaseResult{Holder: macA}) {
				t.Fatalf("host B got %+v, want refused in favour of %s", o.res[0], macA)
			}
			ls, err := b.LoadLeases(t.Context(), "")
			if err != nil || len(ls) != 1 || ls[0].MAC != macA {
				t.Fatalf("stored: %+v, %v; want %s's lease", ls, err, macA)
			}
		})
	}
}

// waitBlockedBy waits until some backend waits for a lock held by pid.
func waitBlockedBy(t *testing.T, pool *pgxpool.Pool, pid int) {
	t.Helper()
	for range 500 {
		var n int
		if err := pool.QueryRow(t.Context(),
			`SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))`, pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("nothing waited for backend %d within 5s", pid)
}

// TestNoDoubleACKCatchesReadThenWrite runs the same load through a lease
// committer that decides in Go on a plain SELECT and then writes
// unconditionally, the classic mistake, and expects checkNoDoubleACK to
// catch it double-ACKing: the check has teeth.
func TestNoDoubleACKCatchesReadThenWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("checks the checker; not needed with -short")
	}
	dsn := withParam(t, freshDSN(t), "pool_max_conns", "8")
	s, err := Open(t.Context(), dsn, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	recordLeaseHistory(t, s.pool)
	// Two hosts' worth of committers on one naive store: the race is the
	// same whichever pool the connections come from.
	naive := readThenWrite{s.pool}
	answers, _ := stressLeases(t, []committer{naive, naive}, time.Second, true)
	st, problems := checkNoDoubleACK(answers, readLeaseHistory(t, s.pool))
	if st.doubleACKs == 0 {
		t.Fatalf("a read-then-write committer went undetected (%d other problems)", len(problems))
	}
	t.Logf("read-then-write committer caught: %d double ACKs among %d leases", st.doubleACKs, st.leases)
}

// The load: per host stressWorkers goroutines, batches of 1 to stressBatch
// leases over stressAddrs addresses and stressMACs MACs.
const (
	stressWorkers = 12
	stressBatch   = 6
	stressAddrs   = 10
	stressMACs    = 6
)

// committer is what the load drives: a Store, or readThenWrite.
type committer interface {
	CommitLeases(ctx context.Context, leases []store.Lease) ([]store.LeaseResult, error)
}

// answer is one lease of a batch as committed and answered.
type answer struct {
	lease      store.Lease // Hostname is unique: it names the answer in the history
	result     store.LeaseResult
	start, end time.Time // of the CommitLeases call
}

// stressLeases runs the load until d has passed and returns every answer
// and the number of CommitLeases calls answered. When tolerateErrors is
// false a failed CommitLeases fails the test.
func stressLeases(t *testing.T, hosts []committer, d time.Duration, tolerateErrors bool) ([]answer, int) {
	deadline := time.Now().Add(d)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		all     []answer
		commits int
	)
	for h, host := range hosts {
		for w := range stressWorkers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(h), uint64(w)))
				var (
					mine  []answer
					calls int
				)
				defer func() {
					mu.Lock()
					defer mu.Unlock()
					all = append(all, mine...)
					commits += calls
				}()
				for n := 0; time.Now().Before(deadline); n++ {
					batch := make([]store.Lease, 1+rng.IntN(stressBatch))
					for i := range batch {
						batch[i] = stressLease(rng, fmt.Sprintf("h%d-w%d-%d-%d", h, w, n, i))
					}
					start := time.Now()
					got, err := host.CommitLeases(t.Context(), batch)
					end := time.Now()
					if err != nil {
						if !tolerateErrors {
							t.Errorf("host %d worker %d: CommitLeases: %v", h, w, err)
							return
						}
						continue
					}
					calls++
					for i, r := range got {
						mine = append(mine, answer{lease: batch[i], result: r, start: start, end: end})
					}
				}
			})
		}
	}
	wg.Wait()
	return all, commits
}

// stressLease makes a random lease named token.
func stressLease(rng *rand.Rand, token string) store.Lease {
	now := time.Now()
	l := store.Lease{
		Pool:     "lan",
		Address:  netip.AddrFrom4([4]byte{10, 20, 0, byte(1 + rng.IntN(stressAddrs))}),
		MAC:      fmt.Sprintf("02:00:00:00:01:%02x", rng.IntN(stressMACs)),
		State:    store.LeaseBound,
		Hostname: token,
	}
	switch p := rng.IntN(100); {
	case p < 15:
		l.State = store.LeaseReleased
	case p < 30:
		l.State = store.LeaseDeclined
	}
	switch p := rng.IntN(100); {
	case p < 25: // already expired
		l.Expires = now.Add(-time.Duration(rng.IntN(1000)) * time.Millisecond)
	case p < 60: // expires while the others commit
		l.Expires = now.Add(time.Duration(rng.IntN(20)) * time.Millisecond)
	default:
		l.Expires = now.Add(time.Duration(50+rng.IntN(950)) * time.Millisecond)
	}
	l.Expires = l.Expires.Truncate(time.Millisecond)
	return l
}

// recordLeaseHistory installs, in the test's schema, a trigger that copies
// every row version of leases into lease_history. nextval runs while the
// writing transaction holds the row's lock, and the lock is held until
// commit, so for one address seq orders the versions as they were
// committed; a rolled-back write takes its history row with it.
func recordLeaseHistory(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(t.Context(), `
CREATE TABLE lease_history (
    seq        bigserial PRIMARY KEY,
    address    inet        NOT NULL,
    mac        text        NOT NULL,
    state      text        NOT NULL,
    expires    timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    hostname   text        NOT NULL
);
CREATE FUNCTION record_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lease_history (address, mac, state, expires, updated_at, hostname)
    VALUES (NEW.address, NEW.mac, NEW.state, NEW.expires, NEW.updated_at, NEW.hostname);
    RETURN NULL;
END $$;
CREATE TRIGGER record_lease AFTER INSERT OR UPDATE ON leases
    FOR EACH ROW EXECUTE FUNCTION record_lease();`)
	if err != nil {
		t.Fatalf("install lease history trigger: %v", err)
	}
}

// historyRow is one committed version of a lease row.
type historyRow struct {
	seq       int64
	address   netip.Addr
	mac       string
	state     store.LeaseState
	expires   time.Time
	updatedAt time.Time // the writer's "now"
	hostname  string
}

func readLeaseHistory(t *testing.T, pool *pgxpool.Pool) []historyRow {
	t.Helper()
	rows, err := pool.Query(t.Context(),
		`SELECT seq, address, mac, state, expires, updated_at, hostname FROM lease_history ORDER BY seq`)
	if err != nil {
		t.Fatalf("read lease history: %v", err)
	}
	hs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (historyRow, error) {
		var h historyRow
		var state string
		err := row.Scan(&h.seq, &h.address, &h.mac, &state, &h.expires, &h.updatedAt, &h.hostname)
		h.state = store.LeaseState(state)
		return h, err
	})
	if err != nil {
		t.Fatalf("read lease history: %v", err)
	}
	return hs
}

type stressStats struct {
	leases, ok, refused                 int
	fromReleased, fromExpired, byHolder int
	doubleACKs                          int
}

// checkNoDoubleACK compares the answers with the history and returns what
// it counted and every problem found; a problem about lease safety says
// "double ACK".
func checkNoDoubleACK(answers []answer, history []historyRow) (stressStats, []string) {
	var (
		st       stressStats
		problems []string
		byToken  = make(map[string]answer, len(answers))
		seen     = make(map[string]bool, len(history))
		holders  = map[netip.Addr]map[string]bool{} // MACs that ever held each address
		byAddr   = map[netip.Addr][]historyRow{}
	)
	problem := func(format string, args ...any) {
		if len(problems) < 50 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	for _, a := range answers {
		byToken[a.lease.Hostname] = a
		st.leases++
		if a.result.OK {
			st.ok++
		} else {
			st.refused++
		}
	}

	// The history is the answers that said OK, each once, as committed.
	for _, h := range history {
		a, ok := byToken[h.hostname]
		switch {
		case !ok:
			problem("history seq %d (%s for %s): no such lease was committed", h.seq, h.address, h.mac)
			continue
		case seen[h.hostname]:
			problem("lease %s written twice", h.hostname)
		case !a.result.OK:
			problem("double ACK? lease %s (%s for %s) was refused (holder %s) but written", h.hostname, h.address, h.mac, a.result.Holder)
		case a.lease.Address != h.address || a.lease.MAC != h.mac || a.lease.State != h.state || !a.lease.Expires.Equal(h.expires):
			problem("lease %s written as %+v, committed as %+v", h.hostname, h, a.lease)
		}
		seen[h.hostname] = true
		if holders[h.address] == nil {
			holders[h.address] = map[string]bool{}
		}
		holders[h.address][h.mac] = true
		byAddr[h.address] = append(byAddr[h.address], h)
	}
	for token, a := range byToken {
		if a.result.OK && !seen[token] {
			problem("lease %s (%s for %s) answered OK but not written", token, a.lease.Address, a.lease.MAC)
		}
		if !a.result.OK && (a.result.Holder == a.lease.MAC || !holders[a.lease.Address][a.result.Holder]) {
			problem("lease %s (%s for %s) refused with holder %q, which never held it", token, a.lease.Address, a.lease.MAC, a.result.Holder)
		}
	}

	for addr, hs := range byAddr {
		// Lease safety: a MAC takes an address over only from a released
		// or expired lease, judged at the taker's "now".
		for i := 1; i < len(hs); i++ {
			prev, cur := hs[i-1], hs[i]
			switch {
			case cur.mac == prev.mac:
				st.byHolder++
			case prev.state == store.LeaseReleased:
				st.fromReleased++
			case !prev.expires.After(cur.updatedAt):
				st.fromExpired++
			default:
				st.doubleACKs++
				problem("double ACK: %s ACKed to %s (%s) at %s while %s held it (%s until %s; seq %d then %d)",
					addr, cur.mac, cur.hostname, cur.updatedAt.Format("15:04:05.000"),
					prev.mac, prev.state, prev.expires.Format("15:04:05.000"), prev.seq, cur.seq)
			}
		}
		// The recorded order agrees with real time: no write recorded
		// later was answered before an earlier one was asked for.
		minEnd := time.Time{}
		for i := len(hs) - 1; i >= 0; i-- {
			a := byToken[hs[i].hostname]
			if !minEnd.IsZero() && minEnd.Before(a.start) {
				problem("%s: history order disagrees with real time at seq %d", addr, hs[i].seq)
			}
			if minEnd.IsZero() || a.end.Before(minEnd) {
				minEnd = a.end
			}
		}
	}
	slices.SortFunc(problems, cmp.Compare)
	return st, problems
}

// readThenWrite commits leases the wrong way: it reads the holder with a
// plain SELECT, decides in Go, then upserts unconditionally. Two committers
// can both read an address as free and both write it. Each lease gets a
// transaction of its own, so that the committers never deadlock and the
// load stays as heavy as the real one's.
type readThenWrite struct{ pool *pgxpool.Pool }

func (r readThenWrite) CommitLeases(ctx context.Context, leases []store.Lease) ([]store.LeaseResult, error) {
	results := make([]store.LeaseResult, len(leases))
	for i, l := range leases {
		err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
			now := millis(time.Now())
			var (
				mac, state string
				expires    time.Time
			)
			err := tx.QueryRow(ctx, `SELECT mac, state, expires FROM leases WHERE address = $1`, l.Address).
				Scan(&mac, &state, &expires)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			if err == nil && mac != l.MAC && state != string(store.LeaseReleased) && expires.After(now) {
				results[i] = store.LeaseResult{Holder: mac}
				return nil
			}
			if _, err := tx.Exec(ctx, `INSERT INTO leases (address, pool, mac, expires, state, hostname, updated_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7)
				ON CONFLICT (address) DO UPDATE SET pool = excluded.pool, mac = excluded.mac,
					expires = excluded.expires, state = excluded.state,
					hostname = excluded.hostname, updated_at = excluded.updated_at`,
				l.Address, l.Pool, l.MAC, l.Expires, string(l.State), l.Hostname, now); err != nil {
				return err
			}
			results[i] = store.LeaseResult{OK: true}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return results, nil
}
