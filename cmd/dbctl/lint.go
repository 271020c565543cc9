package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/klozd/api/internal/migration"
)

func runMigrateLint(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "dbctl migrate lint"
	fs := newFlags(name,
		"Runs the Atlas library's analyzers over the latest migration files, replayed on a dev database:\n"+
			"destructive changes (dropped schemas, tables, columns), data-dependent changes (a unique index\n"+
			"or NOT NULL that existing rows may break), backward-incompatible changes (renames) and dropped\n"+
			"constraints. A destructive change fails (exit 1) unless the statement carries the Atlas CLI's\n"+
			"directive on the line above it:\n"+
			"    -- atlas:nolint destructive\n"+
			"or the file starts with it followed by an empty line (bare '-- atlas:nolint' silences all).\n"+
			"Other findings are printed as warnings.\n"+
			"Exit 0 clean or warnings only, 1 a destructive change or a file that fails to replay (or\n"+
			"atlas.sum does not match), 2 bad usage or an unreachable or unusable dev database.",
		"dbctl migrate lint --latest 2 --json", stderr)
	latest := fs.Int("latest", 1, "analyze the latest N files")
	devURL := devURLFlag(fs)
	dirPath := dirFlag(fs)
	asJSON := fs.Bool("json", false, "print the findings as JSON")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	if *latest < 1 {
		return usageErr(stderr, name, fmt.Errorf("--latest must be at least 1, got %d", *latest))
	}
	dir, err := openDir(*dirPath)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	dev, err := devServer(ctx, *devURL)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	defer dev.Close()
	scratch, drop, err := dev.Create(ctx, "dbctl_lint")
	if err != nil {
		return usageErr(stderr, name, err)
	}
	defer drop()
	report, err := migration.Lint(ctx, dir, migration.LintOptions{Latest: *latest, DevURL: scratch})
	if errors.Is(err, migration.ErrDevDatabase) {
		return usageErr(stderr, name, err)
	}
	if err != nil {
		return failErr(stderr, name, err)
	}
	if *asJSON {
		writeJSON(stdout, report)
	} else {
		printLint(stdout, report)
	}
	if report.Failed() {
		return exitFail
	}
	return exitOK
}

func printLint(w io.Writer, r *migration.LintReport) {
	failing := 0
	for _, file := range r.Files {
		fmt.Fprintf(w, "%s\n", file)
		n := 0
		for _, f := range r.Findings {
			if f.File != file {
				continue
			}
			n++
			level := "warning"
			switch {
			case f.Silenced:
				level = "silenced"
			case f.Destructive:
				level = "error"
				failing++
			}
			fmt.Fprintf(w, "  %s: %s %s: %s\n    statement: %s\n", level, f.Analyzer, f.Code, f.Text, oneLine(f.Statement))
		}
		if n == 0 {
			fmt.Fprintln(w, "  no findings")
		}
	}
	if failing > 0 {
		fmt.Fprintf(w, "%d destructive change(s): if intended, put '-- %s destructive' on the line above the statement\n",
			failing, migration.NolintDirective)
	}
}
