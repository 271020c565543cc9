package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/klozd/api/internal/drift"
	"github.com/klozd/api/spec"
)

func runDrift(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("dbctl drift",
		"Checks that atlas.sum matches the migration files, that the ent schema needs no new migration,\n"+
			"that the migrations build exactly the spec (spec/migration.sql), and with --url that a live\n"+
			"database matches the migrations. Prints 'in sync' or the differences; exit 1 on drift.",
		"dbctl drift --url postgres://app@db:5432/klozd --json", stderr)
	liveURL := fs.String("url", "", "live database to compare with the migrations (optional)")
	devURL := devURLFlag(fs)
	dirPath := dirFlag(fs)
	noSpec := fs.Bool("no-spec", false, "skip the comparison with spec/migration.sql")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	dir, err := openDir(*dirPath)
	if err != nil {
		fmt.Fprintf(stderr, "dbctl drift: %v\n", err)
		return exitUsage
	}
	if *liveURL != "" {
		db, err := connect(ctx, *liveURL)
		if err != nil {
			fmt.Fprintf(stderr, "dbctl drift: %v\n", err)
			return exitUsage
		}
		_ = db.Close()
	}
	dev, err := devServer(ctx, *devURL)
	if err != nil {
		fmt.Fprintf(stderr, "dbctl drift: %v\n", err)
		return exitUsage
	}
	defer dev.Close()
	opts := drift.Options{Dir: dir, Dev: dev, URL: *liveURL}
	if !*noSpec {
		opts.Spec = spec.MigrationSQL
	}
	report, err := drift.Run(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "dbctl drift: %v\n", err)
		return exitUsage
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
