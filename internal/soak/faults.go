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
	standby *pgcluster.Cluster // the failover scenarios' standby of cluster
	admin   *sql.DB            // superuser pool on the maintenance database
	dbName  string
}

// Restart stops PostgreSQL in fast mode, keeps it down for pause, and
// starts it again, as "pg_ctl restart -m fast" does. It calls arm once the
// server is down, and returns once it accepts connections again.
func (f *Faults) Restart(ctx context.Context, pause time.Duration, arm func()) error {
	if err := f.cluster.Shutdown(); err != nil {
		return fmt.Errorf("restart the server: %w", err)
	}
	arm()
	if pause > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(pause): // the server is down for pause: the fault itself
		}
	}
	if err := f.cluster.Restart(ctx); err != nil {
		return fmt.Errorf("restart the server: %w", err)
	}
	// The admin pool's connections died with the server.
	f.admin.SetMaxIdleConns(0)
	f.admin.SetMaxIdleConns(2)
	return nil
}

// KillConnections terminates every client connection to the database
// while some are in use, so that the fault hits statements mid-flight and
// not only idle pool connections, which a pool replaces unnoticed. To
// find connections in use it locks both tables, as HoldLocks does, for at
// most wait: the statements that touch them then wait (in use) instead of
// finishing within a millisecond. It terminates every connection as soon
// as one is in use, or when wait has passed, then releases the lock. It
// calls arm once the lock is held, so that the load, paused until then,
// sends statements that wait on it. It returns how many connections it
// terminated and how many were in use.
func (f *Faults) KillConnections(ctx context.Context, url string, wait time.Duration, arm func()) (killed, inUse int, err error) {
	db, err := sql.Open("postgres", url)
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("kill connections: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var holder int
	if err := tx.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&holder); err != nil {
		return 0, 0, fmt.Errorf("kill connections: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `LOCK TABLE "idempotency_records", "auth_attempts" IN ACCESS EXCLUSIVE MODE`); err != nil {
		return 0, 0, fmt.Errorf("kill connections: %w", err)
	}
	arm()
	deadline := time.Now().Add(wait)
	for {
		force := !time.Now().Before(deadline)
		err := f.admin.QueryRowContext(ctx, `
WITH s AS (
	SELECT pid, state FROM pg_stat_activity
	WHERE datname = $1 AND pid NOT IN (pg_backend_pid(), $2) AND backend_type = 'client backend'
), busy AS (SELECT count(*) FILTER (WHERE state <> 'idle') AS n FROM s)
SELECT (SELECT n FROM busy), count(*) FILTER (WHERE pg_terminate_backend(s.pid))
FROM s WHERE $3 OR (SELECT n FROM busy) > 0`, f.dbName, holder, force).Scan(&inUse, &killed)
		if err != nil {
			return 0, 0, fmt.Errorf("terminate backends: %w", err)
		}
		if killed > 0 || force {
			return killed, inUse, nil
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(2 * time.Millisecond): // look again for a connection in use
		}
	}
}

// HoldLocks takes an exclusive lock on both tables for d, so statements
// touching them wait past their lock and statement timeouts, then releases
// it. It calls arm once the lock is held, and returns when it is released.
func (f *Faults) HoldLocks(ctx context.Context, url string, d time.Duration, arm func()) error {
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
	arm()
	// The lock is held for d of wall time: the fault itself, not a wait for a race.
	if _, err := tx.ExecContext(ctx, `SELECT pg_sleep($1)`, d.Seconds()); err != nil {
		return fmt.Errorf("hold locks: %w", err)
	}
	return nil
}
