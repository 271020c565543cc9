package pgcluster_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgcluster"
)

// TestBouncerTransactionPooling shows the bouncer pools by transaction: two
// statements of one client session may run on different server backends,
// while a transaction keeps its backend.
func TestBouncerTransactionPooling(t *testing.T) {
	ctx := context.Background()
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop() })
	b, err := pgcluster.StartBouncer(ctx, pgcluster.BouncerOptions{
		Host: "127.0.0.1", Port: c.Port(), Users: map[string]string{"postgres": ""}, PoolSize: 4,
	})
	require.NoError(t, err, "bouncer log: %s", logOf(b))
	t.Cleanup(func() { _ = b.Stop() })

	open := func() *sql.DB {
		db, err := sql.Open("postgres", fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", b.Addr()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	client, other := open(), open()
	client.SetMaxOpenConns(1) // one client connection throughout
	pid := func(q interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
	}) int {
		var pid int
		require.NoError(t, q.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
		return pid
	}
	for range 20 {
		before := pid(client)
		tx, err := other.BeginTx(ctx, nil)
		require.NoError(t, err)
		held := pid(tx)
		if held != before {
			_ = tx.Rollback()
			continue
		}
		// The backend the client just used is held by another client's
		// transaction: the client's next statement runs elsewhere.
		after := pid(client)
		_ = tx.Rollback()
		require.NotEqual(t, before, after)
		return
	}
	t.Fatal("another client never got the backend the client had just released")
}

func logOf(b *pgcluster.Bouncer) string {
	if b == nil {
		return ""
	}
	return b.Log()
}
