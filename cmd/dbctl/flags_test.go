package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A URL dbctl cannot parse is reported in one line without its password,
// by every command that takes one.
func TestUnparsableURLNeverShowsThePassword(t *testing.T) {
	t.Parallel()
	const url = "postgres://app:s3cret-pw@db.example.com:port/klozd"
	for _, args := range [][]string{
		{"migrate", "apply", "--url", url, "--dir", "../../migrations"},
		{"migrate", "status", "--url", url, "--dir", "../../migrations"},
		{"migrate", "reset", "--url", url, "--yes", "--force", "--dir", "../../migrations"},
		{"drift", "--url", url, "--dir", "../../migrations"},
		{"gc", "--url", url},
	} {
		r := dbctl(t, args...)
		assert.Equal(t, exitUsage, r.code, "%v: %s", args, r.stderr)
		assert.Contains(t, r.stderr, `invalid port ":port"`, args)
		assert.NotContains(t, r.stderr+r.stdout, "s3cret-pw", args)
		assert.Equal(t, 1, lines(r.stderr), "%v: %s", args, r.stderr)
	}
}

// An unreachable server is named as the driver resolved it: for a socket
// URL, the socket's path, not localhost:5432.
func TestUnreachableNamesTheEffectiveHost(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := dbctl(t, "migrate", "status", "--url", "postgres:///klozd?host="+dir, "--dir", "../../migrations")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "cannot reach PostgreSQL at "+dir+"/.s.PGSQL.5432")
	assert.Equal(t, 1, lines(r.stderr), r.stderr)
}
