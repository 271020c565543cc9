package migration_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/migration"
)

// The Atlas CLI's rule: search_path binds the URL to a schema, which then
// holds the revisions table.
func TestSchemasFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, revisions, bound string
	}{
		{"postgres://app@db:5432/klozd", "atlas_schema_revisions", ""},
		{"postgres://app@db:5432/klozd?sslmode=require", "atlas_schema_revisions", ""},
		{"postgres://app@db:5432/klozd?search_path=public", "public", "public"},
		{"postgresql://app@db/klozd?sslmode=disable&search_path=app", "app", "app"},
	} {
		revisions, bound, err := migration.SchemasFor(tc.url)
		require.NoError(t, err, tc.url)
		assert.Equal(t, tc.revisions, revisions, tc.url)
		assert.Equal(t, tc.bound, bound, tc.url)
	}
	_, _, err := migration.SchemasFor("postgres://db/klozd?search_path=a,b")
	assert.ErrorContains(t, err, "several schemas")
}

func FuzzSchemasFor(f *testing.F) {
	f.Add("postgres://app@db:5432/klozd?search_path=app")
	f.Add("postgres://%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		revisions, bound, err := migration.SchemasFor(raw)
		if err != nil {
			return
		}
		if bound != "" && revisions != bound {
			t.Fatalf("bound %q but revisions in %q", bound, revisions)
		}
		if bound == "" && revisions != migration.DefaultRevisionsSchema {
			t.Fatalf("unbound URL with revisions in %q", revisions)
		}
	})
}
