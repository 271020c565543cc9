package lockout_test

import (
	"cmp"
	"context"
	"database/sql"
	"log/slog"
	neturl "net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/lockout"
	"github.com/klozd/api/internal/pgtest"
)

// 200 concurrent failures for one pair, from two independent pools (two
// instances of the service), land in one row with a count of exactly 200,
// and exactly one of them sets the lock. Run for a known IP (one upsert)
// and an unknown one (advisory lock, update or insert), and with sessions
// whose default isolation (set on a role or database) is stronger than
// READ COMMITTED.
func TestConcurrentFailuresAreAllCounted(t *testing.T) {
	t.Parallel()
	for _, iso := range []string{"", "repeatable read", "serializable"} {
		for _, tc := range []struct{ name, ip, stored string }{
			{"known ip", "203.0.113.9", "203.0.113.9"},
			{"unknown ip", "", ""},
		} {
			name := tc.name
			if iso != "" {
				name += "/" + iso
			}
			t.Run(name, func(t *testing.T) { concurrentFailures(t, iso, tc.ip, tc.stored) })
		}
	}
}

func concurrentFailures(t *testing.T, isolation, ip, stored string) {
	t.Parallel()
	const n = 200
	url := pgtest.URL(t)
	poolURL := url
	if isolation != "" {
		u, err := neturl.Parse(url)
		require.NoError(t, err)
		q := u.Query()
		q.Set("default_transaction_isolation", isolation)
		u.RawQuery = q.Encode()
		poolURL = u.String()
	}
	clk := newClock()
	var locks atomic.Int64
	cfg := lockout.Config{
		Now:     clk.Now,
		Logger:  slog.New(slog.DiscardHandler),
		Timeout: time.Minute, // counts, not latency, are checked
		OnDecision: func(_ context.Context, op lockout.Op, d lockout.Decision) {
			if op == lockout.OpFailure && d.LockedNow {
				locks.Add(1)
			}
		},
	}
	var svcs [2]*lockout.Service
	for i := range svcs {
		db := pgtest.Open(t, poolURL)
		db.SetMaxOpenConns(20)
		var got string
		require.NoError(t, db.QueryRow(`SHOW default_transaction_isolation`).Scan(&got))
		require.Equal(t, cmp.Or(isolation, "read committed"), got)
		s, err := lockout.New(db, cfg)
		require.NoError(t, err)
		svcs[i] = s
	}

	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	var lockedNow atomic.Int64
	for i := range n {
		wg.Go(func() {
			<-start
			d, err := svcs[i%2].RecordFailure(context.Background(), ann, ip)
			if err != nil {
				errs <- err
			}
			if d.LockedNow {
				lockedNow.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}

	got := rows(t, pgtest.Open(t, url))
	require.Len(t, got, 1, "exactly one row")
	assert.Equal(t, stored, got[0].IP.String)
	assert.Equal(t, ip != "", got[0].IP.Valid)
	assert.Equal(t, n, got[0].Failures, "no failure lost")
	require.True(t, got[0].LockedUntil.Valid)
	now := clk.Now().UTC().Truncate(time.Millisecond)
	assert.Equal(t, now.Add(15*time.Minute), got[0].LockedUntil.Time.UTC(), "locked once, for the first lock's length")
	assert.Equal(t, int64(1), lockedNow.Load(), "exactly one failure set the lock")
	assert.Equal(t, int64(1), locks.Load(), "the hook saw one lock")
}

// The unique index lets two (email, NULL) rows exist, as data written
// before this service may hold. The email is still decided, on the latest
// lock, instead of failing closed for good.
func TestDuplicateUnknownIPRowsStillDecide(t *testing.T) {
	t.Parallel()
	s, db, clk := newService(t, lockout.Config{})
	ctx := context.Background()
	now := clk.Now().UTC()
	for i, id := range []string{"legacy1", "legacy2"} {
		_, err := db.ExecContext(ctx, `INSERT INTO auth_attempts (id, email, ip, "failuresCount", "lockedUntil", "lastAttemptAt", "updatedAt")
			VALUES ($1, $2, NULL, 5, $3::timestamp(3), $4::timestamp(3), $4::timestamp(3))`,
			id, ann, now.Add(time.Duration(i+1)*time.Minute), now)
		require.NoError(t, err)
	}
	d, err := s.Check(ctx, ann, "")
	require.NoError(t, err)
	assert.False(t, d.Allowed)
	assert.Equal(t, 2*time.Minute, d.RetryAfter, "the latest of the two locks")
	_, err = s.RecordFailure(ctx, ann, "")
	require.NoError(t, err)
}

// With two (email, NULL) rows, a failure counts on one of them, the one
// with the latest lock, and its decision agrees with Check's.
func TestDuplicateUnknownIPRowsCountOnOne(t *testing.T) {
	t.Parallel()
	s, db, clk := newService(t, lockout.Config{})
	ctx := context.Background()
	now := clk.Now().UTC()
	for _, r := range []struct {
		id string
		n  int
	}{{"legacy-low", 1}, {"legacy-high", 4}} {
		_, err := db.ExecContext(ctx, `INSERT INTO auth_attempts (id, email, ip, "failuresCount", "lastAttemptAt", "updatedAt")
			VALUES ($1, $2, NULL, $3, $4::timestamp(3), $4::timestamp(3))`, r.id, ann, r.n, now)
		require.NoError(t, err)
	}
	_, err := db.ExecContext(ctx, `UPDATE auth_attempts SET "lockedUntil" = $1::timestamp(3) - interval '1 hour' WHERE id = 'legacy-high'`, now)
	require.NoError(t, err)
	d, err := s.RecordFailure(ctx, ann, "")
	require.NoError(t, err)
	assert.Equal(t, 5, d.Failures, "counted on the row with the latest lock")
	assert.True(t, d.LockedNow)
	c, err := s.Check(ctx, ann, "")
	require.NoError(t, err)
	assert.False(t, c.Allowed)
	assert.Equal(t, c.Until, d.Until, "RecordFailure and Check agree")
	var low int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT "failuresCount" FROM auth_attempts WHERE id = 'legacy-low'`).Scan(&low))
	assert.Equal(t, 1, low, "the other row is left alone")
}

// Under a default isolation above READ COMMITTED, a success, an unlock or
// a purge that meets a concurrent write on its row still lands, instead of
// failing with a serialization error.
func TestResetsLandUnderStrongerIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for name, reset := range map[string]func(*lockout.Service) error{
		"success":      func(s *lockout.Service) error { return s.RecordSuccess(ctx, ann, "192.0.2.1") },
		"unlock pair":  func(s *lockout.Service) error { _, err := s.UnlockPair(ctx, ann, "192.0.2.1"); return err },
		"unlock email": func(s *lockout.Service) error { _, err := s.UnlockEmail(ctx, ann); return err },
		"unlock ip":    func(s *lockout.Service) error { _, err := s.UnlockIP(ctx, "192.0.2.1"); return err },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			url := pgtest.URL(t)
			u, err := neturl.Parse(url)
			require.NoError(t, err)
			q := u.Query()
			q.Set("default_transaction_isolation", "repeatable read")
			u.RawQuery = q.Encode()
			s, err := lockout.New(pgtest.Open(t, u.String()), lockout.Config{Now: newClock().Now, Logger: slog.New(slog.DiscardHandler), Timeout: time.Minute})
			require.NoError(t, err)
			for range 5 {
				_, err := s.RecordFailure(ctx, ann, "192.0.2.1")
				require.NoError(t, err)
			}
			// Another writer holds the row; the reset waits for it.
			other := pgtest.Open(t, url)
			tx, err := other.BeginTx(ctx, nil)
			require.NoError(t, err)
			_, err = tx.ExecContext(ctx, `UPDATE auth_attempts SET "updatedAt" = "updatedAt" WHERE email = $1`, ann)
			require.NoError(t, err)
			done := make(chan error, 1)
			go func() { done <- reset(s) }()
			waitForLockWait(t, other)
			require.NoError(t, tx.Commit())
			require.NoError(t, <-done)
			d, err := s.Check(ctx, ann, "192.0.2.1")
			require.NoError(t, err)
			assert.True(t, d.Allowed, "the reset landed")
		})
	}
}

// waitForLockWait returns once a session of db's database waits on a lock.
func waitForLockWait(t *testing.T, db *sql.DB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a bound against a hang
	for {
		var waiting int
		require.NoError(t, db.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting))
		if waiting > 0 {
			return
		}
		require.True(t, time.Now().Before(deadline), "no session waited on the lock")
	}
}
