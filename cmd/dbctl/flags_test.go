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

// -h lists each command's flags, and never the value of $DATABASE_URL or
// $DEV_DATABASE_URL, which may hold a password. Not parallel: it sets them.
func TestHelpListsFlagsWithoutTheEnvironmentsPasswords(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://app:env-s3cret@db/klozd")
	t.Setenv("DEV_DATABASE_URL", "postgres://dev:dev-s3cret@db/postgres")
	for _, tc := range []struct {
		args  []string
		flags []string
	}{
		{[]string{"drift"}, []string{"-url URL", "-dev-url URL", "-dir", "-no-spec", "-json"}},
		{[]string{"dev"}, []string{"-dir", "-json"}},
		{[]string{"gc"}, []string{"-url URL", "-dry-run", "-window", "-batch", "-json"}},
		{[]string{"migrate", "new"}, []string{"-dev-url URL", "-dir", "-version"}},
		{[]string{"migrate", "apply"}, []string{"-url URL", "-dev-url URL", "-dir", "-dry-run", "-baseline", "-lock-timeout", "-json"}},
		{[]string{"migrate", "status"}, []string{"-url URL", "-dir", "-json"}},
		{[]string{"migrate", "lint"}, []string{"-dev-url URL", "-dir", "-latest", "-json"}},
		{[]string{"migrate", "reset"}, []string{"-url URL", "-dir", "-yes", "-force", "-json"}},
		{[]string{"migrate", "hash"}, []string{"-dir"}},
		{[]string{"migrate", "validate"}, []string{"-dir"}},
	} {
		r := dbctl(t, append(tc.args, "-h")...)
		assert.Equal(t, exitOK, r.code, tc.args)
		for _, f := range tc.flags {
			assert.Contains(t, r.stderr, "  "+f, "%v -h lists %s", tc.args, f)
		}
		assert.NotContains(t, r.stderr, "s3cret", tc.args)
	}
}
