package lockout_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/lockout"
	"github.com/klozd/api/internal/pgtest"
)

func TestPurge(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	clk := newClock()
	now := clk.Now().UTC().Truncate(time.Millisecond)
	db := pgtest.Open(t, url)
	ctx := context.Background()
	// 500 stale rows, and rows that must stay.
	_, err := db.ExecContext(ctx, `INSERT INTO auth_attempts (id, email, ip, "failuresCount", "lockedUntil", "lastAttemptAt", "updatedAt")
		SELECT 'stale' || i, 'stale' || i || '@x.org', NULL, 3, CASE WHEN i % 2 = 0 THEN $1::timestamp - interval '16 minutes' END, $1::timestamp - interval '20 minutes', $1
		FROM generate_series(1, 500) i`, now)
	require.NoError(t, err)
	keep := []struct {
		name         string
		last, locked time.Duration // relative to now; locked 0 = NULL
	}{
		{"recent failure", -time.Minute, 0},
		{"failure at the edge of the window", -15*time.Minute + time.Millisecond, 0},
		{"still locked", -23 * time.Hour, time.Hour},
		{"lock ended within the window", -time.Hour, -10 * time.Minute},
	}
	for _, k := range keep {
		var locked any
		if k.locked != 0 {
			locked = now.Add(k.locked)
		}
		_, err := db.ExecContext(ctx, `INSERT INTO auth_attempts (id, email, "failuresCount", "lockedUntil", "lastAttemptAt", "updatedAt")
			VALUES ($1, $1, 5, $2, $3, $3)`, k.name, locked, now.Add(k.last))
		require.NoError(t, err)
	}

	counter, err := lockout.New(db, lockout.Config{Now: clk.Now})
	require.NoError(t, err)
	stale, err := counter.CountStale(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(500), stale, "CountStale counts what Purge deletes")

	// Four instances purge at once, in batches of 40.
	var wg sync.WaitGroup
	totals := make([]int64, 4)
	start := make(chan struct{})
	for i := range totals {
		pool := pgtest.Open(t, url)
		pool.SetMaxOpenConns(2)
		s, err := lockout.New(pool, lockout.Config{Now: clk.Now, PurgeBatch: 40, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		wg.Go(func() {
			<-start
			n, err := s.Purge(ctx)
			assert.NoError(t, err)
			totals[i] = n
		})
	}
	close(start)
	wg.Wait()
	var sum int64
	for _, n := range totals {
		sum += n
	}
	assert.Equal(t, int64(500), sum, "every stale row deleted once")
	var left []string
	for _, r := range rows(t, db) {
		left = append(left, r.Email)
	}
	assert.ElementsMatch(t, []string{"recent failure", "failure at the edge of the window", "still locked", "lock ended within the window"}, left)

	n, err := counter.Purge(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing left to purge")
	stale, err = counter.CountStale(ctx)
	require.NoError(t, err)
	assert.Zero(t, stale)
}

// Purge honours cancellation between batches.
func TestPurgeStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	s, db, clk := newService(t, lockout.Config{PurgeBatch: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	now := clk.Now().UTC()
	_, err := db.ExecContext(context.Background(), `INSERT INTO auth_attempts (id, email, "lastAttemptAt", "updatedAt")
		SELECT 'r' || i, 'r' || i, $1::timestamp - interval '1 day', $1 FROM generate_series(1, 3) i`, now)
	require.NoError(t, err)
	n, err := s.Purge(ctx)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, n)
	assert.Len(t, rows(t, db), 3)
}
