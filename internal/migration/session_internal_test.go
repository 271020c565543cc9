package migration

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgcluster"
)

// A lock taken through a transaction pooler that the probe did not catch
// is caught right after it is taken: the backend that took it is not the
// session's any more. verify refuses and releases it by ending that
// backend, so no lock stays behind on an idle pooled connection.
func TestVerifyReleasesLockTakenThroughPooler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop() })
	b, err := pgcluster.StartBouncer(ctx, pgcluster.BouncerOptions{
		Host: "127.0.0.1", Port: c.Port(), Users: map[string]string{"postgres": ""}, PoolMode: pgcluster.PoolTransaction,
	})
	if errors.Is(err, pgcluster.ErrNoBouncer) {
		t.Fatal("install pgbouncer (apt-get install pgbouncer) or set PGBOUNCER")
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Stop() })
	open := func(raw string) *sql.DB {
		db, err := sql.Open("postgres", raw)
		require.NoError(t, err)
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	direct := open(c.URL("postgres"))
	u, err := url.Parse(c.URL("postgres"))
	require.NoError(t, err)
	u.Host = b.Addr()
	pooled := open(u.String())

	for attempt := 0; ; attempt++ {
		require.Less(t, attempt, 20, "the pooler never moved the session off the backend that took the lock")
		conn, err := pooled.Conn(ctx)
		require.NoError(t, err)
		l := &sessionLock{db: pooled, conn: conn, key: lockKey(lockName)}
		require.NoError(t, l.conn.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&l.pid))
		require.NoError(t, l.acquire(ctx, 0))
		took := holdersOf(t, direct, l.key)
		require.Len(t, took, 1)
		// Another client's transaction takes the backend that holds the
		// lock, so the session's next statement runs elsewhere.
		tx, err := pooled.BeginTx(ctx, nil)
		require.NoError(t, err)
		var txPID int
		require.NoError(t, tx.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&txPID))
		if txPID != took[0] || took[0] != l.pid {
			// Not the arrangement this test needs: release and retry.
			require.NoError(t, tx.Rollback())
			_, err := direct.Exec(`SELECT pg_terminate_backend($1, 10000)`, took[0])
			require.NoError(t, err)
			_ = conn.Close()
			continue
		}
		err = l.verify(ctx)
		_ = tx.Rollback()
		require.ErrorIs(t, err, ErrPooled)
		assert.ErrorContains(t, err, "the session's statements ran on backends")
		assert.Empty(t, holdersOf(t, direct, l.key), "the backend that took the lock was ended")
		return
	}
}

func holdersOf(t *testing.T, db *sql.DB, key int64) []int {
	t.Helper()
	rows, err := db.Query(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND objsubid = 1`, key)
	require.NoError(t, err)
	defer rows.Close()
	var pids []int
	for rows.Next() {
		var pid int
		require.NoError(t, rows.Scan(&pid))
		pids = append(pids, pid)
	}
	require.NoError(t, rows.Err())
	return pids
}
