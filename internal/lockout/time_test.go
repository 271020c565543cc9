package lockout_test

import (
	"context"
	"database/sql"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/lockout"
	"github.com/klozd/api/internal/pgtest"
)

// With a clock in Tokyo and a session in Auckland, the rows hold UTC
// milliseconds and decisions are right.
func TestTimesAreUTCMillis(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	require.Contains(t, url, "timezone=UTC")
	db, err := sql.Open("postgres", strings.Replace(url, "timezone=UTC", "timezone=Pacific%2FAuckland", 1))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	var tz string
	require.NoError(t, db.QueryRow(`SHOW TimeZone`).Scan(&tz))
	require.Equal(t, "Pacific/Auckland", tz)

	clk := newClock()
	require.NotEqual(t, time.UTC, clk.Now().Location())
	s, err := lockout.New(db, lockout.Config{Now: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx := context.Background()
	for _, ip := range []string{"192.0.2.1", ""} {
		for range 5 {
			_, err := s.RecordFailure(ctx, ann, ip)
			require.NoError(t, err)
		}
	}
	want := time.Date(2026, 3, 1, 3, 0, 0, 123000000, time.UTC) // 12:00:00.123456789 JST
	got := rows(t, pgtest.Open(t, url))
	require.Len(t, got, 2)
	for _, r := range got {
		assert.Equal(t, want, r.Last.UTC())
		assert.Equal(t, want.Add(15*time.Minute), r.LockedUntil.Time.UTC())
	}
	var created, updated time.Time
	require.NoError(t, pgtest.Open(t, url).QueryRow(`SELECT "createdAt", "updatedAt" FROM auth_attempts LIMIT 1`).Scan(&created, &updated))
	assert.Equal(t, want, created.UTC(), "createdAt is written by the service, not by DEFAULT in the session's zone")
	assert.Equal(t, want, updated.UTC())

	clk.Add(15*time.Minute - time.Millisecond)
	d, err := s.Check(ctx, ann, "192.0.2.1")
	require.NoError(t, err)
	assert.Equal(t, time.Millisecond, d.Until.Sub(clk.Now().UTC().Truncate(time.Millisecond)))
	assert.Equal(t, time.Second, d.RetryAfter, "rounded up to the second")
}

// An instance whose clock is behind (or a failure that waited for the row
// lock after reading the clock) never moves lastAttemptAt back, which
// would shorten the window the failures count in.
func TestLastAttemptNeverMovesBack(t *testing.T) {
	t.Parallel()
	ahead, db, clk := newService(t, lockout.Config{})
	clk.Add(time.Minute)
	behindClock := newClock()
	behind, err := lockout.New(db, lockout.Config{Now: behindClock.Now, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx := context.Background()
	for _, ip := range []string{"192.0.2.1", ""} {
		_, err = ahead.RecordFailure(ctx, ann, ip)
		require.NoError(t, err)
		d, err := behind.RecordFailure(ctx, ann, ip)
		require.NoError(t, err)
		assert.Equal(t, 2, d.Failures, "counted on the same row")
	}
	for _, r := range rows(t, db) {
		assert.Equal(t, clk.Now().UTC().Truncate(time.Millisecond), r.Last.UTC(), "ip %v", r.IP)
	}
}

// A lastAttemptAt more than a window ahead (written by a clock far ahead)
// is not kept: the next failure from a correct clock writes its own time,
// so the pair starts over after a quiet window again.
func TestLastAttemptFarAheadIsNotKept(t *testing.T) {
	t.Parallel()
	good, db, clk := newService(t, lockout.Config{})
	ahead := newClock()
	ahead.Add(24 * time.Hour)
	bad, err := lockout.New(db, lockout.Config{Now: ahead.Now, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = bad.RecordFailure(ctx, ann, "192.0.2.1")
	require.NoError(t, err)
	_, err = good.RecordFailure(ctx, ann, "192.0.2.1")
	require.NoError(t, err)
	var d lockout.Decision
	for range 5 {
		clk.Add(20 * time.Minute) // more than the window between failures
		d, err = good.RecordFailure(ctx, ann, "192.0.2.1")
		require.NoError(t, err)
	}
	assert.Equal(t, 1, d.Failures, "each failure after a quiet window starts over")
	assert.True(t, d.Allowed)
}
