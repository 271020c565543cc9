package main

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgcluster"
	"github.com/klozd/api/internal/pgtest"
)

// assertRefusedPooler checks that r is the one-line refusal of a
// transaction pooler.
func assertRefusedPooler(t *testing.T, r result, name string) {
	t.Helper()
	assert.Equal(t, exitUsage, r.code, "stdout: %s\nstderr: %s", r.stdout, r.stderr)
	assert.Equal(t, 1, lines(r.stderr), r.stderr)
	assert.True(t, strings.HasPrefix(r.stderr, name+": 127.0.0.1:"), r.stderr)
	assert.Contains(t, r.stderr, " pools connections by transaction (")
	assert.Contains(t, r.stderr, "point --url or DIRECT_URL at PostgreSQL itself or a session pooler (as Prisma's directUrl)\n")
	assert.NotContains(t, r.stderr, "26000")
	assert.NotContains(t, r.stderr, "does not exist")
}

// migrationLocks returns the backends holding an advisory lock in the
// database of db.
func migrationLocks(t *testing.T, db *sql.DB) []int {
	t.Helper()
	rows, err := db.Query(`SELECT pid FROM pg_locks WHERE locktype = 'advisory'
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
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

// Through transaction pooling apply refuses in one line and changes
// nothing; a direct apply then works.
func TestApplyThroughTransactionPoolerRefuses(t *testing.T) {
	t.Parallel()
	direct := pgtest.EmptyURL(t)
	pooled := pgtest.ThroughBouncer(t, direct, pgcluster.PoolTransaction)
	r := dbctl(t, "migrate", "apply", "--url", pooled, "--dir", "../../migrations")
	assertRefusedPooler(t, r, "dbctl migrate apply")
	assert.Empty(t, r.stdout)

	db := pgtest.Open(t, direct)
	assert.Empty(t, migrationLocks(t, db), "no advisory lock stays behind")
	assert.False(t, tableExists(t, db, "atlas_schema_revisions.atlas_schema_revisions"), "nothing was created")
	r = dbctl(t, "migrate", "apply", "--url", direct, "--dir", "../../migrations", "--lock-timeout", "1s")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Applied "+firstFile)
}

// DIRECT_URL wins over DATABASE_URL, so a DATABASE_URL on the pooler does
// not matter once DIRECT_URL is set. Not parallel: it sets them.
func TestApplyReadsDirectURLFirst(t *testing.T) {
	direct := pgtest.EmptyURL(t)
	pooled := pgtest.ThroughBouncer(t, direct, pgcluster.PoolTransaction)
	t.Setenv("DATABASE_URL", pooled)
	t.Setenv("DIRECT_URL", "")
	r := dbctl(t, "migrate", "apply", "--dir", "../../migrations")
	assertRefusedPooler(t, r, "dbctl migrate apply")

	t.Setenv("DIRECT_URL", direct)
	r = dbctl(t, "migrate", "apply", "--dir", "../../migrations")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Applied "+firstFile)
}

// Four concurrent applies through transaction pooling on a fresh database
// all refuse, and none applies anything or leaves a lock.
func TestConcurrentApplyThroughTransactionPooler(t *testing.T) {
	t.Parallel()
	direct := pgtest.EmptyURL(t)
	pooled := pgtest.ThroughBouncer(t, direct, pgcluster.PoolTransaction)
	const runs = 4
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]result, runs)
	)
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = dbctl(t, "migrate", "apply", "--url", pooled, "--dir", "../../migrations", "--lock-timeout", "1m")
		}()
	}
	close(start)
	wg.Wait()
	for _, r := range results {
		assertRefusedPooler(t, r, "dbctl migrate apply")
	}
	db := pgtest.Open(t, direct)
	assert.Empty(t, migrationLocks(t, db))
	assert.False(t, tableExists(t, db, "atlas_schema_revisions.atlas_schema_revisions"))
	assert.False(t, tableExists(t, db, "public.auth_attempts"))
}

// Session pooling keeps each client's session on one backend: apply and
// status work through it.
func TestApplyThroughSessionPooler(t *testing.T) {
	t.Parallel()
	direct := pgtest.EmptyURL(t)
	pooled := pgtest.ThroughBouncer(t, direct, pgcluster.PoolSession)
	r := dbctl(t, "migrate", "apply", "--url", pooled, "--dir", "../../migrations")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Applied "+firstFile)
	r = dbctl(t, "migrate", "status", "--url", pooled, "--dir", "../../migrations")
	assert.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	db := pgtest.Open(t, direct)
	assert.Empty(t, migrationLocks(t, db))
	assert.Len(t, revisions(t, db, "atlas_schema_revisions"), 1)
}

// The other commands that open the target database refuse transaction
// pooling the same way, before they change or read anything: no 26000
// error from a lost unnamed statement.
func TestCommandsThroughTransactionPoolerRefuse(t *testing.T) {
	t.Parallel()
	direct := pgtest.URL(t)
	pooled := pgtest.ThroughBouncer(t, direct, pgcluster.PoolTransaction)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"dbctl migrate status", []string{"migrate", "status", "--url", pooled, "--dir", "../../migrations"}},
		{"dbctl drift", []string{"drift", "--url", pooled, "--dev-url", devURL(t), "--dir", "../../migrations"}},
		{"dbctl migrate reset", []string{"migrate", "reset", "--url", pooled, "--dir", "../../migrations", "--yes"}},
		{"dbctl gc", []string{"gc", "--url", pooled}},
	} {
		t.Run(c.name, func(t *testing.T) {
			assertRefusedPooler(t, dbctl(t, c.args...), c.name)
		})
	}
	db := pgtest.Open(t, direct)
	assert.True(t, tableExists(t, db, "public.auth_attempts"), "reset dropped nothing")
	assert.Empty(t, migrationLocks(t, db))
}

// A migration lock that cannot be released fails the run (exit 1) with a
// line saying so, after the files were applied; nothing holds it after.
func TestApplyReportsFailedUnlock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.EmptyURL(t)
	dir := migrationsDir(t, map[string]string{later: "SELECT pg_advisory_xact_lock(4242);\n"})
	admin := pgtest.Open(t, url)
	// Hold key 4242 so that the later file waits inside the migration lock.
	hold, err := admin.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = hold.Rollback() }()
	_, err = hold.Exec(`SELECT pg_advisory_xact_lock(4242)`)
	require.NoError(t, err)

	done := make(chan result, 1)
	go func() { done <- dbctl(t, "migrate", "apply", "--url", url, "--dir", dir) }()
	// Once the file waits for 4242, end the session holding the migration
	// lock, then let the file finish.
	var holder int
	for holder == 0 {
		err := admin.QueryRow(`SELECT coalesce((SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objid <> 4242
			AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND EXISTS (SELECT 1 FROM pg_locks w WHERE w.locktype = 'advisory' AND NOT w.granted AND w.objid = 4242)), 0)`).Scan(&holder)
		require.NoError(t, err)
	}
	var ok bool
	require.NoError(t, admin.QueryRow(`SELECT pg_terminate_backend($1, 10000)`, holder).Scan(&ok))
	require.True(t, ok)
	require.NoError(t, hold.Rollback())

	r := <-done
	assert.Equal(t, exitFail, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "Applied "+later)
	assert.Equal(t, 1, lines(r.stderr), r.stderr)
	assert.True(t, strings.HasPrefix(r.stderr, "dbctl migrate apply: migration: release migration lock: "), r.stderr)
	assert.Contains(t, r.stderr, "pg_terminate_backend")
	assert.Empty(t, migrationLocks(t, admin))
	assert.Len(t, revisions(t, admin, "atlas_schema_revisions"), 2)
}
