package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"ariga.io/atlas/sql/migrate"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/migration"
	"github.com/klozd/api/internal/pgtest"
	"github.com/klozd/api/spec"
)

const later = "20260301000000_add_note.sql"

func TestApplyOnEmptyDatabaseThenNoop(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyURL(t)
	dir := "../../migrations"

	r := dbctl(t, "migrate", "apply", "--url", url, "--dir", dir)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Applied "+firstFile+" (9 statements)")
	assert.Contains(t, r.stdout, "Migrated to version "+spec.Version)

	// The row is the one the Atlas CLI writes for the same file.
	ld, err := migrate.NewLocalDir(dir)
	require.NoError(t, err)
	sum, err := ld.Checksum()
	require.NoError(t, err)
	hash, err := sum.SumByName(firstFile)
	require.NoError(t, err)
	db := pgtest.Open(t, url)
	assert.Equal(t, []revision{{
		Version: spec.Version, Description: spec.Name, Hash: hash, Operator: migration.OperatorVersion,
		Type: int(migrate.RevisionTypeExecute), Applied: 9, Total: 9, Error: cliEmpty, ErrorStmt: cliEmpty, Partial: cliNull,
	}}, revisions(t, db, "atlas_schema_revisions"))
	assert.True(t, tableExists(t, db, "public.auth_attempts"))

	r = dbctl(t, "migrate", "apply", "--url", url, "--dir", dir)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "No pending migrations")
	assert.NotContains(t, r.stdout, "Applied")
	assert.Len(t, revisions(t, db, "atlas_schema_revisions"), 1)
}

func TestApplyJSONAndDryRun(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyURL(t)
	r := dbctl(t, "migrate", "apply", "--url", url, "--dir", "../../migrations", "--dry-run")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "-- "+firstFile+" (9 statements)")
	assert.Contains(t, r.stdout, `CREATE TABLE "auth_attempts"`)
	db := pgtest.Open(t, url)
	assert.False(t, tableExists(t, db, "public.auth_attempts"), "a dry run changes nothing")
	assert.False(t, tableExists(t, db, "atlas_schema_revisions.atlas_schema_revisions"), "not even the revisions table")

	r = dbctl(t, "migrate", "apply", "--url", url, "--dir", "../../migrations", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var res applyResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &res))
	require.Len(t, res.Applied, 1)
	assert.Equal(t, spec.Version, res.Applied[0].Version)
	assert.Equal(t, 9, res.Applied[0].Count)
	assert.Equal(t, "atlas_schema_revisions", res.RevisionsSchema)
}

// A URL scoped to a schema keeps its revisions in that schema, as the CLI does.
func TestApplySearchPath(t *testing.T) {
	t.Parallel()
	url := withParam(t, pgtest.EmptyURL(t), "search_path", "app")
	r := dbctl(t, "migrate", "apply", "--url", url, "--dir", "../../migrations")
	require.Equal(t, exitOK, r.code, r.stderr)
	db := pgtest.Open(t, url)
	assert.True(t, tableExists(t, db, "app.auth_attempts"))
	assert.False(t, tableExists(t, db, "public.auth_attempts"))
	assert.Len(t, revisions(t, db, "app"), 1)
	assert.False(t, tableExists(t, db, "atlas_schema_revisions.atlas_schema_revisions"))

	r = dbctl(t, "migrate", "status", "--url", url, "--dir", "../../migrations")
	assert.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "Revisions: app.atlas_schema_revisions")
}

// Two runs with independent pools, released together: one applies, the
// other waits for the lock and finds nothing to do.
func TestConcurrentApply(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyURL(t)
	const runs = 2
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]result, runs)
	)
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = dbctl(t, "migrate", "apply", "--url", url, "--dir", "../../migrations", "--lock-timeout", "1m")
		}()
	}
	close(start)
	wg.Wait()
	applied := 0
	for _, r := range results {
		require.Equal(t, exitOK, r.code, r.stderr)
		applied += strings.Count(r.stdout, "Applied "+firstFile)
	}
	assert.Equal(t, 1, applied, "one run applied the file: %+v", results)
	assert.Len(t, revisions(t, pgtest.Open(t, url), "atlas_schema_revisions"), 1)
}

func TestApplyLockHeldStopsCleanly(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyURL(t)
	conn, err := pgtest.Open(t, url).Conn(t.Context())
	require.NoError(t, err)
	defer conn.Close()
	var got bool
	require.NoError(t, conn.QueryRowContext(t.Context(), `SELECT pg_try_advisory_lock($1)`, atlasLockID()).Scan(&got))
	require.True(t, got)
	r := dbctl(t, "migrate", "apply", "--url", url, "--dir", "../../migrations", "--lock-timeout", "1ms")
	assert.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stderr, "holds the lock")
	assert.Equal(t, 1, lines(r.stderr))
}

func TestApplyFailingMigration(t *testing.T) {
	t.Parallel()
	const bad = "20260201000000_broken.sql"
	for _, mode := range []string{"file", "all", "none"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			url := pgtest.EmptyURL(t)
			dir := migrationsDir(t, map[string]string{
				bad: "CREATE TABLE \"kept_out\" (\"id\" text);\nALTER TABLE \"no_such_table\"\n  ADD COLUMN \"x\" integer;\n",
			})
			r := dbctl(t, "migrate", "apply", "--url", url, "--dir", dir, "--tx-mode", mode)
			assert.Equal(t, exitFail, r.code)
			assert.Contains(t, r.stderr, bad)
			assert.Contains(t, r.stderr, `statement: ALTER TABLE "no_such_table" ADD COLUMN "x" integer;`)
			assert.Contains(t, r.stderr, `relation "no_such_table" does not exist`)
			assert.Equal(t, 1, lines(r.stderr), "one line: %q", r.stderr)
			db := pgtest.Open(t, url)
			revs := revisions(t, db, "atlas_schema_revisions")
			applied := r.stdout
			r = dbctl(t, "migrate", "status", "--url", url, "--dir", dir)
			switch mode {
			case "file":
				// The file and its revision rolled back together; the
				// earlier file stays applied.
				assert.Contains(t, applied, "Applied "+firstFile)
				assert.False(t, tableExists(t, db, "public.kept_out"), "the failing file was rolled back")
				require.Len(t, revs, 1)
				assert.Equal(t, exitPending, r.code, r.stdout+r.stderr)
				assert.Contains(t, r.stdout, "Pending: "+bad)
			case "all":
				// Nothing of the run stays, not even the earlier file.
				assert.False(t, tableExists(t, db, "public.auth_attempts"))
				assert.False(t, tableExists(t, db, "public.kept_out"))
				assert.Empty(t, revs)
				assert.Equal(t, exitPending, r.code, r.stdout+r.stderr)
				assert.Contains(t, r.stdout, "Pending: "+firstFile)
			case "none":
				// The statement before the failing one stays, and the
				// revision records it.
				assert.True(t, tableExists(t, db, "public.kept_out"))
				require.Len(t, revs, 2)
				assert.Equal(t, 1, revs[1].Applied)
				assert.Equal(t, 2, revs[1].Total)
				assert.Contains(t, revs[1].Error.String, "no_such_table")
				assert.Equal(t, exitFailed, r.code, r.stdout+r.stderr)
				assert.Contains(t, r.stdout, "Failed: "+bad+" (1 of 2 statements applied)")
			}
		})
	}
}

func TestStatusStates(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyURL(t)
	dir := "../../migrations"
	r := dbctl(t, "migrate", "status", "--url", url, "--dir", dir)
	assert.Equal(t, exitPending, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "Pending: "+firstFile)

	require.Equal(t, exitOK, dbctl(t, "migrate", "apply", "--url", url, "--dir", dir).code)
	r = dbctl(t, "migrate", "status", "--url", url, "--dir", dir)
	assert.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "Database schema is up to date!")

	r = dbctl(t, "migrate", "status", "--url", url, "--dir", migrationsDir(t, map[string]string{later: "SELECT 1;\n"}), "--json")
	assert.Equal(t, exitPending, r.code)
	var st statusResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	assert.Equal(t, "pending", st.State)
	assert.Equal(t, []string{later}, st.Pending)
	assert.Equal(t, []string{spec.Version}, st.Applied)

	_, err := pgtest.Open(t, url).Exec(`INSERT INTO atlas_schema_revisions.atlas_schema_revisions
		(version, description, type, applied, total, executed_at, execution_time, hash, operator_version)
		VALUES ('20990101000000', 'from_another_branch', 2, 1, 1, now(), 1, 'h', 'Atlas CLI v0.38.0')`)
	require.NoError(t, err)
	r = dbctl(t, "migrate", "status", "--url", url, "--dir", dir)
	assert.Equal(t, exitUnknown, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "Unknown: version 20990101000000")
}

func TestPrismaAdoption(t *testing.T) {
	t.Parallel()
	url := prismaDB(t)
	db := pgtest.Open(t, url)
	before := prismaRows(t, db)
	dir := migrationsDir(t, map[string]string{later: "ALTER TABLE \"idempotency_records\" ADD COLUMN \"note\" text;\n"})

	r := dbctl(t, "migrate", "apply", "--url", url, "--dir", dir, "--dev-url", devURL(t))
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "Found Prisma migration "+spec.Version+"_"+spec.Name)
	assert.Contains(t, r.stdout, "Recorded version "+spec.Version+" as the baseline (adopted from _prisma_migrations)")
	assert.Contains(t, r.stdout, "Applied "+later)
	revs := revisions(t, db, "atlas_schema_revisions")
	require.Len(t, revs, 2)
	assert.Equal(t, spec.Version, revs[0].Version)
	assert.Equal(t, int(migrate.RevisionTypeBaseline), revs[0].Type)
	assert.Equal(t, "20260301000000", revs[1].Version)
	assert.Equal(t, 1, revs[1].Applied)
	assert.Equal(t, before, prismaRows(t, db), "_prisma_migrations is never modified")

	r = dbctl(t, "migrate", "status", "--url", url, "--dir", dir)
	assert.Equal(t, exitOK, r.code, r.stdout)
	assert.Contains(t, r.stdout, "baseline "+spec.Version)
}

func TestPrismaAdoptionRefusesADifferentSchema(t *testing.T) {
	t.Parallel()
	url := prismaDB(t)
	db := pgtest.Open(t, url)
	_, err := db.Exec(`DROP INDEX "auth_attempts_ip_idx"; ALTER TABLE "auth_attempts" ALTER COLUMN "failuresCount" DROP DEFAULT`)
	require.NoError(t, err)
	before := prismaRows(t, db)
	dir := migrationsDir(t, map[string]string{later: "ALTER TABLE \"idempotency_records\" ADD COLUMN \"note\" text;\n"})

	r := dbctl(t, "migrate", "apply", "--url", url, "--dir", dir, "--dev-url", devURL(t))
	assert.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stdout, "index auth_attempts_ip_idx on auth_attempts: missing")
	assert.Contains(t, r.stdout, "column auth_attempts.failuresCount: default is none, expected 0")
	assert.Contains(t, r.stderr, "refusing to baseline at "+spec.Version)
	assert.False(t, tableExists(t, db, "atlas_schema_revisions.atlas_schema_revisions"), "nothing recorded")
	var noted bool
	require.NoError(t, db.QueryRow(`SELECT EXISTS (SELECT FROM information_schema.columns WHERE column_name = 'note')`).Scan(&noted))
	assert.False(t, noted, "no later file applied")
	assert.Equal(t, before, prismaRows(t, db))
}

// --baseline adopts a database that has the tables but no Prisma table.
func TestExplicitBaseline(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyURL(t)
	db := pgtest.Open(t, url)
	_, err := db.Exec(spec.MigrationSQL)
	require.NoError(t, err)

	r := dbctl(t, "migrate", "apply", "--url", url, "--dir", "../../migrations")
	assert.Equal(t, exitFail, r.code, "a dirty database without a baseline is refused")
	assert.Contains(t, r.stderr, "baseline version or allow-dirty is required")

	r = dbctl(t, "migrate", "apply", "--url", url, "--dir", "../../migrations", "--baseline", spec.Version, "--dev-url", devURL(t))
	require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "Recorded version "+spec.Version+" as the baseline (--baseline)")
	revs := revisions(t, db, "atlas_schema_revisions")
	require.Len(t, revs, 1)
	assert.Equal(t, int(migrate.RevisionTypeBaseline), revs[0].Type)
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	r := dbctl(t, "migrate", "apply", "--url", "postgres://app@127.0.0.1:1/klozd", "--dir", "../../migrations")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "127.0.0.1:1")
	assert.Equal(t, 1, lines(r.stderr), "%q", r.stderr)

	admin, err := url.Parse(devURL(t))
	require.NoError(t, err)
	admin.User = url.UserPassword("no_such_role", "wrong")
	r = dbctl(t, "migrate", "status", "--url", admin.String(), "--dir", "../../migrations")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "cannot connect to PostgreSQL at "+admin.Host)
	assert.Contains(t, r.stderr, "no_such_role")
	assert.NotContains(t, r.stderr, "wrong")
	assert.Equal(t, 1, lines(r.stderr), "%q", r.stderr)

	for _, args := range [][]string{
		{"migrate", "apply", "--nope"},
		{"migrate", "status", "--nope"},
		{"migrate", "lint", "--nope"},
		{"migrate", "reset", "--nope"},
		{"dev", "--nope"},
		{"drift", "--nope"},
	} {
		r := dbctl(t, args...)
		assert.Equal(t, exitUsage, r.code, "%v", args)
		assert.Contains(t, r.stderr, "flag provided but not defined: -nope", "%v", args)
		assert.Equal(t, 1, lines(r.stderr), "%v: %q", args, r.stderr)
	}
}

// atlasLockID is the advisory lock key Atlas derives for "atlas_migrate_execute".
func atlasLockID() int64 {
	var h uint32 = 2166136261
	for _, c := range []byte("atlas_migrate_execute") {
		h *= 16777619
		h ^= uint32(c)
	}
	return int64(h)
}

func withParam(t *testing.T, raw, key, value string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// A file that failed and rolled back is fixed, re-hashed and applied again,
// with more statements than before or fewer: its revision is then the
// fixed file's, and later runs find nothing to do.
func TestApplyFixedFileAfterFailure(t *testing.T) {
	t.Parallel()
	const bad = "20260201000000_broken.sql"
	for _, c := range []struct{ name, mode, fixed string }{
		{"more statements", "file", "CREATE TABLE \"t1\" (\"id\" text);\nCREATE TABLE \"t2\" (\"id\" text);\nCREATE TABLE \"t3\" (\"id\" text);\n"},
		{"fewer statements", "file", "CREATE TABLE \"t1\" (\"id\" text);\n"},
		// Resumed after the applied statement, with the fixed file's
		// count as the total.
		{"more statements", "none", "CREATE TABLE \"t1\" (\"id\" text);\nCREATE TABLE \"t2\" (\"id\" text);\nCREATE TABLE \"t3\" (\"id\" text);\n"},
		{"fewer statements", "none", "CREATE TABLE \"t1\" (\"id\" text);\n"},
	} {
		fixed := c.fixed
		t.Run(c.name+" "+c.mode, func(t *testing.T) {
			t.Parallel()
			url := pgtest.EmptyURL(t)
			dir := migrationsDir(t, map[string]string{
				bad: "CREATE TABLE \"t1\" (\"id\" text);\nALTER TABLE \"no_such_table\" ADD COLUMN \"x\" integer;\n",
			})
			r := dbctl(t, "migrate", "apply", "--url", url, "--dir", dir, "--tx-mode", c.mode)
			require.Equal(t, exitFail, r.code, r.stdout+r.stderr)
			ld, err := migrate.NewLocalDir(dir)
			require.NoError(t, err)
			sum, err := ld.Checksum()
			require.NoError(t, err)
			failedHash, err := sum.SumByName(bad)
			require.NoError(t, err)

			require.NoError(t, os.WriteFile(filepath.Join(dir, bad), []byte(fixed), 0o644))
			require.Equal(t, exitOK, dbctl(t, "migrate", "hash", "--dir", dir).code)
			r = dbctl(t, "migrate", "apply", "--url", url, "--dir", dir)
			require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
			assert.Contains(t, r.stdout, "Applied "+bad)

			sum, err = ld.Checksum()
			require.NoError(t, err)
			hash, err := sum.SumByName(bad)
			require.NoError(t, err)
			if c.mode == "none" {
				// A resumed revision keeps the hash it started with, as
				// the Atlas CLI's executor keeps it.
				hash = failedHash
			}
			n := strings.Count(fixed, ";")
			revs := revisions(t, pgtest.Open(t, url), "atlas_schema_revisions")
			require.Len(t, revs, 2)
			assert.Equal(t, revision{
				Version: "20260201000000", Description: "broken", Hash: hash, Operator: migration.OperatorVersion,
				Type: int(migrate.RevisionTypeExecute), Applied: n, Total: n, Error: cliEmpty, ErrorStmt: cliEmpty, Partial: cliNull,
			}, revs[1])

			r = dbctl(t, "migrate", "apply", "--url", url, "--dir", dir)
			require.Equal(t, exitOK, r.code, r.stdout+r.stderr)
			assert.Contains(t, r.stdout, "No pending migrations")
			r = dbctl(t, "migrate", "status", "--url", url, "--dir", dir)
			assert.Equal(t, exitOK, r.code, r.stdout+r.stderr)
		})
	}
}

// Without a transaction, a file that fails again after an edit is resumed
// after the statements recorded, with the edited file's total, and
// records the new error; its hash stays the one it started with, as the
// Atlas CLI's executor keeps it.
func TestApplyFailsAgainAfterEdit(t *testing.T) {
	t.Parallel()
	const bad = "20260201000000_broken.sql"
	url := pgtest.EmptyURL(t)
	dir := migrationsDir(t, map[string]string{
		bad: "CREATE TABLE \"t1\" (\"id\" text);\nALTER TABLE \"no_such_table\" ADD COLUMN \"x\" integer;\n",
	})
	require.Equal(t, exitFail, dbctl(t, "migrate", "apply", "--url", url, "--dir", dir, "--tx-mode", "none").code)
	ld, err := migrate.NewLocalDir(dir)
	require.NoError(t, err)
	sum, err := ld.Checksum()
	require.NoError(t, err)
	hash, err := sum.SumByName(bad)
	require.NoError(t, err)

	edited := "CREATE TABLE \"t1\" (\"id\" text);\nCREATE TABLE \"t2\" (\"id\" text);\nALTER TABLE \"still_missing\" ADD COLUMN \"x\" integer;\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, bad), []byte(edited), 0o644))
	require.Equal(t, exitOK, dbctl(t, "migrate", "hash", "--dir", dir).code)
	r := dbctl(t, "migrate", "apply", "--url", url, "--dir", dir, "--tx-mode", "none")
	require.Equal(t, exitFail, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stderr, `relation "still_missing" does not exist`)

	revs := revisions(t, pgtest.Open(t, url), "atlas_schema_revisions")
	require.Len(t, revs, 2)
	assert.Equal(t, hash, revs[1].Hash)
	assert.Equal(t, 2, revs[1].Applied)
	assert.Equal(t, 3, revs[1].Total)
	assert.Contains(t, revs[1].Error.String, "still_missing")

	r = dbctl(t, "migrate", "status", "--url", url, "--dir", dir)
	assert.Equal(t, exitFailed, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "Failed: "+bad+" (2 of 3 statements applied)")
}

// A revision recording statements applied without their hashes, as an
// earlier dbctl could leave it, stops apply with one line instead of a
// crash in the executor.
func TestApplyUnresumableRevision(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyURL(t)
	dir := migrationsDir(t, map[string]string{later: "SELECT 1;\nSELECT 2;\n"})
	require.Equal(t, exitOK, dbctl(t, "migrate", "apply", "--url", url, "--dir", dir).code)
	_, err := pgtest.Open(t, url).Exec(`UPDATE atlas_schema_revisions.atlas_schema_revisions
		SET applied = 3, total = 2, partial_hashes = NULL WHERE version = '20260301000000'`)
	require.NoError(t, err)

	r := dbctl(t, "migrate", "apply", "--url", url, "--dir", dir)
	assert.Equal(t, exitFail, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stderr, "revision 20260301000000 records 3 of 2 statements applied but not which")
	assert.Equal(t, 1, lines(r.stderr), "%q", r.stderr)
}

// No command echoes a password from --url or --dev-url, whether in the
// user info, a password= parameter or a key=value connection string.
func TestErrorsNeverEchoPasswords(t *testing.T) {
	t.Parallel()
	const secret = "S3cretPW"
	keyValue := "host=127.0.0.1 port=1 user=app password=" + secret + " dbname=klozd"
	admin, err := url.Parse(devURL(t))
	require.NoError(t, err)
	admin.User = url.User("no_such_role")
	badDev := withParam(t, admin.String(), "password", secret)
	dir := "../../migrations"
	for _, args := range [][]string{
		{"migrate", "status", "--url", keyValue, "--dir", dir},
		{"migrate", "apply", "--url", keyValue, "--dir", dir},
		{"migrate", "reset", "--url", keyValue, "--dir", dir, "--force", "--yes"},
		{"gc", "--url", keyValue},
		{"drift", "--url", keyValue, "--dir", dir},
		{"drift", "--dev-url", keyValue, "--dir", dir},
		{"drift", "--dev-url", badDev, "--dir", dir},
		{"migrate", "lint", "--dev-url", badDev, "--dir", dir},
		{"migrate", "new", "--dev-url", badDev, "--dir", dir, "x"},
	} {
		r := dbctl(t, args...)
		assert.Equal(t, exitUsage, r.code, "%v: %s", args, r.stdout+r.stderr)
		assert.NotContains(t, r.stdout+r.stderr, secret, "%v", args)
		assert.Equal(t, 1, lines(r.stderr), "%v: %q", args, r.stderr)
		if strings.Contains(strings.Join(args, " "), keyValue) {
			assert.Contains(t, r.stderr, "not a postgres:// URL", "%v", args)
		}
	}

	// A Prisma database adopted with a dev server that refuses the role.
	prisma := prismaDB(t)
	r := dbctl(t, "migrate", "apply", "--url", prisma, "--dir", dir, "--dev-url", badDev)
	assert.Equal(t, exitUsage, r.code, r.stdout+r.stderr)
	assert.NotContains(t, r.stdout+r.stderr, secret)
	assert.Contains(t, r.stderr, "no_such_role")
}

// Adoption refuses a live schema that differs only in what Atlas's diff
// ignores or cannot plan, on a plain URL and on a search_path URL.
func TestPrismaAdoptionRefusesCollationAndIdentity(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ alter, want string }{
		"collation": {`ALTER TABLE %s."auth_attempts" ALTER COLUMN "email" TYPE text COLLATE "C"`,
			`column auth_attempts.email: collation is "C", expected the type's default`},
		"identity": {`ALTER TABLE %s."idempotency_records" ALTER COLUMN "responseStatus" ADD GENERATED BY DEFAULT AS IDENTITY`,
			"column idempotency_records.responseStatus: is GENERATED BY DEFAULT AS IDENTITY, expected not an identity column"},
	} {
		for _, schema := range []string{"public", "app"} {
			t.Run(name+" in "+schema, func(t *testing.T) {
				t.Parallel()
				url := prismaDB(t)
				db := pgtest.Open(t, url)
				if schema != "public" {
					_, err := db.Exec(`ALTER SCHEMA public RENAME TO ` + schema + `; CREATE SCHEMA public`)
					require.NoError(t, err)
					url = withParam(t, url, "search_path", schema)
				}
				_, err := db.Exec(fmt.Sprintf(tc.alter, schema))
				require.NoError(t, err)
				for _, dry := range []bool{true, false} {
					args := []string{"migrate", "apply", "--url", url, "--dir", "../../migrations", "--dev-url", devURL(t)}
					if dry {
						args = append(args, "--dry-run")
					}
					r := dbctl(t, args...)
					assert.Equal(t, exitFail, r.code, "dry run %v: %s", dry, r.stdout+r.stderr)
					assert.Contains(t, r.stdout, tc.want)
					assert.NotContains(t, r.stdout, "as the baseline")
					assert.Contains(t, r.stderr, "refusing to baseline at "+spec.Version)
				}
				revs := "atlas_schema_revisions.atlas_schema_revisions"
				if schema != "public" {
					revs = schema + ".atlas_schema_revisions"
				}
				assert.False(t, tableExists(t, db, revs), "nothing recorded")
			})
		}
	}
}

// The Atlas CLI's identifier row is not an unknown version.
func TestStatusIgnoresCloudIdentifier(t *testing.T) {
	t.Parallel()
	url := pgtest.EmptyURL(t)
	require.Equal(t, exitOK, dbctl(t, "migrate", "apply", "--url", url, "--dir", "../../migrations").code)
	_, err := pgtest.Open(t, url).Exec(`INSERT INTO atlas_schema_revisions.atlas_schema_revisions
		(version, description, executed_at, execution_time, hash, operator_version)
		VALUES ('.atlas_cloud_identifier', '5b4b6a8e-2f0c-4d55-9c7e-0b8a3c1f2d41', now(), 0, '', 'Atlas CLI v0.38.0')`)
	require.NoError(t, err)
	r := dbctl(t, "migrate", "status", "--url", url, "--dir", "../../migrations")
	assert.Equal(t, exitOK, r.code, r.stdout+r.stderr)
	assert.NotContains(t, r.stdout, "Unknown")
}

// A local --dev-url without sslmode works as a local --url does.
func TestDevURLWithoutSSLMode(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(devURL(t))
	require.NoError(t, err)
	q := u.Query()
	q.Del("sslmode")
	u.RawQuery = q.Encode()
	r := dbctl(t, "migrate", "lint", "--latest", "1", "--dir", "../../migrations", "--dev-url", u.String())
	assert.Equal(t, exitOK, r.code, r.stdout+r.stderr)
}

// A file older than the latest applied revision is reported by status and
// --dry-run as apply treats it: refused, as a non-linear history.
func TestOutOfOrderFile(t *testing.T) {
	t.Parallel()
	const between = "20260201000000_between.sql"
	url := pgtest.EmptyURL(t)
	applied := migrationsDir(t, map[string]string{later: "SELECT 1;\n"})
	require.Equal(t, exitOK, dbctl(t, "migrate", "apply", "--url", url, "--dir", applied).code)
	dir := migrationsDir(t, map[string]string{later: "SELECT 1;\n", between: "CREATE TABLE \"between\" (\"id\" text);\n"})

	r := dbctl(t, "migrate", "status", "--url", url, "--dir", dir)
	assert.Equal(t, exitPending, r.code, r.stdout+r.stderr)
	assert.Contains(t, r.stdout, "Out of order: "+between)
	assert.NotContains(t, r.stdout, "Pending: "+between)
	assert.Contains(t, r.stdout, "added out of order")
	r = dbctl(t, "migrate", "status", "--url", url, "--dir", dir, "--json")
	var st statusResult
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	assert.Equal(t, []string{between}, st.OutOfOrder)
	assert.Empty(t, st.Pending)

	dry := dbctl(t, "migrate", "apply", "--url", url, "--dir", dir, "--dry-run")
	real := dbctl(t, "migrate", "apply", "--url", url, "--dir", dir)
	for _, r := range []result{dry, real} {
		assert.Equal(t, exitFail, r.code, r.stdout+r.stderr)
		assert.Contains(t, r.stderr, "migration file "+between+" was added out of order")
		assert.Equal(t, 1, lines(r.stderr), "%q", r.stderr)
	}
	assert.Equal(t, dry.stderr, real.stderr)
	assert.False(t, tableExists(t, pgtest.Open(t, url), "public.between"))
}
