package migration

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/klozd/api/internal/database"
)

// SchemasFor returns, for a database URL, the schema of the revisions table
// and the schema the connection is bound to, by the Atlas CLI's rule: a URL
// with search_path=<schema> is bound to that schema and keeps its revisions
// in <schema>.atlas_schema_revisions; any other URL is bound to the whole
// database and keeps them in atlas_schema_revisions.atlas_schema_revisions.
func SchemasFor(rawURL string) (revisions, bound string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", "", fmt.Errorf("migration: parse URL: %w", database.ParseError(err))
	}
	bound = u.Query().Get("search_path")
	if strings.ContainsAny(bound, ", ") {
		return "", "", fmt.Errorf("migration: search_path %q names several schemas: give exactly one", bound)
	}
	if bound == "" {
		return DefaultRevisionsSchema, "", nil
	}
	return bound, bound, nil
}
