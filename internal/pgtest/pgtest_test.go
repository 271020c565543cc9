package pgtest_test

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Each test's database starts migrated and empty, and what one test writes
// another never sees.
func TestIsolation(t *testing.T) {
	for _, name := range []string{"a", "b", "c", "d"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := pgtest.DB(t)
			var n int
			require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM auth_attempts`).Scan(&n))
			assert.Zero(t, n, "a new database is empty")
			_, err := db.ExecContext(ctx, `INSERT INTO auth_attempts (id, email, "updatedAt") VALUES ($1, $1, now())`, name)
			require.NoError(t, err)
			var revisions int
			require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM atlas_schema_revisions.atlas_schema_revisions`).Scan(&revisions))
			assert.Equal(t, 1, revisions, "the template was migrated")
		})
	}
}

// Without a server and without binaries a test fails with one line saying
// what to install or set; it never skips.
func TestNoServerFailsInOneLine(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") == "1" {
		pgtest.DB(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoServerFailsInOneLine$")
	cmd.Env = append(os.Environ(), "PGTEST_CHILD=1", "PG_BINDIR=/nonexistent", "TEST_DATABASE_URL=", "DATABASE_URL=")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the test fails:\n%s", out)
	var reasons []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "pgtest:") {
			reasons = append(reasons, strings.TrimSpace(line))
		}
	}
	require.Len(t, reasons, 1, "one line of reason:\n%s", out)
	assert.Contains(t, reasons[0], "apt-get install postgresql")
	assert.Contains(t, reasons[0], "TEST_DATABASE_URL")
	assert.NotContains(t, string(out), "SKIP")
}

// TEST_DATABASE_URL is used as given, also when its password holds
// characters a URL must escape ('@', '/', '#', ':', '%').
func TestExternalServerURL(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") == "external" {
		var user string
		require.NoError(t, pgtest.Open(t, pgtest.Start(t).AdminURL).QueryRow(`SELECT session_user`).Scan(&user))
		assert.Equal(t, "pgtest_owner", user, "connected as TEST_DATABASE_URL's role")
		var n int
		require.NoError(t, pgtest.DB(t).QueryRow(`SELECT count(*) FROM auth_attempts`).Scan(&n), "a migrated database through it")
		return
	}
	ctx := context.Background()
	admin := pgtest.Open(t, pgtest.Start(t).AdminURL)
	const password = "p@ss/w#rd:50%"
	_, err := admin.ExecContext(ctx, `DO $$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgtest_owner') THEN
			CREATE ROLE pgtest_owner LOGIN SUPERUSER PASSWORD '`+password+`';
		END IF; END $$`)
	require.NoError(t, err)
	u, err := url.Parse(pgtest.Start(t).AdminURL)
	require.NoError(t, err)
	u.User = url.UserPassword("pgtest_owner", password)
	u.RawQuery = "" // sslmode is left to pgtest: the host is local
	cmd := exec.Command(os.Args[0], "-test.run=^TestExternalServerURL$", "-test.v")
	cmd.Env = append(os.Environ(), "PGTEST_CHILD=external", "TEST_DATABASE_URL="+u.String())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "--- PASS: TestExternalServerURL")
	assert.NotContains(t, string(out), "w#rd", "the password is never printed")
}
