package lockout_test

import (
	"cmp"
	"context"
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
		Now:    clk.Now,
		Logger: slog.New(slog.DiscardHandler),
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
