package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"ariga.io/atlas/sql/migrate"

	"github.com/klozd/api/internal/adoption"
	"github.com/klozd/api/internal/migration"
)

// applyResult is what "migrate apply --json" prints.
type applyResult struct {
	DryRun          bool        `json:"dry_run"`
	RevisionsSchema string      `json:"revisions_schema"`
	Baseline        string      `json:"baseline,omitempty"`
	BaselineSource  string      `json:"baseline_source,omitempty"` // "prisma" or "flag"
	Applied         []fileEntry `json:"applied"`
	Pending         []fileEntry `json:"pending,omitempty"`
	ElapsedMS       int64       `json:"elapsed_ms"`
	Error           *applyError `json:"error,omitempty"`
	Differences     []string    `json:"differences,omitempty"`
}

type fileEntry struct {
	File       string   `json:"file"`
	Version    string   `json:"version"`
	Statements []string `json:"statements,omitempty"`
	Count      int      `json:"statement_count"`
}

type applyError struct {
	Message   string `json:"message"`
	File      string `json:"file,omitempty"`
	Statement string `json:"statement,omitempty"`
}

func runMigrateApply(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("dbctl migrate apply",
		"Applies the pending migration files in order, as atlas migrate apply does: each file in its own\n"+
			"transaction with its revision (--tx-mode file, the default; all: one transaction for all;\n"+
			"none: no transaction, a failed file keeps its applied statements and the next run resumes\n"+
			"after them), recording them in the Atlas CLI's revisions table: --revisions-schema, else\n"+
			"<schema>.atlas_schema_revisions when the URL has search_path=<schema>, else\n"+
			"atlas_schema_revisions.atlas_schema_revisions; like the CLI it refuses a search_path URL whose\n"+
			"schema has no revisions while atlas_schema_revisions has, until --revisions-schema says which. Running it again is a\n"+
			"no-op; a concurrent run waits for the lock (--lock-timeout), then finds nothing to do.\n"+
			"A database migrated by Prisma (a finished _prisma_migrations row, no revisions) is adopted:\n"+
			"its schema is compared with the migrations up to that version on a dev database and, when\n"+
			"equal, that version is recorded as a baseline and later files are applied; when not, nothing\n"+
			"is done and the differences are printed (exit 1). _prisma_migrations is never modified.\n"+
			"Exit 0 applied or nothing to do, 1 a failed statement, a refused baseline or a held lock,\n"+
			"2 bad usage, an unreachable database or a transaction pooler (use DIRECT_URL, see dbctl -h).",
		"dbctl migrate apply --url 'postgres://app@db:5432/klozd?sslmode=require' --dry-run", stderr)
	dbURL := urlFlag(fs)
	dirPath := dirFlag(fs)
	devURL := devURLFlag(fs)
	dryRun := fs.Bool("dry-run", false, "print the pending files and their statements; change nothing")
	baseline := fs.String("baseline", "", "on a database with no revisions, record VERSION as applied and start after it (the schema is verified first)")
	revFlag := revisionsSchemaFlag(fs)
	txMode := fs.String("tx-mode", migration.TxModeFile, "transaction mode, as the Atlas CLI's: file (each file with its revision), all (every pending file in one), none (a failed file keeps its applied statements, recorded in its revision)")
	lockTimeout := fs.Duration("lock-timeout", 10*time.Second, "how long to wait for a concurrent run to release the migration lock")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	const name = "dbctl migrate apply"
	if fs.NArg() > 0 {
		return usageErr(stderr, name, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	start := time.Now()
	revSchema, bound, err := revisionsSchemas(*dbURL, *revFlag)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	switch *txMode {
	case migration.TxModeFile, migration.TxModeAll, migration.TxModeNone:
	default:
		return usageErr(stderr, name, fmt.Errorf("--tx-mode %q: want file, all or none", *txMode))
	}
	dir, err := openDir(*dirPath)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	res := &applyResult{DryRun: *dryRun, RevisionsSchema: revSchema, Applied: []fileEntry{}}
	out := func(code int) int {
		res.ElapsedMS = time.Since(start).Milliseconds()
		if *asJSON {
			writeJSON(stdout, res)
		}
		return code
	}
	fail := func(err error) int {
		res.Error = &applyError{Message: oneLine(err.Error())}
		var fe *migration.FileError
		if errors.As(err, &fe) {
			res.Error.File, res.Error.Statement = fe.File, oneLine(fe.Stmt)
			msg := fmt.Sprintf("%s: statement failed: %s; statement: %s", fe.File, oneLine(fe.Err.Error()), oneLine(fe.Stmt))
			var ue *migration.UnlockError
			if errors.As(err, &ue) {
				msg += "; " + oneLine(ue.Error())
			}
			fmt.Fprintf(stderr, "%s: %s\n", name, msg)
		} else {
			fmt.Fprintf(stderr, "%s: %s\n", name, oneLine(err.Error()))
		}
		return out(exitFail)
	}
	if err := migration.Validate(dir); err != nil {
		return fail(err)
	}
	db, err := connectSession(ctx, *dbURL)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	defer db.Close()

	// The Atlas CLI's guard, before anything is read or created.
	if err := migration.CheckRevisionsSchema(ctx, db, bound, *revFlag); err != nil {
		if code, ok := ambiguous(stderr, name, err); ok {
			res.Error = &applyError{Message: oneLine(err.Error())}
			return out(code)
		}
		return fail(err)
	}
	st, err := migration.ReadStatus(ctx, db, dir, revSchema)
	if err != nil {
		return fail(err)
	}
	if st.Revisions == 0 {
		res.Baseline, res.BaselineSource = *baseline, "flag"
		if res.Baseline == "" {
			p, err := adoption.ReadPrisma(ctx, db, bound)
			if err != nil {
				return fail(err)
			}
			if p != nil {
				if res.Baseline, err = adoption.BaselineFor(p, dir); err != nil {
					return fail(err)
				}
				res.BaselineSource = "prisma"
				if !*asJSON && res.Baseline != "" {
					fmt.Fprintf(stdout, "Found Prisma migration %s and no Atlas revisions: verifying the live schema before adopting it\n", p.Latest())
				}
			}
		}
		if res.Baseline != "" {
			dev, err := devServer(ctx, *devURL)
			if err != nil {
				return usageErr(stderr, name, err)
			}
			err = adoption.Verify(ctx, db, bound, dir, res.Baseline, dev)
			dev.Close()
			var me *adoption.MismatchError
			if errors.As(err, &me) {
				res.Differences = me.Differences
				if !*asJSON {
					fmt.Fprintf(stdout, "The live schema differs from the migrations up to %s:\n", me.Version)
					for _, d := range me.Differences {
						fmt.Fprintf(stdout, "  - %s\n", d)
					}
				}
				return fail(fmt.Errorf("refusing to baseline at %s: the live schema differs from the migrations (%d differences above); fix the database or the migrations, nothing was changed",
					me.Version, len(me.Differences)))
			} else if err != nil {
				return fail(err)
			}
		} else {
			res.BaselineSource = ""
		}
	} else if *baseline != "" {
		fmt.Fprintf(stderr, "%s: --baseline %s ignored: the database already has revisions\n", name, *baseline)
	}

	if *dryRun {
		// What apply would stop at.
		if err := st.NonLinear(); err != nil {
			return fail(err)
		}
		pending, err := pendingFiles(dir, st, res.Baseline)
		if err != nil {
			return fail(err)
		}
		res.Pending = pending
		if !*asJSON {
			printDryRun(stdout, res)
		}
		return out(exitOK)
	}

	report, err := migration.Apply(ctx, db, dir, migration.ApplyOptions{
		RevisionsSchema: revSchema, RevisionsSchemaGiven: *revFlag != "", Schema: bound, TxMode: *txMode,
		Baseline: res.Baseline, LockTimeout: *lockTimeout,
	})
	if report != nil {
		res.Baseline = report.Baseline
		if res.Baseline == "" {
			res.BaselineSource = ""
		}
		for _, f := range report.Applied {
			res.Applied = append(res.Applied, entry(f, false))
		}
	}
	if !*asJSON {
		printApplied(stdout, res)
	}
	if errors.Is(err, migration.ErrPooled) {
		// Caught by Apply's own probe when the first one missed it.
		err = sessionError(*dbURL, err)
		res.Error = &applyError{Message: oneLine(err.Error())}
		fmt.Fprintf(stderr, "%s: %s\n", name, oneLine(err.Error()))
		return out(exitUsage)
	}
	if errors.Is(err, migration.ErrLocked) {
		return fail(fmt.Errorf("%w: another dbctl or atlas migrate apply is running on this database; try again, or raise --lock-timeout", err))
	}
	if code, ok := ambiguous(stderr, name, err); ok {
		// Taken between the check above and the lock.
		res.Error = &applyError{Message: oneLine(err.Error())}
		return out(code)
	}
	if err != nil {
		return fail(err)
	}
	if !*asJSON {
		if len(res.Applied) == 0 {
			fmt.Fprintln(stdout, "No pending migrations: the database schema is up to date")
		} else {
			fmt.Fprintf(stdout, "Migrated to version %s in %s (%d files)\n", res.Applied[len(res.Applied)-1].Version,
				time.Since(start).Round(time.Millisecond), len(res.Applied))
		}
	}
	return out(exitOK)
}

// pendingFiles is what apply would run: the pending files, or with a
// baseline on a database without revisions, the files after it.
func pendingFiles(dir migrate.Dir, st *migration.Status, baseline string) ([]fileEntry, error) {
	files, err := dir.Files()
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, n := range st.Pending {
		want[n] = true
	}
	for _, f := range st.Failed {
		want[f.File] = true
	}
	out := []fileEntry{}
	for _, f := range files {
		if baseline != "" && st.Revisions == 0 {
			if f.Version() <= baseline {
				continue
			}
		} else if !want[f.Name()] {
			continue
		}
		out = append(out, entry(f, true))
	}
	return out, nil
}

func entry(f migrate.File, withStmts bool) fileEntry {
	e := fileEntry{File: f.Name(), Version: f.Version()}
	stmts, err := f.Stmts()
	if err == nil {
		e.Count = len(stmts)
		if withStmts {
			e.Statements = stmts
		}
	}
	return e
}

func printDryRun(w io.Writer, r *applyResult) {
	if r.Baseline != "" {
		fmt.Fprintf(w, "Would record version %s as the baseline (%s); the live schema matches the migrations up to it\n", r.Baseline, baselineWhy(r.BaselineSource))
	}
	if len(r.Pending) == 0 {
		fmt.Fprintln(w, "No pending migrations: the database schema is up to date")
		return
	}
	fmt.Fprintf(w, "%d pending file(s), nothing applied (--dry-run):\n", len(r.Pending))
	for _, f := range r.Pending {
		fmt.Fprintf(w, "-- %s (%d statements)\n", f.File, f.Count)
		for _, s := range f.Statements {
			fmt.Fprintf(w, "%s\n", strings.TrimSpace(s))
		}
	}
}

func printApplied(w io.Writer, r *applyResult) {
	if r.Baseline != "" {
		fmt.Fprintf(w, "Recorded version %s as the baseline (%s)\n", r.Baseline, baselineWhy(r.BaselineSource))
	}
	for _, f := range r.Applied {
		fmt.Fprintf(w, "Applied %s (%d statements)\n", f.File, f.Count)
	}
}

func baselineWhy(source string) string {
	if source == "prisma" {
		return "adopted from _prisma_migrations"
	}
	return "--baseline"
}
