package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
)

func TestResetRefusesARemoteHost(t *testing.T) {
	t.Parallel()
	r := dbctl(t, "migrate", "reset", "--url", "postgres://app@db.example.com:5432/klozd", "--yes", "--dir", "../../migrations")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "refusing to reset a database on db.example.com:5432")
	assert.Equal(t, 1, lines(r.stderr))
}

func TestResetNeedsConfirmation(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	r := dbctl(t, "migrate", "reset", "--url", url, "--dir", "../../migrations")
	assert.Equal(t, exitUsage, r.code, "go test's stdin is not a terminal")
	assert.Contains(t, r.stderr, "pass --yes")
	assert.True(t, tableExists(t, pgtest.Open(t, url), "public.auth_attempts"), "nothing dropped")
}

func TestReset(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyURL(t)
	require.Equal(t, exitOK, dbctl(t, "migrate", "apply", "--url", url, "--dir", "../../migrations").code)
	db := pgtest.Open(t, url)
	_, err := db.Exec(`INSERT INTO auth_attempts (id, email, "updatedAt") VALUES ('a', 'a@example.com', now()); CREATE TABLE junk (x int)`)
	require.NoError(t, err)

	r := dbctl(t, "migrate", "reset", "--url", url, "--dir", "../../migrations", "--yes")
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "Dropped public, atlas_schema_revisions")
	assert.Contains(t, r.stdout, "Applied "+firstFile)
	var n int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM auth_attempts`).Scan(&n))
	assert.Zero(t, n)
	assert.False(t, tableExists(t, db, "public.junk"))
	assert.Len(t, revisions(t, db, "atlas_schema_revisions"), 1)
}

// A URL without a host goes where $PGHOST or ?host= says: reset judges that
// host, not the empty one. Not parallel: it sets PGHOST.
func TestResetRefusesARemoteHostFromPGHOSTOrHostParam(t *testing.T) {
	t.Setenv("PGHOST", "prod-db.example.com")
	for url, host := range map[string]string{
		"postgres:///klozd":                         "prod-db.example.com:5432",
		"postgres:///klozd?host=db2.example.com":    "db2.example.com:5432",
		"postgres://app@/klozd?hostaddr=192.0.2.10": "192.0.2.10:5432",
	} {
		r := dbctl(t, "migrate", "reset", "--url", url, "--yes", "--dir", "../../migrations")
		assert.Equal(t, exitUsage, r.code, url)
		assert.Contains(t, r.stderr, "refusing to reset a database on "+host+", which is not a local host", url)
		assert.Equal(t, 1, lines(r.stderr))
	}
}
