package pgcluster_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgcluster"
)

func TestStartRestartStop(t *testing.T) {
	ctx := context.Background()
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop() })

	db, err := sql.Open("postgres", c.URL("postgres"))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.ExecContext(ctx, `CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)`)
	require.NoError(t, err)

	require.NoError(t, c.Restart(ctx))
	var n int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT n FROM kept`).Scan(&n), "data survives a restart on the same port")
	require.Equal(t, 42, n)

	require.NoError(t, c.Stop())
	require.Error(t, db.PingContext(ctx), "server is gone after Stop")
}
