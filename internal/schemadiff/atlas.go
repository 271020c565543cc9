package schemadiff

import (
	"context"
	"database/sql"
	"fmt"

	"ariga.io/atlas/sql/postgres"
	"ariga.io/atlas/sql/schema"
)

// AtlasDiff inspects schemaName (default "public") in both databases with
// the Atlas library and returns the statements Atlas would run to turn the
// schema of from into the schema of to; none when Atlas sees no change.
// [IgnoredTables] are left out. Atlas does not compare column order or the
// names of primary-key constraints; [Compare] does.
func AtlasDiff(ctx context.Context, from, to *sql.DB, schemaName string) ([]string, error) {
	if schemaName == "" {
		schemaName = "public"
	}
	fromDrv, fromSchema, err := inspect(ctx, from, schemaName)
	if err != nil {
		return nil, err
	}
	_, toSchema, err := inspect(ctx, to, schemaName)
	if err != nil {
		return nil, err
	}
	changes, err := fromDrv.SchemaDiff(fromSchema, toSchema)
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
