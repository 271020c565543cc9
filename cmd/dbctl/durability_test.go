package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgcluster"
)

func TestCheckDurability(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, err := pgcluster.Start(ctx, pgcluster.Options{Settings: map[string]string{"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Stop() })

	r := dbctl(t, "check-durability", "--url", p.URL("postgres"))
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "standbys: none")
	r = dbctl(t, "check-durability", "--url", p.URL("postgres"), "--require-standby")
	assert.Equal(t, exitFail, r.code, "a lone server fails --require-standby")
	assert.Contains(t, r.stdout, "no streaming standby (--require-standby)")

	s, err := p.StartStandby(ctx, pgcluster.StandbyOptions{Name: "replica1"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	r = dbctl(t, "check-durability", "--url", p.URL("postgres"), "--json")
	require.Equal(t, exitFail, r.code, "an asynchronous standby: "+r.stderr)
	var res durabilityResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
	assert.False(t, res.OK)
	require.Len(t, res.Standbys, 1)
	assert.Equal(t, "async", res.Standbys[0].SyncState)
	require.Len(t, res.Risks, 1)
	assert.Contains(t, res.Risks[0], "asynchronous replication")

	// The services' multi-host URL reaches the primary, which now waits
	// for its standby.
	db, err := sql.Open("postgres", p.URL("postgres"))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.ExecContext(ctx, `ALTER SYSTEM SET synchronous_standby_names = 'replica1'`)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `SELECT pg_reload_conf()`)
	require.NoError(t, err)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var state string
		require.NoError(t, db.QueryRowContext(ctx, `SELECT sync_state FROM pg_stat_replication`).Scan(&state))
		if state == "sync" {
			break
		}
		require.True(t, time.Now().Before(deadline), "the standby is still %s", state)
		time.Sleep(10 * time.Millisecond) // poll the primary's view of its standby
	}
	multi := fmt.Sprintf("postgres://postgres@/postgres?host=127.0.0.1,127.0.0.1&port=%d,%d&target_session_attrs=read-write&sslmode=disable", s.Port(), p.Port())
	r = dbctl(t, "check-durability", "--url", multi)
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "standby replica1: streaming, sync")
	assert.Contains(t, r.stdout, "ok: acknowledged commits survive a failover to a synchronous standby")

	r = dbctl(t, "check-durability", "--url", s.URL("postgres"))
	assert.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stdout, "the server is a standby")
}

func TestCheckDurabilityBadInput(t *testing.T) {
	t.Parallel()
	r := dbctl(t, "check-durability", "--url", "postgres://u@127.0.0.1:1/db")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "127.0.0.1:1")
	r = dbctl(t, "check-durability", "--nope")
	assert.Equal(t, exitUsage, r.code)
	r = dbctl(t, "check-durability", "--url", "postgres://u@127.0.0.1:1/db", "extra")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, `unexpected argument "extra"`)
}
