package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/migration"
)

func TestLint(t *testing.T) {
	t.Parallel()
	const drop = "20260301000000_drop_ip.sql"
	cases := []struct {
		name, body string
		code       int
		silenced   bool
	}{
		{"destructive", `ALTER TABLE "idempotency_records" DROP COLUMN "ip";` + "\n", exitFail, false},
		{"statement opt-in", "-- atlas:nolint destructive\nALTER TABLE \"idempotency_records\" DROP COLUMN \"ip\";\n", exitOK, true},
		{"file opt-in by code", "-- atlas:nolint DS103\n\nALTER TABLE \"idempotency_records\" DROP COLUMN \"ip\";\n", exitOK, true},
		{"other analyzer silenced only", "-- atlas:nolint data_depend\nALTER TABLE \"idempotency_records\" DROP COLUMN \"ip\";\n", exitFail, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := migrationsDir(t, map[string]string{drop: tc.body})
			r := dbctl(t, "migrate", "lint", "--dir", dir, "--dev-url", devURL(t), "--json")
			assert.Equal(t, tc.code, r.code, r.stdout+r.stderr)
			var rep migration.LintReport
			require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep), r.stdout+r.stderr)
			assert.Equal(t, []string{drop}, rep.Files)
			require.Len(t, rep.Findings, 1)
			f := rep.Findings[0]
			assert.Equal(t, "destructive", f.Analyzer)
			assert.Equal(t, "DS103", f.Code)
			assert.Contains(t, f.Text, `Dropping non-virtual column "ip"`)
			assert.Equal(t, tc.silenced, f.Silenced)
		})
	}
}

func TestLintHumanAndOtherAnalyzers(t *testing.T) {
	t.Parallel()
	dir := migrationsDir(t, map[string]string{
		"20260301000000_unique_org.sql": `CREATE UNIQUE INDEX "idempotency_records_org_key" ON "idempotency_records" ("organizationId");` + "\n" +
			`ALTER TABLE "auth_attempts" ALTER COLUMN "ip" SET NOT NULL;` + "\n",
	})
	r := dbctl(t, "migrate", "lint", "--dir", dir, "--dev-url", devURL(t), "--latest", "2")
	assert.Equal(t, exitOK, r.code, "data-dependent changes warn: %s%s", r.stdout, r.stderr)
	assert.Contains(t, r.stdout, firstFile+"\n  no findings")
	assert.Contains(t, r.stdout, "warning: data_depend")

	r = dbctl(t, "migrate", "lint", "--dir", "../../migrations", "--dev-url", devURL(t))
	assert.Equal(t, exitOK, r.code, r.stdout+r.stderr)
}

// The exit codes -h lists: 2 for a dev database that cannot be reached, 1
// for a file that fails to replay.
func TestLintExitCodes(t *testing.T) {
	t.Parallel()
	r := dbctl(t, "migrate", "lint", "--dir", "../../migrations", "--dev-url", "postgres://u@127.0.0.1:1/postgres?sslmode=disable")
	assert.Equal(t, exitUsage, r.code, r.stderr)
	assert.Contains(t, r.stderr, "cannot reach PostgreSQL at 127.0.0.1:1")
	assert.Equal(t, 1, lines(r.stderr), r.stderr)

	dir := migrationsDir(t, map[string]string{later: "ALTER TABLE no_such_table ADD COLUMN x int;\n"})
	r = dbctl(t, "migrate", "lint", "--dir", dir, "--dev-url", devURL(t))
	assert.Equal(t, exitFail, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stderr, later)
	assert.Equal(t, 1, lines(r.stderr), r.stderr)
}
