package main

import (
	"context"
	"fmt"
	"io"

	"github.com/klozd/api/internal/migration"
)

type statusResult struct {
	*migration.Status
	State           string `json:"state"` // up_to_date, pending, failed, unknown
	RevisionsSchema string `json:"revisions_schema"`
}

func runMigrateStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "dbctl migrate status"
	fs := newFlags(name,
		"Compares the revisions recorded in the database with the migration directory, by the Atlas\n"+
			"CLI's rule: applied, pending, failed (the latest revision records fewer statements applied\n"+
			"than its total) and unknown (in the database,\n"+
			"not in the directory) versions, and files added out of order (older than the latest applied\n"+
			"version: apply refuses them, as the Atlas CLI does, and they count as pending). Changes nothing.\n"+
			"Exit 0 up to date, 3 pending files, 4 a failed revision, 5 unknown revisions (the highest\n"+
			"wins), 1 the status could not be read, 2 bad usage, an unreachable database or a transaction\n"+
			"pooler (use DIRECT_URL, see dbctl -h).",
		"dbctl migrate status --url postgres://app@db:5432/klozd --json", stderr)
	dbURL := urlFlag(fs)
	dirPath := dirFlag(fs)
	revFlag := revisionsSchemaFlag(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	revSchema, bound, err := revisionsSchemas(*dbURL, *revFlag)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	dir, err := openDir(*dirPath)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	db, err := connectSession(ctx, *dbURL)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	defer db.Close()
	if err := migration.CheckRevisionsSchema(ctx, db, bound, *revFlag); err != nil {
		if code, ok := ambiguous(stderr, name, err); ok {
			return code
		}
		return failErr(stderr, name, err)
	}
	st, err := migration.ReadStatus(ctx, db, dir, revSchema)
	if err != nil {
		return failErr(stderr, name, err)
	}
	res := statusResult{Status: st, State: st.State(), RevisionsSchema: revSchema}
	code := map[string]int{
		migration.StateUpToDate: exitOK, migration.StatePending: exitPending,
		migration.StateFailed: exitFailed, migration.StateUnknown: exitUnknown,
	}[res.State]
	if *asJSON {
		writeJSON(stdout, res)
		return code
	}
	fmt.Fprintf(stdout, "Revisions: %s.%s\n", revSchema, migration.RevisionsTable)
	fmt.Fprintf(stdout, "Applied: %d", len(st.Applied))
	if len(st.Applied) > 0 {
		fmt.Fprintf(stdout, " (latest %s)", st.Applied[len(st.Applied)-1])
	}
	if st.Baseline != "" {
		fmt.Fprintf(stdout, ", baseline %s", st.Baseline)
	}
	fmt.Fprintln(stdout)
	for _, f := range st.Failed {
		fmt.Fprintf(stdout, "Failed: %s (%d of %d statements applied): %s; statement: %s\n",
			f.File, f.Applied, f.Total, oneLine(f.Error), oneLine(f.ErrorStmt))
	}
	for _, v := range st.Unknown {
		fmt.Fprintf(stdout, "Unknown: version %s is recorded in the database but not in the migration directory\n", v)
	}
	for _, p := range st.Pending {
		fmt.Fprintf(stdout, "Pending: %s\n", p)
	}
	for _, o := range st.OutOfOrder {
		fmt.Fprintf(stdout, "Out of order: %s is older than the latest applied version; apply refuses it\n", o)
	}
	switch res.State {
	case migration.StateUpToDate:
		fmt.Fprintln(stdout, "Database schema is up to date!")
	case migration.StatePending:
		if len(st.OutOfOrder) > 0 {
			fmt.Fprintf(stdout, "%d migration(s) added out of order: give each a version after the latest applied one (rename it, then run dbctl migrate hash), then run dbctl migrate apply\n",
				len(st.OutOfOrder))
			break
		}
		fmt.Fprintf(stdout, "%d migration(s) not applied yet: run dbctl migrate apply\n", len(st.Pending))
	case migration.StateFailed:
		fmt.Fprintln(stdout, "A migration failed: fix the file (and run dbctl migrate hash), then run dbctl migrate apply")
	case migration.StateUnknown:
		fmt.Fprintln(stdout, "The database has migrations this directory lacks: update your checkout before migrating")
	}
	return code
}
