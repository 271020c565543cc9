package lockout_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/lockout"
	"github.com/klozd/api/internal/pgcluster"
	"github.com/klozd/api/internal/pgtest"
)

// Behind PgBouncer every operation of the service works from several
// instances at once and counts exactly: in transaction pooling with
// pgbouncer=true, and in session pooling sized for every instance's
// connections. Without pgbouncer=true, transaction pooling mixes up the
// instances' prepared statements (see the pgbouncer=true section of the
// package documentation).
func TestServiceBehindPgBouncer(t *testing.T) {
	t.Parallel()
	const pools, workers, conns = 3, 50, 20
	for _, tc := range []struct {
		mode     string
		poolSize int
		params   []string
	}{
		{pgcluster.PoolTransaction, 10, []string{"pgbouncer", "true"}},
		{pgcluster.PoolSession, pools * conns, nil},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			dbURL := pgtest.URL(t)
			url := pgtest.StartBouncer(t, tc.mode, tc.poolSize, nil).URL(t, dbURL, tc.params...)
			clk := newClock()
			services := make([]*lockout.Service, pools)
			for i := range services {
				db, err := database.OpenConfig(url, database.Config{Driver: pgtest.Driver(), MaxOpenConns: conns})
				require.NoError(t, err)
				t.Cleanup(func() { _ = db.Close() })
				require.Equal(t, tc.params != nil, database.PoolerSafe(db))
				// Limits high enough that no lock interferes with the counts.
				s, err := lockout.New(db, lockout.Config{Now: clk.Now, Logger: slog.New(slog.DiscardHandler), Timeout: time.Minute,
					Policy: lockout.Policy{MaxFailures: 10000, EmailLimit: lockout.Off, IPLimit: lockout.Off}})
				require.NoError(t, err)
				t.Cleanup(func() { _ = s.Close() })
				services[i] = s
			}
			serviceWorkload(t, services, workers, pgtest.Open(t, dbURL))
		})
	}
}

// serviceWorkload has workers goroutines per service record failures on a
// set of (email, ip) pairs, known and unknown IPs, between checks, status
// reads, successes and unlocks of pairs of their own, then checks every
// count from the database.
func serviceWorkload(t *testing.T, services []*lockout.Service, workers int, direct *sql.DB) {
	t.Helper()
	ctx := context.Background()
	const emails, ips, rounds = 6, 4, 4
	email := func(i int) string { return fmt.Sprintf("user%d@example.org", i) }
	ip := func(i int) string {
		if i == ips-1 {
			return "" // unknown: the advisory-lock path
		}
		return fmt.Sprintf("203.0.113.%d", 10+i)
	}
	errs := make(chan error, len(services)*workers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for si, s := range services {
		for w := range workers {
			wg.Go(func() {
				<-start
				fail := func(err error) { errs <- fmt.Errorf("service %d worker %d: %w", si, w, err) }
				own := fmt.Sprintf("own-%d-%d@example.org", si, w)
				for r := range rounds {
					e, a := email((w+r)%emails), ip((w+si+r)%ips)
					if _, err := s.Check(ctx, e, a); err != nil {
						fail(err)
						return
					}
					if _, err := s.RecordFailure(ctx, e, a); err != nil {
						fail(err)
						return
					}
					// A pair of the worker's own: fail, succeed, unlock.
					if _, err := s.RecordFailure(ctx, own, a); err != nil {
						fail(err)
						return
					}
					if err := s.RecordSuccess(ctx, own, a); err != nil {
						fail(err)
						return
					}
					if _, err := s.Status(ctx, e); err != nil {
						fail(err)
						return
					}
				}
				if _, err := s.UnlockPair(ctx, own, ""); err != nil {
					fail(err)
					return
				}
				if _, err := s.UnlockEmail(ctx, own); err != nil {
					fail(err)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 5 {
			t.Error(err)
		}
	}
	require.Zero(t, n, "every call succeeds")

	// The shared pairs hold exactly the failures recorded on them.
	want := map[string]int{}
	for si := range services {
		for w := range workers {
			for r := range rounds {
				want[email((w+r)%emails)+"|"+ip((w+si+r)%ips)]++
			}
		}
	}
	got := map[string]int{}
	rows, err := direct.QueryContext(ctx, `SELECT id, email, coalesce(ip, ''), "failuresCount" FROM auth_attempts`)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var id, e, a string
		var c int
		require.NoError(t, rows.Scan(&id, &e, &a, &c))
		// No row holds a value of another column.
		assert.Len(t, id, 25, "id %q is a cuid", id)
		assert.Regexp(t, `^(user\d|own-\d+-\d+)@example\.org$`, e)
		if a != "" {
			_, err := netip.ParseAddr(a)
			assert.NoError(t, err, "ip %q", a)
		}
		if e[:3] == "own" {
			assert.Zero(t, c, "%s|%s was reset", e, a)
			continue
		}
		got[e+"|"+a] += c
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, want, got, "every acknowledged failure is counted once")

	// Decisions and operator calls agree with the rows.
	d, err := services[0].Check(ctx, email(0), ip(0))
	require.NoError(t, err)
	assert.True(t, d.Allowed)
	unlocked, err := services[1].UnlockIP(ctx, ip(0))
	require.NoError(t, err)
	assert.Positive(t, unlocked)
	_, err = services[2].Purge(ctx)
	require.NoError(t, err)
}

// An undersized session pool makes a client queue inside PgBouncer for a
// server connection: the call still returns by its context's deadline,
// failing closed, instead of waiting for the pooler.
func TestUndersizedSessionPoolReturnsByDeadline(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	url := pgtest.StartBouncer(t, pgcluster.PoolSession, 1, nil).URL(t, dbURL)
	ctx := context.Background()
	holder, err := database.OpenConfig(url, database.Config{Driver: pgtest.Driver()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = holder.Close() })
	held, err := holder.Conn(ctx) // the pooler's only server connection
	require.NoError(t, err)
	require.NoError(t, held.PingContext(ctx))
	t.Cleanup(func() { _ = held.Close() })

	db, err := database.OpenConfig(url, database.Config{Driver: pgtest.Driver()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	s, err := lockout.New(db, lockout.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := s.Check(short, ann, "192.0.2.1"); done <- err }()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, lockout.ErrUnavailable)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(3 * time.Second):
		t.Fatal("Check waited for the pooler past its deadline")
	}
}
