package lockout_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/lockout"
	"github.com/klozd/api/internal/pgtest"
)

// Against a frozen backend (SIGSTOP: what a partition leaves a connection
// waiting on), every call returns by its context's deadline, or by
// Config.Timeout when its context has none, and fails closed; the pool
// goes on on a new connection once the backend is gone.
func TestCallsReturnByDeadlineOnFrozenBackend(t *testing.T) {
	t.Parallel()
	const deadline = 300 * time.Millisecond
	const bound = 3 * time.Second // far above database.DeadlineSlack; a stuck call waits forever
	for _, drv := range []string{database.DriverPQ, database.DriverPGX} {
		t.Run(drv, func(t *testing.T) {
			t.Parallel()
			db, err := database.OpenConfig(pgtest.URL(t), database.Config{Driver: drv, MaxOpenConns: 1, StatementTimeout: 2 * time.Second})
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			s, err := lockout.New(db, lockout.Config{Logger: slog.New(slog.DiscardHandler), Timeout: deadline})
			require.NoError(t, err)
			calls := map[string]func(ctx context.Context) (lockout.Decision, error){
				"check": func(ctx context.Context) (lockout.Decision, error) { return s.Check(ctx, ann, "192.0.2.1") },
				"failure": func(ctx context.Context) (lockout.Decision, error) {
					return s.RecordFailure(ctx, ann, "192.0.2.1")
				},
				"failure, unknown ip": func(ctx context.Context) (lockout.Decision, error) {
					return s.RecordFailure(ctx, ann, "")
				},
			}
			for name, call := range calls {
				for _, withDeadline := range []bool{true, false} {
					sub := name + "/no deadline: Config.Timeout"
					if withDeadline {
						sub = name + "/deadline"
					}
					t.Run(sub, func(t *testing.T) {
						ctx := context.Background()
						thaw := pgtest.Freeze(t, db)
						if withDeadline {
							var cancel context.CancelFunc
							ctx, cancel = context.WithTimeout(ctx, deadline)
							defer cancel()
						}
						type result struct {
							d   lockout.Decision
							err error
						}
						done := make(chan result, 1)
						go func() { d, err := call(ctx); done <- result{d, err} }()
						select {
						case r := <-done:
							assert.ErrorIs(t, r.err, lockout.ErrUnavailable)
							assert.ErrorIs(t, r.err, context.DeadlineExceeded)
							assert.False(t, r.d.Allowed, "fails closed")
						case <-time.After(deadline + bound):
							t.Fatalf("%s had not returned %s after its deadline", name, bound)
						}
						thaw()
						_, err := s.Check(context.Background(), ann, "192.0.2.1")
						require.NoError(t, err, "the pool goes on on a new connection")
					})
				}
			}
		})
	}
}
