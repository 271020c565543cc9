package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ariga.io/atlas/sql/migrate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/migration"
	"github.com/klozd/api/internal/pgtest"
	"github.com/klozd/api/migrations"
	"github.com/klozd/api/spec"
)

func TestMain(m *testing.M) {
	if raw := os.Getenv(helperArgsEnv); raw != "" {
		helperDbctl(raw)
	}
	pgtest.Main(m)
}

const firstFile = spec.Version + "_" + spec.Name + ".sql"

// result is the outcome of one dbctl invocation.
type result struct {
	code           int
	stdout, stderr string
}

// dbctl runs the command as main does, with its own pools.
func dbctl(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// migrationsDir writes the committed migrations plus extra files to a
// temporary directory, re-hashed, and returns its path.
func migrationsDir(t *testing.T, extra map[string]string) string {
	t.Helper()
	path := t.TempDir()
	entries, err := migrations.FS.ReadDir(".")
	require.NoError(t, err)
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".sql" {
			continue
		}
		b, err := migrations.FS.ReadFile(e.Name())
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(path, e.Name()), b, 0o644))
	}
	for name, body := range extra {
		require.NoError(t, os.WriteFile(filepath.Join(path, name), []byte(body), 0o644))
	}
	dir, err := migrate.NewLocalDir(path)
	require.NoError(t, err)
	require.NoError(t, migration.Hash(dir))
	return path
}

// devURL is the test server, on which commands make scratch databases,
// so that no command starts a cluster of its own.
func devURL(t *testing.T) string {
	t.Helper()
	return pgtest.Start(t).AdminURL
}

// cliEmpty and cliNull are the values the Atlas CLI writes for an empty
// error and error_stmt, and for no partial hashes: ” and the JSON null.
var (
	cliEmpty = sql.NullString{Valid: true}
	cliNull  = sql.NullString{String: "null", Valid: true}
)

type revision struct {
	Version, Description, Hash, Operator string
	Type, Applied, Total                 int
	Error, ErrorStmt, Partial            sql.NullString
}

func revisions(t *testing.T, db *sql.DB, schema string) []revision {
	t.Helper()
	rows, err := db.Query(`SELECT version, description, hash, operator_version, type, applied, total, error, error_stmt, partial_hashes::text
		FROM "` + schema + `".atlas_schema_revisions ORDER BY version`)
	require.NoError(t, err)
	defer rows.Close()
	var out []revision
	for rows.Next() {
		var r revision
		require.NoError(t, rows.Scan(&r.Version, &r.Description, &r.Hash, &r.Operator, &r.Type, &r.Applied, &r.Total, &r.Error, &r.ErrorStmt, &r.Partial))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

func tableExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, db.QueryRow(`SELECT to_regclass($1) IS NOT NULL`, name).Scan(&ok))
	return ok
}

// prismaDB returns the URL of a database built as the Prisma app left it:
// the spec SQL, and _prisma_migrations exactly as Prisma creates it with the
// row "prisma migrate deploy" writes for the spec migration.
func prismaDB(t *testing.T) string {
	t.Helper()
	url := pgtest.EmptyURL(t)
	db := pgtest.Open(t, url)
	_, err := db.Exec(spec.MigrationSQL)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE "_prisma_migrations" (
		"id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
		"checksum"              VARCHAR(64) NOT NULL,
		"finished_at"           TIMESTAMPTZ,
		"migration_name"        VARCHAR(255) NOT NULL,
		"logs"                  TEXT,
		"rolled_back_at"        TIMESTAMPTZ,
		"started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
		"applied_steps_count"   INTEGER NOT NULL DEFAULT 0
	)`)
	require.NoError(t, err)
	sum := sha256.Sum256([]byte(spec.MigrationSQL))
	_, err = db.Exec(`INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count)
		VALUES ('6f1c2a52-3b8e-4f0e-9a7d-1c2b3d4e5f60', $1, '2026-01-14 21:05:02.123+00', $2, NULL, NULL, '2026-01-14 21:05:01.987+00', 1)`,
		hex.EncodeToString(sum[:]), spec.Version+"_"+spec.Name)
	require.NoError(t, err)
	return url
}

func prismaRows(t *testing.T, db *sql.DB) string {
	t.Helper()
	var s string
	require.NoError(t, db.QueryRow(`SELECT json_agg(p ORDER BY id)::text FROM "_prisma_migrations" p`).Scan(&s))
	return s
}

func lines(s string) int { return strings.Count(strings.TrimRight(s, "\n"), "\n") + 1 }

func TestPanicReportedInOneLine(t *testing.T) {
	var errOut bytes.Buffer
	code := func() (code int) {
		defer recoverTo(&errOut, &code)
		panic("index out of range\n\tgoroutine 1 [running]")
	}()
	assert.Equal(t, exitFail, code)
	assert.Equal(t, "dbctl: internal error: index out of range goroutine 1 [running]\n", errOut.String())
}
