package database_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/pgcluster"
	"github.com/klozd/api/internal/pgtest"
)

// A connection whose session turned read-only is dropped at its first
// read-only error: a write refused before any row runs again on a new
// connection (it did not run), one refused with its first row fails, and
// either way the pool's next statement runs on a new connection.
func TestReadOnlySessionIsDropped(t *testing.T) {
	t.Parallel()
	for _, drv := range []string{database.DriverPQ, database.DriverPGX} {
		t.Run(drv, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, err := database.OpenConfig(pgtest.URL(t), database.Config{Driver: drv, MaxOpenConns: 1})
			require.NoError(t, err)
			defer db.Close()
			_, err = db.ExecContext(ctx, `CREATE TABLE ro_probe (n int)`)
			require.NoError(t, err)
			count := func() (n int) {
				require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM ro_probe`).Scan(&n))
				return n
			}
			for i, write := range []func() error{
				func() error { _, err := db.ExecContext(ctx, `INSERT INTO ro_probe VALUES ($1)`, 1); return err },
				func() error {
					var n int
					return db.QueryRowContext(ctx, `INSERT INTO ro_probe VALUES ($1) RETURNING n`, 2).Scan(&n)
				},
			} {
				before, pid := count(), 0
				require.NoError(t, db.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
				// The pool's only connection turns read-only, as a server
				// turned read-only under its sessions would be.
				_, err = db.ExecContext(ctx, `SET default_transaction_read_only = on`)
				require.NoError(t, err)
				err := write()
				after := count()
				if err != nil {
					assert.Equal(t, database.ReadOnlyTransaction, database.SQLState(err), "write %d: %v", i, err)
					assert.Equal(t, before, after, "write %d: nothing written", i)
				} else {
					assert.Equal(t, before+1, after, "write %d ran once, on a new connection", i)
				}
				var now int
				require.NoError(t, db.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&now))
				assert.NotEqual(t, pid, now, "write %d: the read-only connection was dropped", i)
			}
		})
	}
}

// Through PgBouncer the timeouts cannot travel as startup parameters: a
// pooler-safe pool checks that the role carries them, and a statement past
// them is cancelled through the pooler.
func TestTimeoutsHoldThroughPgBouncer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.URL(t)
	admin := pgtest.Open(t, pgtest.Start(t).AdminURL)
	role := fmt.Sprintf("klozd_timeouts_%d", time.Now().UnixNano())
	bare := role + "_bare"
	for _, q := range []string{
		`CREATE ROLE ` + role + ` LOGIN`,
		`ALTER ROLE ` + role + ` SET statement_timeout = '300ms'`,
		`ALTER ROLE ` + role + ` SET lock_timeout = '200ms'`,
		`CREATE ROLE ` + bare + ` LOGIN`,
	} {
		_, err := admin.ExecContext(ctx, q)
		require.NoError(t, err, q)
	}
	t.Cleanup(func() {
		_, _ = admin.ExecContext(context.WithoutCancel(ctx), `DROP ROLE IF EXISTS `+role)
		_, _ = admin.ExecContext(context.WithoutCancel(ctx), `DROP ROLE IF EXISTS `+bare)
	})
	b := pgtest.StartBouncer(t, pgcluster.PoolTransaction, 4, map[string]string{role: "", bare: ""})
	as := func(user string) string {
		u := b.URL(t, dbURL, "pgbouncer", "true")
		return "postgres://" + user + "@" + u[len("postgres://pgtdbuser:pgtdbpass@"):]
	}
	for _, drv := range []string{database.DriverPQ, database.DriverPGX} {
		t.Run(drv, func(t *testing.T) {
			cfg := database.Config{Driver: drv, StatementTimeout: 300 * time.Millisecond, LockTimeout: 200 * time.Millisecond}
			db, err := database.OpenConfig(as(role), cfg)
			require.NoError(t, err)
			defer db.Close()
			require.NoError(t, db.PingContext(ctx), "the role carries the timeouts")
			assert.True(t, database.PoolerSafe(db))
			_, err = db.ExecContext(ctx, `SELECT pg_sleep($1)`, 5)
			assert.Equal(t, database.QueryCanceled, database.SQLState(err), "statement_timeout cancelled it through the pooler: %v", err)

			for _, tc := range []struct {
				user string
				cfg  database.Config
				want string
			}{
				{bare, cfg, "the server's statement_timeout is 0 (none)"},
				{role, database.Config{Driver: drv, StatementTimeout: 100 * time.Millisecond}, "statement_timeout is 300ms, over the configured 100ms"},
				{role, database.Config{Driver: drv, LockTimeout: 50 * time.Millisecond}, "lock_timeout is 200ms, over the configured 50ms"},
			} {
				db, err := database.OpenConfig(as(tc.user), tc.cfg)
				require.NoError(t, err)
				err = db.PingContext(ctx)
				_ = db.Close()
				require.Error(t, err, "refused")
				assert.Contains(t, err.Error(), tc.want)
				assert.Contains(t, err.Error(), "ALTER ROLE")
			}
		})
	}
}

// A connection the server terminated while it sat idle in the pool is
// dropped at its next statement, which runs again on a new connection:
// nothing ran on the terminated session.
func TestTerminatedIdleConnectionIsReplaced(t *testing.T) {
	t.Parallel()
	for _, drv := range []string{database.DriverPQ, database.DriverPGX} {
		t.Run(drv, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, err := database.OpenConfig(pgtest.URL(t), database.Config{Driver: drv, MaxOpenConns: 1})
			require.NoError(t, err)
			defer db.Close()
			admin := pgtest.Open(t, pgtest.Start(t).AdminURL)
			_, err = db.ExecContext(ctx, `CREATE TABLE t_probe (n int)`)
			require.NoError(t, err)
			var pid int
			require.NoError(t, db.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
			_, err = admin.ExecContext(ctx, `SELECT pg_terminate_backend($1, 5000)`, pid) // waits until it is gone
			require.NoError(t, err)

			_, err = db.ExecContext(ctx, `INSERT INTO t_probe VALUES ($1)`, 1)
			require.NoError(t, err, "the statement ran again on a new connection")
			var n, now int
			require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*), pg_backend_pid() FROM t_probe`).Scan(&n, &now))
			assert.Equal(t, 1, n, "it ran once")
			assert.NotEqual(t, pid, now)
		})
	}
}
