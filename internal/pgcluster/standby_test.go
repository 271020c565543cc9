package pgcluster_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgcluster"
)

func open(t *testing.T, url string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// primaryAndStandby starts a primary and a standby of it.
func primaryAndStandby(t *testing.T, sync bool) (primary, standby *pgcluster.Cluster) {
	t.Helper()
	ctx := context.Background()
	p, err := pgcluster.Start(ctx, pgcluster.Options{Settings: map[string]string{"synchronous_commit": "on"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Stop() })
	s, err := p.StartStandby(ctx, pgcluster.StandbyOptions{Name: "replica1", Synchronous: sync})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	return p, s
}

// waitRows polls db until the table t holds want rows, for at most 10s.
func waitRows(t *testing.T, db *sql.DB, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		err := db.QueryRow(`SELECT count(*) FROM kept`).Scan(&n)
		if err == nil && n == want {
			return
		}
		require.True(t, time.Now().Before(deadline), "standby has %d rows (err %v), want %d", n, err, want)
		time.Sleep(10 * time.Millisecond) // poll the standby's replay
	}
}

func TestStandbyStreamsAndPromotes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, s := primaryAndStandby(t, false)
	require.NotEqual(t, p.Port(), s.Port())
	pdb, sdb := open(t, p.URL("postgres")), open(t, s.URL("postgres"))

	var name, state, syncState string
	require.NoError(t, pdb.QueryRow(`SELECT application_name, state, sync_state FROM pg_stat_replication`).Scan(&name, &state, &syncState))
	assert.Equal(t, []string{"replica1", "streaming", "async"}, []string{name, state, syncState})

	_, err := pdb.Exec(`CREATE TABLE kept (n int); INSERT INTO kept SELECT generate_series(1, 100)`)
	require.NoError(t, err)
	waitRows(t, sdb, 100)
	_, err = sdb.Exec(`INSERT INTO kept VALUES (0)`)
	require.ErrorContains(t, err, "read-only transaction", "a standby refuses writes")

	require.NoError(t, p.StopImmediate())
	require.Error(t, pdb.PingContext(ctx), "the primary is gone")
	require.NoError(t, s.Promote(ctx))
	_, err = sdb.Exec(`INSERT INTO kept VALUES (101)`)
	require.NoError(t, err, "the promoted standby accepts writes")
	waitRows(t, sdb, 101)
}

// With a synchronous standby, a commit returns only once the standby has
// the WAL: every row acknowledged before the primary is killed is on the
// promoted standby, read at once, without waiting for replay.
func TestSynchronousStandbyHasEveryAcknowledgedCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, s := primaryAndStandby(t, true)
	pdb := open(t, p.URL("postgres"))
	var syncState, names, commit string
	require.NoError(t, pdb.QueryRow(`SELECT sync_state, current_setting('synchronous_standby_names'), current_setting('synchronous_commit') FROM pg_stat_replication`).Scan(&syncState, &names, &commit))
	assert.Equal(t, []string{"sync", `"replica1"`, "on"}, []string{syncState, names, commit})

	_, err := pdb.Exec(`CREATE TABLE kept (n int)`)
	require.NoError(t, err)
	const n = 300
	for i := range n {
		_, err := pdb.Exec(`INSERT INTO kept VALUES ($1)`, i)
		require.NoError(t, err)
	}
	require.NoError(t, p.StopImmediate())
	require.NoError(t, s.Promote(ctx))
	var got int
	require.NoError(t, open(t, s.URL("postgres")).QueryRow(`SELECT count(*) FROM kept`).Scan(&got))
	assert.Equal(t, n, got, "every acknowledged commit survives the failover")
}

// A synchronous standby needs the primary's synchronous_commit, which the
// default settings turn off.
func TestSynchronousStandbyRefusesAsyncCommitPrimary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, err := pgcluster.Start(ctx, pgcluster.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Stop() })
	_, err = p.StartStandby(ctx, pgcluster.StandbyOptions{Synchronous: true})
	require.ErrorContains(t, err, `Options.Settings{"synchronous_commit": "on"}`)
	_, err = p.StartStandby(ctx, pgcluster.StandbyOptions{Name: "x'y"})
	require.ErrorContains(t, err, "standby name")
}

// The multi-host URL the services use finds the primary first, then the
// promoted standby.
func TestMultiHostURLFollowsPromotion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, s := primaryAndStandby(t, true)
	url := fmt.Sprintf("postgres://postgres@/postgres?host=127.0.0.1,127.0.0.1&port=%d,%d&target_session_attrs=read-write&sslmode=disable",
		s.Port(), p.Port()) // the standby first: it is skipped while read-only
	db := open(t, url)
	db.SetMaxIdleConns(0)
	port := func() (port int) {
		require.NoError(t, db.QueryRow(`SELECT inet_server_port()`).Scan(&port))
		return port
	}
	assert.Equal(t, p.Port(), port())
	require.NoError(t, p.StopImmediate())
	_, err := db.Exec(`SELECT 1`)
	require.Error(t, err, "no read-write server before the promotion")
	require.NoError(t, s.Promote(ctx))
	assert.Equal(t, s.Port(), port())
}
