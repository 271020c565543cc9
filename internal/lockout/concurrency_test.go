package lockout_test

import (
	"context"
	"log/slog"
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
// and an unknown one (advisory lock, update or insert).
func TestConcurrentFailuresAreAllCounted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, ip, stored string }{
		{"known ip", "203.0.113.9", "203.0.113.9"},
		{"unknown ip", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 200
			url := pgtest.URL(t)
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
				db := pgtest.Open(t, url)
				db.SetMaxOpenConns(20)
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
					d, err := svcs[i%2].RecordFailure(context.Background(), ann, tc.ip)
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
			assert.Equal(t, tc.stored, got[0].IP.String)
			assert.Equal(t, tc.ip != "", got[0].IP.Valid)
			assert.Equal(t, n, got[0].Failures, "no failure lost")
			require.True(t, got[0].LockedUntil.Valid)
			now := clk.Now().UTC().Truncate(time.Millisecond)
			assert.Equal(t, now.Add(15*time.Minute), got[0].LockedUntil.Time.UTC(), "locked once, for the first lock's length")
			assert.Equal(t, int64(1), lockedNow.Load(), "exactly one failure set the lock")
			assert.Equal(t, int64(1), locks.Load(), "the hook saw one lock")
		})
	}
}
