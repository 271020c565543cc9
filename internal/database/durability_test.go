package database_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/pgcluster"
)

// durable are the settings of a server that keeps what it acknowledges,
// over pgcluster's defaults, which favour speed.
var durable = map[string]string{"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}

func startCluster(t *testing.T, settings map[string]string) *pgcluster.Cluster {
	t.Helper()
	c, err := pgcluster.Start(context.Background(), pgcluster.Options{Settings: settings})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

func startStandby(t *testing.T, p *pgcluster.Cluster, sync bool) *pgcluster.Cluster {
	t.Helper()
	s, err := p.StartStandby(context.Background(), pgcluster.StandbyOptions{Name: "replica1", Synchronous: sync})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

func check(t *testing.T, url string) database.Durability {
	t.Helper()
	db, err := sql.Open("postgres", url)
	require.NoError(t, err)
	defer db.Close()
	d, err := database.CheckDurability(context.Background(), db)
	require.NoError(t, err)
	return d
}

func TestDurabilityAsyncStandbyIsARisk(t *testing.T) {
	t.Parallel()
	p := startCluster(t, durable)
	startStandby(t, p, false)
	d := check(t, p.URL("postgres"))
	assert.True(t, d.Primary)
	assert.Equal(t, []database.Standby{{Name: "replica1", State: "streaming", SyncState: "async"}}, d.Standbys)
	assert.Zero(t, d.Synchronous())
	err := d.Err()
	require.ErrorIs(t, err, database.ErrAsyncReplication)
	assert.ErrorContains(t, err, "a failover loses the acknowledged commits the standby had not received")
}

func TestDurabilitySyncStandbyHolds(t *testing.T) {
	t.Parallel()
	p := startCluster(t, durable)
	s := startStandby(t, p, true)
	d := check(t, p.URL("postgres"))
	assert.Equal(t, 1, d.Synchronous())
	assert.Equal(t, `"replica1"`, d.SynchronousStandbyNames)
	assert.Equal(t, "on", d.SynchronousCommit)
	assert.NoError(t, d.Err())

	// The session's synchronous_commit counts: a role that turns it off
	// waits for no standby.
	d = check(t, p.URL("postgres")+"&synchronous_commit=local")
	assert.ErrorContains(t, d.Err(), "synchronous_commit is local: commits do not wait for any standby")

	// The standby itself is not where the services should write.
	d = check(t, s.URL("postgres"))
	assert.False(t, d.Primary)
	assert.ErrorContains(t, d.Err(), "the server is a standby")
}

// A lone primary has no failover to lose commits at: no error, reported as
// no standby. Its fsync and synchronous_commit still count.
func TestDurabilityLoneServer(t *testing.T) {
	t.Parallel()
	d := check(t, startCluster(t, durable).URL("postgres"))
	assert.True(t, d.Primary)
	assert.Empty(t, d.Standbys)
	assert.NoError(t, d.Err())

	d = check(t, startCluster(t, nil).URL("postgres")) // pgcluster's fast defaults
	err := d.Err()
	assert.ErrorContains(t, err, "synchronous_commit is off")
	assert.ErrorContains(t, err, "fsync is off")
	assert.ErrorContains(t, err, "full_page_writes is off")
	assert.False(t, errors.Is(err, database.ErrAsyncReplication))
}

func TestDurabilityErrCases(t *testing.T) {
	ok := database.Durability{Primary: true, SynchronousCommit: "on", Fsync: true, FullPageWrites: true}
	for _, tc := range []struct {
		name string
		edit func(*database.Durability)
		want string
	}{
		{"names set, none connected", func(d *database.Durability) {
			d.SynchronousStandbyNames = "replica1"
			d.Standbys = []database.Standby{{Name: "other", State: "streaming", SyncState: "async"}}
		}, `synchronous_standby_names is "replica1" but no connected standby is synchronous`},
		{"hidden state", func(d *database.Durability) {
			d.Standbys = []database.Standby{{Name: "replica1"}}
		}, "cannot see its standbys' replication state"},
		{"off without standby", func(d *database.Durability) { d.SynchronousCommit = "off" }, "synchronous_commit is off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := ok
			tc.edit(&d)
			assert.ErrorContains(t, d.Err(), tc.want)
		})
	}
	d := ok
	d.SynchronousCommit = "local"
	assert.NoError(t, d.Err(), "local without standbys waits for none there is")
	d.SynchronousStandbyNames = "ANY 1 (a, b)"
	d.Standbys = []database.Standby{{Name: "a", State: "streaming", SyncState: "quorum"}, {Name: "b", State: "streaming", SyncState: "quorum"}}
	d.SynchronousCommit = "remote_apply"
	assert.NoError(t, d.Err(), "a quorum is synchronous")
}
