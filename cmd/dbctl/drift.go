package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/klozd/api/internal/drift"
	"github.com/klozd/api/internal/migration"
	"github.com/klozd/api/spec"
)

func runDrift(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("dbctl drift",
		"Checks that atlas.sum matches the migration files, that the ent schema needs no new migration,\n"+
			"that the migrations build exactly the spec (spec/migration.sql), and with --url that a live\n"+
			"database matches the migrations (atlas_schema_revisions and _prisma_migrations are ignored).\n"+
			"Prints 'in sync' or the differences. Exit 0 in sync, 1 drift, 2 bad usage, unreachable or a\n"+
			"transaction pooler (use DIRECT_URL, see dbctl -h).",
		"dbctl drift --url postgres://app@db:5432/klozd --json", stderr)
	liveURL := envFlag(fs, "url",
		"`URL` of a live database to compare with the migrations, direct to PostgreSQL (default: $DIRECT_URL, else $DATABASE_URL; see dbctl -h; none: skip that check)",
		"DIRECT_URL", "DATABASE_URL")
	devURL := devURLFlag(fs)
	dirPath := dirFlag(fs)
	noSpec := fs.Bool("no-spec", false, "skip the comparison with spec/migration.sql")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	const name = "dbctl drift"
	dir, err := openDir(*dirPath)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	var liveSchema string
	if *liveURL != "" {
		// The live schema is the URL's search_path schema, as for apply.
		if _, liveSchema, err = migration.SchemasFor(*liveURL); err != nil {
			return usageErr(stderr, name, err)
		}
		db, err := connectSession(ctx, *liveURL)
		if err != nil {
			return usageErr(stderr, name, err)
		}
		_ = db.Close()
	}
	dev, err := devServer(ctx, *devURL)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	defer dev.Close()
	opts := drift.Options{Dir: dir, Dev: dev, URL: *liveURL, Schema: liveSchema}
	if !*noSpec {
		opts.Spec = spec.MigrationSQL
	}
	report, err := drift.Run(ctx, opts)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(report)
	} else {
		printReport(stdout, report)
	}
	if !report.InSync {
		return exitFail
	}
	return exitOK
}

func printReport(w io.Writer, r *drift.Report) {
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.InSync {
			mark = "DRIFT"
		}
		fmt.Fprintf(w, "%-5s %s\n", mark, c.Name)
		for _, d := range c.Differences {
			fmt.Fprintf(w, "      - %s\n", d)
		}
	}
	if r.InSync {
		fmt.Fprintln(w, "in sync")
	} else {
		fmt.Fprintln(w, "drift found")
	}
}
