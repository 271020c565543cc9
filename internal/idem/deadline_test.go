package idem

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/pgtest"
)

// Against a frozen backend (SIGSTOP: what a partition leaves a connection
// waiting on), every Store call returns by its context's deadline, or by
// StoreConfig.Timeout when its context has none, and the pool goes on on a
// new connection once the backend is gone.
func TestStoreCallsReturnByDeadlineOnFrozenBackend(t *testing.T) {
	t.Parallel()
	const deadline = 300 * time.Millisecond
	const bound = 3 * time.Second // far above database.DeadlineSlack; a stuck call waits forever
	for _, drv := range []string{database.DriverPQ, database.DriverPGX} {
		t.Run(drv, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, err := database.OpenConfig(pgtest.URL(t), database.Config{Driver: drv, MaxOpenConns: 1})
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			s := NewStore(db, StoreConfig{Timeout: deadline})
			res, err := s.Begin(ctx, storeReq("held"))
			require.NoError(t, err)
			claim := res.Claim
			calls := map[string]func(ctx context.Context) error{
				"begin": func(ctx context.Context) error { _, err := s.Begin(ctx, storeReq("new")); return err },
				"renew": func(ctx context.Context) error { return s.Renew(ctx, claim) },
				"complete": func(ctx context.Context) error {
					return s.Complete(ctx, claim, Response{Status: 201, Header: http.Header{}, Body: []byte(`{}`)})
				},
				"release": func(ctx context.Context) error { return s.Release(ctx, claim) },
			}
			for name, call := range calls {
				for _, withDeadline := range []bool{true, false} {
					sub := name + "/no deadline: StoreConfig.Timeout"
					if withDeadline {
						sub = name + "/deadline"
					}
					t.Run(sub, func(t *testing.T) {
						thaw := pgtest.Freeze(t, db)
						cctx := ctx
						if withDeadline {
							var cancel context.CancelFunc
							cctx, cancel = context.WithTimeout(ctx, deadline)
							defer cancel()
						}
						done := make(chan error, 1)
						go func() { done <- call(cctx) }()
						select {
						case err := <-done:
							assert.ErrorIs(t, err, context.DeadlineExceeded)
						case <-time.After(deadline + bound):
							t.Fatalf("%s had not returned %s after its deadline", name, bound)
						}
						thaw()
						_, err := s.Begin(ctx, storeReq("after"))
						require.NoError(t, err, "the pool goes on on a new connection")
						_, err = db.ExecContext(ctx, `DELETE FROM idempotency_records WHERE "id" <> $1`, claim.token)
						require.NoError(t, err)
					})
				}
			}
		})
	}
}
