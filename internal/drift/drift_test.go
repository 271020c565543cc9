package drift_test

import (
	"context"
	"strings"
	"testing"

	"ariga.io/atlas/sql/migrate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/devdb"
	"github.com/klozd/api/internal/drift"
	"github.com/klozd/api/internal/migration"
	"github.com/klozd/api/internal/pgtest"
	"github.com/klozd/api/spec"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func dev(t *testing.T) *devdb.Server {
	t.Helper()
	s, err := devdb.Connect(context.Background(), pgtest.Start(t).AdminURL)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func embedded(t *testing.T) migrate.Dir {
	t.Helper()
	dir, err := migration.Embedded()
	require.NoError(t, err)
	return dir
}

func check(t *testing.T, r *drift.Report, name string) drift.Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, r.Checks)
	return drift.Check{}
}

func TestInSync(t *testing.T) {
	t.Parallel()
	live := pgtest.URL(t)
	r, err := drift.Run(context.Background(), drift.Options{Dir: embedded(t), Dev: dev(t), Spec: spec.MigrationSQL, URL: live})
	require.NoError(t, err)
	assert.True(t, r.InSync, "%+v", r)
	assert.Len(t, r.Checks, 4)
}

func TestSchemaEditWithoutMigration(t *testing.T) {
	t.Parallel()
	// An empty directory stands for an ent schema ahead of its migrations.
	dir := migrate.OpenMemDir(t.Name())
	t.Cleanup(func() { _ = dir.Close() })
	r, err := drift.Run(context.Background(), drift.Options{Dir: dir, Dev: dev(t), Spec: spec.MigrationSQL})
	require.NoError(t, err)
	assert.False(t, r.InSync)
	ent := check(t, r, drift.CheckEnt)
	assert.False(t, ent.InSync)
	assert.Contains(t, strings.Join(ent.Differences, "\n"), `no migration for: CREATE TABLE "auth_attempts"`)
	specCheck := check(t, r, drift.CheckSpec)
	assert.Contains(t, specCheck.Differences, "table auth_attempts: missing")
}

func TestEditedMigrationStopsTheCheck(t *testing.T) {
	t.Parallel()
	dir := embedded(t)
	files, err := dir.Files()
	require.NoError(t, err)
	require.NoError(t, dir.WriteFile(files[0].Name(), append(files[0].Bytes(), "-- edited\n"...)))
	r, err := drift.Run(context.Background(), drift.Options{Dir: dir, Dev: dev(t)})
	require.NoError(t, err)
	assert.False(t, r.InSync)
	require.Len(t, r.Checks, 1)
	assert.Contains(t, r.Checks[0].Differences[0], files[0].Name()+" was edited")
}

func TestLiveDatabaseDrift(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	live := pgtest.URL(t)
	db := pgtest.Open(t, live)
	_, err := db.ExecContext(ctx, `
		DROP INDEX "auth_attempts_ip_idx";
		ALTER TABLE "idempotency_records" ADD COLUMN "note" text;
		ALTER TABLE "auth_attempts" ALTER COLUMN "failuresCount" DROP DEFAULT;
		CREATE TABLE "_prisma_migrations" ("id" varchar(36) PRIMARY KEY)`)
	require.NoError(t, err)
	r, err := drift.Run(ctx, drift.Options{Dir: embedded(t), Dev: dev(t), URL: live})
	require.NoError(t, err)
	c := check(t, r, drift.CheckLive)
	assert.False(t, c.InSync)
	all := strings.Join(c.Differences, "\n")
	assert.Contains(t, all, "index auth_attempts_ip_idx on auth_attempts: missing")
	assert.Contains(t, all, "column idempotency_records.note: unexpected")
	assert.Contains(t, all, "column auth_attempts.failuresCount: default is none, expected 0")
	assert.NotContains(t, all, "_prisma_migrations", "Prisma's bookkeeping table is ignored")
	assert.Contains(t, all, "atlas: ", "Atlas's diff reports too")
}
