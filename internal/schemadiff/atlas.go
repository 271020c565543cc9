package schemadiff

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"

	"ariga.io/atlas/sql/postgres"
	"ariga.io/atlas/sql/schema"
)

// AtlasDiff inspects fromSchema in from and toSchema in to (default
// "public" for either) with the Atlas library and returns the statements
// Atlas would run to turn the schema of from into the schema of to; none
// when Atlas sees no change. The schemas are compared whatever their names:
// the statements name fromSchema, and the schemas' own attributes (such as
// a comment) are not compared. [IgnoredTables] are left out. Atlas does
// not compare column order or the names of primary-key constraints;
// [Compare] does.
func AtlasDiff(ctx context.Context, from, to *sql.DB, fromSchema, toSchema string) ([]string, error) {
	fromDrv, fromS, err := inspect(ctx, from, cmp.Or(fromSchema, "public"))
	if err != nil {
		return nil, err
	}
	_, toS, err := inspect(ctx, to, cmp.Or(toSchema, "public"))
	if err != nil {
		return nil, err
	}
	// Atlas diffs schemas of the same name; the tables keep pointing at
	// their schema, so renaming it renames their qualifier too. What is
	// compared is the tables, not the schema object: its attributes (the
	// comment on public) are taken as equal.
	toS.Name, toS.Attrs = fromS.Name, fromS.Attrs
	changes, err := fromDrv.SchemaDiff(fromS, toS)
	if err != nil {
		return nil, fmt.Errorf("schemadiff: atlas diff: %w", err)
	}
	if len(changes) == 0 {
		return nil, nil
	}
	plan, err := fromDrv.PlanChanges(ctx, "drift", changes)
	if err != nil {
		return nil, fmt.Errorf("schemadiff: atlas plan: %w", err)
	}
	stmts := make([]string, 0, len(plan.Changes))
	for _, c := range plan.Changes {
		stmts = append(stmts, c.Cmd)
	}
	return stmts, nil
}

func inspect(ctx context.Context, db *sql.DB, schemaName string) (*postgres.Driver, *schema.Schema, error) {
	drv, err := postgres.Open(db)
	if err != nil {
		return nil, nil, fmt.Errorf("schemadiff: atlas open: %w", err)
	}
	s, err := drv.InspectSchema(ctx, schemaName, &schema.InspectOptions{Exclude: IgnoredTables})
	if err != nil {
		return nil, nil, fmt.Errorf("schemadiff: atlas inspect %s: %w", schemaName, err)
	}
	return drv.(*postgres.Driver), s, nil
}
