package soak

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/klozd/api/internal/pgcluster"
)

// Faults injects failures into the server of one database.
type Faults struct {
	cluster *pgcluster.Cluster
	admin   *sql.DB // superuser pool on the maintenance database
	dbName  string
}

// Restart stops PostgreSQL in fast mode, keeps it down for pause, and
// starts it again, as "pg_ctl restart -m fast" does. It returns once the
// server accepts connections again.
func (f *Faults) Restart(ctx context.Context, pause time.Duration) error {
	if err := f.cluster.Shutdown(); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	if pause > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(pause): // the server is down for pause: the fault itself
		}
	}
	if err := f.cluster.Restart(ctx); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	// The admin pool's connections died with the server.
	f.admin.SetMaxIdleConns(0)
	f.admin.SetMaxIdleConns(2)
	return nil
}

// KillConnections terminates every client connection to the database,
// once some of them are in use (running a statement or inside a
// transaction), so that the fault hits requests mid-flight and not only
// idle pool connections. It waits up to a second for a connection in use,
// then terminates the idle ones regardless. It returns how many it
// terminated and how many of these were in use.
func (f *Faults) KillConnections(ctx context.Context) (killed, inUse int, err error) {
	deadline := time.Now().Add(time.Second)
	for {
		force := !time.Now().Before(deadline)
		err := f.admin.QueryRowContext(ctx, `
WITH s AS (
	SELECT pid, state FROM pg_stat_activity
	WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'
), busy AS (SELECT count(*) FILTER (WHERE state <> 'idle') AS n FROM s)
SELECT (SELECT n FROM busy), count(*) FILTER (WHERE pg_terminate_backend(s.pid))
FROM s WHERE $2 OR (SELECT n FROM busy) > 0`, f.dbName, force).Scan(&inUse, &killed)
		if err != nil {
			return 0, 0, fmt.Errorf("terminate backends: %w", err)
		}
		if killed > 0 || force {
			return killed, inUse, nil
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(5 * time.Millisecond): // look again for a connection in use
		}
	}
}

// HoldLocks takes an exclusive lock on both tables for d, so statements
// touching them wait past their lock and statement timeouts, then releases
// it. It returns when the lock is released.
func (f *Faults) HoldLocks(ctx context.Context, url string, d time.Duration) error {
	db, err := sql.Open("postgres", url)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("hold locks: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `LOCK TABLE "idempotency_records", "auth_attempts" IN ACCESS EXCLUSIVE MODE`); err != nil {
		return fmt.Errorf("hold locks: %w", err)
	}
	// The lock is held for d of wall time: the fault itself, not a wait for a race.
	if _, err := tx.ExecContext(ctx, `SELECT pg_sleep($1)`, d.Seconds()); err != nil {
		return fmt.Errorf("hold locks: %w", err)
	}
	return nil
}
