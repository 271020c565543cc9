package migration_test

import (
	"context"
	"database/sql"
	"testing"

	"ariga.io/atlas/sql/migrate"
	"ariga.io/atlas/sql/postgres"
	"ariga.io/atlas/sql/schema"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/migration"
	"github.com/klozd/api/internal/pgcluster"
	"github.com/klozd/api/internal/pgtest"
)

// lockHolders returns the backends holding the migration lock in the
// database of db.
func lockHolders(t *testing.T, db *sql.DB) []int {
	t.Helper()
	rows, err := db.Query(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND objsubid = 1
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, atlasLockID())
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

func TestCheckSessionDirect(t *testing.T) {
	t.Parallel()
	assert.NoError(t, migration.CheckSession(context.Background(), pgtest.Open(t, pgtest.EmptyURL(t))))
}

// PgBouncer in session mode gives each client session its own backend:
// migrating through it is fine.
func TestCheckSessionSessionPooling(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t, pgtest.ThroughBouncer(t, pgtest.EmptyURL(t), pgcluster.PoolSession))
	assert.NoError(t, migration.CheckSession(context.Background(), db))
}

func TestCheckSessionTransactionPooling(t *testing.T) {
	t.Parallel()
	db := pgtest.Open(t, pgtest.ThroughBouncer(t, pgtest.EmptyURL(t), pgcluster.PoolTransaction))
	err := migration.CheckSession(context.Background(), db)
	assert.ErrorIs(t, err, migration.ErrPooled)
}

// Apply through transaction pooling refuses before taking the lock: no
// lock stays behind and nothing is applied, not even the revisions table.
func TestApplyThroughTransactionPoolerRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	direct := pgtest.EmptyURL(t)
	pooled := pgtest.Open(t, pgtest.ThroughBouncer(t, direct, pgcluster.PoolTransaction))
	report, err := migration.Apply(ctx, pooled, dirWith(t, nil), migration.ApplyOptions{})
	require.ErrorIs(t, err, migration.ErrPooled)
	assert.Nil(t, report)

	db := pgtest.Open(t, direct)
	assert.Empty(t, lockHolders(t, db))
	var schemas int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM pg_namespace WHERE nspname = 'atlas_schema_revisions'`).Scan(&schemas))
	assert.Zero(t, schemas, "nothing was created")
	_, err = migration.Apply(ctx, db, dirWith(t, nil), migration.ApplyOptions{})
	require.NoError(t, err)
}

func TestApplyThroughSessionPooler(t *testing.T) {
	t.Parallel()
	direct := pgtest.EmptyURL(t)
	pooled := pgtest.Open(t, pgtest.ThroughBouncer(t, direct, pgcluster.PoolSession))
	report, err := migration.Apply(context.Background(), pooled, dirWith(t, nil), migration.ApplyOptions{})
	require.NoError(t, err)
	require.Len(t, report.Applied, 1)
	assert.Equal(t, firstFile, report.Applied[0].Name())
	assert.Empty(t, lockHolders(t, pgtest.Open(t, direct)))
}

// terminator ends the backend holding the migration lock when the first
// file starts, so that Apply cannot release the lock on its session.
type terminator struct {
	t      *testing.T
	admin  *sql.DB
	killed []int
}

func (l *terminator) Log(e migrate.LogEntry) {
	if _, ok := e.(migrate.LogFile); !ok || l.killed != nil {
		return
	}
	l.killed = lockHolders(l.t, l.admin)
	for _, pid := range l.killed {
		var ok bool
		require.NoError(l.t, l.admin.QueryRow(`SELECT pg_terminate_backend($1, 10000)`, pid).Scan(&ok))
		require.True(l.t, ok)
	}
}

// A lock that cannot be released is reported, with what was applied, and
// nothing holds it afterwards.
func TestApplyReportsFailedUnlock(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyURL(t)
	db := pgtest.Open(t, url)
	log := &terminator{t: t, admin: pgtest.Open(t, url)}
	report, err := migration.Apply(context.Background(), db, dirWith(t, nil), migration.ApplyOptions{Logger: log})
	require.Len(t, log.killed, 1, "one backend held the lock while the file ran")
	var ue *migration.UnlockError
	require.ErrorAs(t, err, &ue, "got %v", err)
	assert.ErrorContains(t, err, "migration: release migration lock: ")
	assert.ErrorContains(t, err, "pg_terminate_backend")
	require.NotNil(t, report)
	require.Len(t, report.Applied, 1, "the file was applied on another connection")
	assert.Empty(t, lockHolders(t, db))
	// The pool is usable and the next run finds nothing to do.
	report, err = migration.Apply(context.Background(), db, dirWith(t, nil), migration.ApplyOptions{})
	require.NoError(t, err)
	assert.Empty(t, report.Applied)
}

// The lock is the Atlas CLI's: while its driver holds it, Apply waits.
func TestApplyWaitsForAtlasDriverLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.EmptyURL(t)
	drv, err := postgres.Open(pgtest.Open(t, url))
	require.NoError(t, err)
	unlock, err := drv.(schema.Locker).Lock(ctx, "atlas_migrate_execute", 0)
	require.NoError(t, err)
	_, err = migration.Apply(ctx, pgtest.Open(t, url), dirWith(t, nil), migration.ApplyOptions{LockTimeout: 1})
	require.ErrorIs(t, err, migration.ErrLocked)
	require.NoError(t, unlock())
	_, err = migration.Apply(ctx, pgtest.Open(t, url), dirWith(t, nil), migration.ApplyOptions{LockTimeout: 1})
	require.NoError(t, err)
}
