package pgtest_test

import (
	"context"
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
