package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/drift"
	"github.com/klozd/api/internal/pgtest"
)

// An adopted Prisma database has both bookkeeping tables; drift ignores them.
func TestDriftInSyncIgnoresBookkeeping(t *testing.T) {
	t.Parallel()
	url := prismaDB(t)
	r := dbctl(t, "migrate", "apply", "--url", url, "--dir", "../../migrations", "--dev-url", devURL(t))
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)

	r = dbctl(t, "drift", "--url", url, "--dir", "../../migrations", "--dev-url", devURL(t), "--json")
	assert.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	var rep drift.Report
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep))
	assert.True(t, rep.InSync)
	assert.Len(t, rep.Checks, 4)
}

func TestDriftOnAlteredDatabase(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	_, err := pgtest.Open(t, url).Exec(`ALTER TABLE "auth_attempts" ADD COLUMN "note" text; DROP INDEX "idempotency_records_expiresAt_idx"`)
	require.NoError(t, err)
	r := dbctl(t, "drift", "--url", url, "--dir", "../../migrations", "--dev-url", devURL(t), "--no-spec")
	assert.Equal(t, exitFail, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "DRIFT "+drift.CheckLive)
	assert.Contains(t, r.stdout, "column auth_attempts.note: unexpected")
	assert.Contains(t, r.stdout, "index idempotency_records_expiresAt_idx on idempotency_records: missing")
	assert.Contains(t, r.stdout, "drift found")
}

func TestDriftUnreachable(t *testing.T) {
	t.Parallel()
	r := dbctl(t, "drift", "--url", "postgres://app:secret@127.0.0.1:1/klozd", "--dir", "../../migrations", "--dev-url", devURL(t))
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "cannot reach PostgreSQL at 127.0.0.1:1")
	assert.NotContains(t, r.stderr, "secret")
	assert.Equal(t, 1, lines(r.stderr), "%q", r.stderr)
}
