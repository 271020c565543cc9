package idem

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
)

func TestPurge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	clk := newClock()
	seed := NewStore(bounded(t, url, 2), StoreConfig{Now: clk.Now, TTL: time.Hour, Lease: time.Minute})

	// 250 completed records and 20 abandoned claims, all to expire; then 5
	// live records that must survive.
	for i := range 270 {
		res, err := seed.Begin(ctx, storeReq(fmt.Sprint("old-", i)))
		require.NoError(t, err)
		if i < 250 {
			require.NoError(t, seed.Complete(ctx, res.Claim, Response{Status: 200}))
		}
	}
	clk.Advance(2 * time.Hour)
	for i := range 5 {
		res, err := seed.Begin(ctx, storeReq(fmt.Sprint("live-", i)))
		require.NoError(t, err)
		require.NoError(t, seed.Complete(ctx, res.Claim, Response{Status: 200}))
	}

	// Three instances purge at once, in batches of 7.
	var wg sync.WaitGroup
	totals := make([]int64, 3)
	for i := range totals {
		s := NewStore(bounded(t, url, 1), StoreConfig{Now: clk.Now, PurgeBatch: 7})
		wg.Go(func() {
			n, err := s.Purge(ctx)
			assert.NoError(t, err)
			totals[i] = n
		})
	}
	wg.Wait()
	assert.Equal(t, int64(270), totals[0]+totals[1]+totals[2])

	var left int
	require.NoError(t, seed.db.QueryRowContext(ctx, `SELECT count(*) FROM idempotency_records`).Scan(&left))
	assert.Equal(t, 5, left)
	n, err := seed.Purge(ctx)
	require.NoError(t, err)
	assert.Zero(t, n)
}

// CountExpired counts what Purge deletes, and OnPurge sees the running total.
func TestPurgeCountAndProgress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	var seen []int64
	s := NewStore(pgtest.DB(t), StoreConfig{Now: clk.Now, TTL: time.Hour, PurgeBatch: 4,
		OnPurge: func(n int64) { seen = append(seen, n) }})
	for i := range 10 {
		res, err := s.Begin(ctx, storeReq(fmt.Sprint("k-", i)))
		require.NoError(t, err)
		require.NoError(t, s.Complete(ctx, res.Claim, Response{Status: 201}))
	}
	n, err := s.CountExpired(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing has expired yet")
	clk.Advance(2 * time.Hour)
	n, err = s.CountExpired(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(10), n)
	deleted, err := s.Purge(ctx)
	require.NoError(t, err)
	assert.Equal(t, n, deleted)
	assert.Equal(t, []int64{4, 8, 10}, seen)
}

// Without an injected clock, Purge judges expiry by the database's clock.
func TestPurgeUsesDatabaseClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	for i := range 3 {
		res, err := s.Begin(ctx, storeReq(fmt.Sprint("k-", i)))
		require.NoError(t, err)
		require.NoError(t, s.Complete(ctx, res.Claim, Response{Status: 201}))
	}
	// One record expired a second ago by the database's clock, one expires
	// in a second, one in a day.
	_, err := s.db.Exec(`UPDATE idempotency_records SET "expiresAt" = `+dbNow+` + CASE "key"
		WHEN $1 THEN interval '-1 second' WHEN $2 THEN interval '1 second' ELSE interval '1 day' END`,
		storedKey("org_1", "k-0"), storedKey("org_1", "k-1"))
	require.NoError(t, err)
	n, err := s.CountExpired(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	deleted, err := s.Purge(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(1), deleted)
	var left int
	require.NoError(t, s.db.QueryRow(`SELECT count(*) FROM idempotency_records`).Scan(&left))
	assert.Equal(t, 2, left)
}
