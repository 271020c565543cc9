package migration_test

import (
	"context"
	"database/sql"
	"errors"
	"hash/fnv"
	"sync"
	"testing"
	"time"

	"ariga.io/atlas/sql/migrate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/devdb"
	"github.com/klozd/api/internal/migration"
	"github.com/klozd/api/internal/pgtest"
	"github.com/klozd/api/migrations"
	"github.com/klozd/api/spec"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const firstFile = spec.Version + "_" + spec.Name + ".sql"

// dirWith returns an in-memory copy of the committed directory plus extra
// files, re-hashed.
func dirWith(t *testing.T, extra map[string]string) migrate.Dir {
	t.Helper()
	dir, err := migration.Embedded()
	require.NoError(t, err)
	for name, body := range extra {
		require.NoError(t, dir.WriteFile(name, []byte(body)))
	}
	require.NoError(t, migration.Hash(dir))
	return dir
}

func devURL(t *testing.T) string {
	t.Helper()
	s, err := devdb.Connect(context.Background(), pgtest.Start(t).AdminURL)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	url, drop, err := s.Create(context.Background(), "test_dev")
	require.NoError(t, err)
	t.Cleanup(drop)
	return url
}

func TestCommittedDirectoryValidates(t *testing.T) {
	dir, err := migrate.NewLocalDir("../../migrations")
	require.NoError(t, err)
	require.NoError(t, migration.Validate(dir))
	files, err := dir.Files()
	require.NoError(t, err)
	require.NotEmpty(t, files)
	assert.Equal(t, firstFile, files[0].Name(), "the first migration keeps Prisma's version and name")
}

// The committed first migration is exactly what the generator writes from
// the ent schema into an empty directory.
func TestGeneratorReproducesFirstMigration(t *testing.T) {
	t.Parallel()
	dir := migrate.OpenMemDir(t.Name())
	t.Cleanup(func() { _ = dir.Close() })
	name, err := migration.Generate(context.Background(), dir, migration.GenerateOptions{
		Name: spec.Name, Version: spec.Version, DevURL: devURL(t),
	})
	require.NoError(t, err)
	require.Equal(t, firstFile, name)
	got, err := dir.Open(name)
	require.NoError(t, err)
	defer got.Close()
	var b [1 << 16]byte
	n, _ := got.Read(b[:])
	want, err := migrations.FS.ReadFile(firstFile)
	require.NoError(t, err)
	assert.Equal(t, string(want), string(b[:n]))
}

// The ent schema has nothing the migrations lack: a schema edit without a
// migration fails here (and in "make drift").
func TestNothingPending(t *testing.T) {
	t.Parallel()
	dir := dirWith(t, nil)
	_, err := migration.Generate(context.Background(), dir, migration.GenerateOptions{Name: "pending", DevURL: devURL(t)})
	require.ErrorIs(t, err, migration.ErrNoChanges)
	files, err := dir.Files()
	require.NoError(t, err)
	assert.Len(t, files, 1, "nothing was written")
}

// ent's diff mutates the generated package-level table descriptions, so
// concurrent callers (parallel drift checks, say) must not overlap; under
// -race this test fails if they do.
func TestGenerateConcurrently(t *testing.T) {
	t.Parallel()
	const n = 4
	urls := make([]string, n)
	for i := range urls {
		urls[i] = devURL(t)
	}
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		dir := dirWith(t, nil)
		wg.Go(func() {
			<-start
			_, errs[i] = migration.Generate(context.Background(), dir, migration.GenerateOptions{Name: "pending", DevURL: urls[i]})
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		assert.ErrorIs(t, err, migration.ErrNoChanges)
	}
}

func TestGenerateRejects(t *testing.T) {
	t.Parallel()
	dir := dirWith(t, nil)
	_, err := migration.Generate(context.Background(), dir, migration.GenerateOptions{DevURL: "unused"})
	assert.ErrorContains(t, err, "needs a name")
	_, err = migration.Generate(context.Background(), dir, migration.GenerateOptions{Name: "x", Version: "20200101000000", DevURL: "unused"})
	assert.ErrorContains(t, err, "is not after the latest migration "+firstFile)
	_, err = migration.Generate(context.Background(), dir, migration.GenerateOptions{Name: "x", Version: "v2", DevURL: "unused"})
	assert.ErrorContains(t, err, `version "v2"`)
}

func TestEditedFileWithoutRehashIsNamed(t *testing.T) {
	dir := dirWith(t, nil)
	body, err := migrations.FS.ReadFile(firstFile)
	require.NoError(t, err)
	require.NoError(t, dir.WriteFile(firstFile, append(body, "-- edited\n"...)))
	err = migration.Validate(dir)
	require.ErrorIs(t, err, migrate.ErrChecksumMismatch)
	assert.ErrorContains(t, err, firstFile+" was edited after atlas.sum was written")

	_, err = migration.Apply(context.Background(), pgtest.Open(t, pgtest.EmptyURL(t)), dir, migration.ApplyOptions{})
	assert.ErrorContains(t, err, firstFile, "apply validates atlas.sum before running anything")
}

type revision struct {
	Version, Description, Hash, Operator string
	Type, Applied, Total                 int
	Error, ErrorStmt, PartialHashes      sql.NullString
}

func revisions(t *testing.T, db *sql.DB) []revision {
	t.Helper()
	rows, err := db.Query(`SELECT version, description, hash, operator_version, type, applied, total, error, error_stmt, partial_hashes::text
		FROM atlas_schema_revisions.atlas_schema_revisions ORDER BY version`)
	require.NoError(t, err)
	defer rows.Close()
	var out []revision
	for rows.Next() {
		var r revision
		require.NoError(t, rows.Scan(&r.Version, &r.Description, &r.Hash, &r.Operator, &r.Type, &r.Applied, &r.Total, &r.Error, &r.ErrorStmt, &r.PartialHashes))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

func TestApplyRecordsRevisionsLikeTheCLI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.Open(t, pgtest.EmptyURL(t))
	dir := dirWith(t, nil)
	report, err := migration.Apply(ctx, db, dir, migration.ApplyOptions{})
	require.NoError(t, err)
	require.Len(t, report.Applied, 1)

	sum, err := dir.Checksum()
	require.NoError(t, err)
	hash, err := sum.SumByName(firstFile)
	require.NoError(t, err)
	revs := revisions(t, db)
	require.Len(t, revs, 1)
	assert.Equal(t, revision{
		Version: spec.Version, Description: spec.Name, Hash: hash, Operator: migration.OperatorVersion,
		Type: int(migrate.RevisionTypeExecute), Applied: 9, Total: 9,
		// As the CLI writes them: '' and the JSON null, not SQL NULL.
		Error: sql.NullString{Valid: true}, ErrorStmt: sql.NullString{Valid: true},
		PartialHashes: sql.NullString{String: "null", Valid: true},
	}, revs[0])

	again, err := migration.Apply(ctx, db, dir, migration.ApplyOptions{})
	require.NoError(t, err)
	assert.Empty(t, again.Applied, "re-running is a no-op")
	assert.Len(t, revisions(t, db), 1)
}

func TestFailingStatementRollsBackItsFileOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.Open(t, pgtest.EmptyURL(t))
	const bad = "20260201000000_broken.sql"
	dir := dirWith(t, map[string]string{
		bad: "CREATE TABLE \"kept_out\" (\"id\" text);\nALTER TABLE \"no_such_table\" ADD COLUMN \"x\" integer;\n",
	})
	report, err := migration.Apply(ctx, db, dir, migration.ApplyOptions{})
	var fe *migration.FileError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, bad, fe.File)
	assert.Contains(t, fe.Stmt, `ALTER TABLE "no_such_table"`)
	assert.ErrorContains(t, err, bad)
	assert.ErrorContains(t, err, `relation "no_such_table" does not exist`)
	require.Len(t, report.Applied, 1, "the earlier file stays applied")

	var kept bool
	require.NoError(t, db.QueryRow(`SELECT to_regclass('kept_out') IS NOT NULL`).Scan(&kept))
	assert.False(t, kept, "the failing file's first statement was rolled back")
	// As the CLI's default --tx-mode file: the file and its revision
	// roll back together, so the failed file leaves no row.
	require.Len(t, revisions(t, db), 1)

	// Fixing the file (and its hash) lets the next run apply it.
	fixed := dirWith(t, map[string]string{bad: "CREATE TABLE \"kept_out\" (\"id\" text);\n"})
	report, err = migration.Apply(ctx, db, fixed, migration.ApplyOptions{})
	require.NoError(t, err)
	require.Len(t, report.Applied, 1)
	revs := revisions(t, db)
	require.Len(t, revs, 2)
	assert.Equal(t, 1, revs[1].Applied)
	assert.Equal(t, 1, revs[1].Total)
	assert.Equal(t, "", revs[1].Error.String)
}

// Concurrent runs from independent pools apply each file once.
func TestConcurrentApplyAppliesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.EmptyURL(t)
	const runs = 4
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		applied = make([]int, runs)
		errs    = make([]error, runs)
	)
	for i := range runs {
		db := pgtest.Open(t, url)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := migration.Apply(ctx, db, dirWith(t, nil), migration.ApplyOptions{})
			errs[i] = err
			if r != nil {
				applied[i] = len(r.Applied)
			}
		}()
	}
	close(start)
	wg.Wait()
	total := 0
	for i := range runs {
		require.NoError(t, errs[i])
		total += applied[i]
	}
	assert.Equal(t, 1, total, "one run applied the file, the others found nothing pending")
	assert.Len(t, revisions(t, pgtest.Open(t, url)), 1)
}

func TestApplyLockTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.EmptyURL(t)
	holder := pgtest.Open(t, url)
	conn, err := holder.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	// Hold the Atlas CLI's lock, as a running "atlas migrate apply" would.
	var got bool
	require.NoError(t, conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, atlasLockID()).Scan(&got))
	require.True(t, got)

	_, err = migration.Apply(ctx, pgtest.Open(t, url), dirWith(t, nil), migration.ApplyOptions{LockTimeout: 1})
	assert.True(t, errors.Is(err, migration.ErrLocked), "got %v", err)
}

// atlasLockID is the advisory lock key Atlas derives for "atlas_migrate_execute".
func atlasLockID() int64 {
	h := fnv.New32()
	h.Write([]byte("atlas_migrate_execute"))
	return int64(h.Sum32())
}

// The Atlas CLI keeps its identifier in a row of the revisions table; it
// is no revision, for status, apply or the read and write calls.
func TestCloudIdentifierRowIsNoRevision(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.Open(t, pgtest.EmptyURL(t))
	dir := dirWith(t, nil)
	_, err := migration.Apply(ctx, db, dir, migration.ApplyOptions{})
	require.NoError(t, err)
	// As the CLI writes it.
	_, err = db.Exec(`INSERT INTO atlas_schema_revisions.atlas_schema_revisions
		(version, description, executed_at, execution_time, hash, operator_version)
		VALUES ('.atlas_cloud_identifier', '5b4b6a8e-2f0c-4d55-9c7e-0b8a3c1f2d41', now(), 0, '', 'Atlas CLI v0.38.0')`)
	require.NoError(t, err)

	st, err := migration.ReadStatus(ctx, db, dir, "")
	require.NoError(t, err)
	assert.Equal(t, migration.StateUpToDate, st.State(), "%+v", st)
	assert.Equal(t, 1, st.Revisions)

	later := dirWith(t, map[string]string{"20260301000000_add_note.sql": "ALTER TABLE \"idempotency_records\" ADD COLUMN \"note\" text;\n"})
	report, err := migration.Apply(ctx, db, later, migration.ApplyOptions{})
	require.NoError(t, err)
	require.Len(t, report.Applied, 1)

	revs := migration.NewRevisions(db, "")
	all, err := revs.ReadRevisions(ctx)
	require.NoError(t, err)
	require.Len(t, all, 2)
	assert.Equal(t, spec.Version, all[0].Version)
	_, err = revs.ReadRevision(ctx, migration.CloudIdentifier)
	assert.ErrorContains(t, err, "identifier row, not a revision")
	assert.ErrorContains(t, revs.WriteRevision(ctx, &migrate.Revision{Version: migration.CloudIdentifier}), "identifier row, not a revision")
	assert.ErrorContains(t, revs.DeleteRevision(ctx, migration.CloudIdentifier), "identifier row, not a revision")
	var desc string
	require.NoError(t, db.QueryRow(`SELECT description FROM atlas_schema_revisions.atlas_schema_revisions WHERE version = '.atlas_cloud_identifier'`).Scan(&desc))
	assert.Equal(t, "5b4b6a8e-2f0c-4d55-9c7e-0b8a3c1f2d41", desc, "the row is left as the CLI wrote it")
}

// As in the CLI's revisions schema, a revision's description and start time
// are written once; the rest follows the latest write.
func TestWriteRevisionKeepsDescriptionAndStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.Open(t, pgtest.EmptyURL(t))
	revs := migration.NewRevisions(db, "")
	require.NoError(t, revs.Init(ctx))
	start := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
	require.NoError(t, revs.WriteRevision(ctx, &migrate.Revision{
		Version: "20260201000000", Description: "first", Type: migrate.RevisionTypeExecute, Total: 2,
		ExecutedAt: start, Hash: "h1", OperatorVersion: "Atlas CLI v0.38.0",
	}))
	require.NoError(t, revs.WriteRevision(ctx, &migrate.Revision{
		Version: "20260201000000", Description: "second", Type: migrate.RevisionTypeExecute, Applied: 2, Total: 2,
		ExecutedAt: start.Add(time.Hour), ExecutionTime: time.Second, Hash: "h2", OperatorVersion: migration.OperatorVersion,
	}))
	got, err := revs.ReadRevision(ctx, "20260201000000")
	require.NoError(t, err)
	assert.Equal(t, "first", got.Description)
	assert.True(t, got.ExecutedAt.Equal(start), "executed_at %v", got.ExecutedAt)
	assert.Equal(t, 2, got.Applied)
	assert.Equal(t, time.Second, got.ExecutionTime)
	assert.Equal(t, "h2", got.Hash)
	assert.Equal(t, migration.OperatorVersion, got.OperatorVersion)
}
