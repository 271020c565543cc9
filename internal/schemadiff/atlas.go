package schemadiff

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"sync"

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
	return plan(ctx, fromDrv, fromS, toS)
}

// AtlasDiffBoth is [AtlasDiff] in both directions, inspecting each schema
// once: forward is AtlasDiff(a, b, aSchema, bSchema) and backward
// AtlasDiff(b, a, bSchema, aSchema). The two schemas are inspected at the
// same time.
func AtlasDiffBoth(ctx context.Context, a, b *sql.DB, aSchema, bSchema string) (forward, backward []string, err error) {
	var (
		wg         sync.WaitGroup
		aDrv, bDrv *postgres.Driver
		aS, bS     *schema.Schema
		aErr, bErr error
	)
	wg.Go(func() { aDrv, aS, aErr = inspect(ctx, a, cmp.Or(aSchema, "public")) })
	wg.Go(func() { bDrv, bS, bErr = inspect(ctx, b, cmp.Or(bSchema, "public")) })
	wg.Wait()
	if err := cmp.Or(aErr, bErr); err != nil {
		return nil, nil, err
	}
	// plan gives the target the source's name and attributes; each
	// direction starts from the names as inspected.
	aName, aAttrs, bName, bAttrs := aS.Name, aS.Attrs, bS.Name, bS.Attrs
	if forward, err = plan(ctx, aDrv, aS, bS); err != nil {
		return nil, nil, err
	}
	aS.Name, aS.Attrs, bS.Name, bS.Attrs = aName, aAttrs, bName, bAttrs
	if backward, err = plan(ctx, bDrv, bS, aS); err != nil {
		return nil, nil, err
	}
	return forward, backward, nil
}

// plan returns the statements that turn fromS into toS, planned by
// fromDrv; toS takes fromS's name and attributes.
func plan(ctx context.Context, fromDrv *postgres.Driver, fromS, toS *schema.Schema) ([]string, error) {
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
	p, err := fromDrv.PlanChanges(ctx, "drift", changes)
	if err != nil {
		return nil, fmt.Errorf("schemadiff: atlas plan: %w", err)
	}
	stmts := make([]string, 0, len(p.Changes))
	for _, c := range p.Changes {
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
