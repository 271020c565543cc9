package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/lib/pq"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/migration"
)

// stdin and stdinIsTerminal are where reset reads its confirmation.
var (
	stdin           io.Reader = os.Stdin
	stdinIsTerminal           = func() bool { return isTerminal(os.Stdin) }
)

type resetResult struct {
	Dropped []string `json:"dropped"`
	Applied []string `json:"applied"`
}

func runMigrateReset(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "dbctl migrate reset"
	fs := newFlags(name,
		"Development only. Drops the application schema (public, or the URL's search_path schema) and\n"+
			"the revisions schema with everything in them, re-creates the application schema, then applies\n"+
			"all migrations (like prisma migrate reset). It judges the host the driver will use (the URL's,\n"+
			"else ?host=, else $PGHOST, else localhost; ?hostaddr= or $PGHOSTADDR when set) and refuses one\n"+
			"that is not localhost, a loopback address or a Unix socket unless --force. Asks for\n"+
			"confirmation on a terminal; without a terminal it needs --yes.\n"+
			"Exit 0 reset, 1 a failed migration, 2 refused, bad usage, an unreachable database or a\n"+
			"transaction pooler (use DIRECT_URL, see dbctl -h).",
		"dbctl migrate reset --url postgres://postgres@localhost:5432/klozd_dev --yes", stderr)
	dbURL := urlFlag(fs)
	dirPath := dirFlag(fs)
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	force := fs.Bool("force", false, "allow a host that is not local")
	revFlag := revisionsSchemaFlag(fs)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	if *dbURL == "" {
		return usageErr(stderr, name, errNoURL)
	}
	u, err := url.Parse(*dbURL)
	if err != nil {
		return usageErr(stderr, name, fmt.Errorf("parse URL: %w", database.ParseError(err)))
	}
	// Judge the host the driver will really use: a URL without one goes to
	// ?host= or $PGHOST, which may name a remote server.
	host, err := database.EffectiveHost(*dbURL)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	if !database.IsLocalHost(host) && !*force {
		return usageErr(stderr, name, fmt.Errorf("refusing to reset a database on %s, which is not a local host: reset is for development; pass --force if you mean it", host))
	}
	revSchema, bound, err := revisionsSchemas(*dbURL, *revFlag)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	dir, err := openDir(*dirPath)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	appSchema := bound
	if appSchema == "" {
		appSchema = "public"
	}
	schemas := []string{appSchema}
	if revSchema != appSchema {
		schemas = append(schemas, revSchema)
	}
	what := fmt.Sprintf("schema(s) %s of database %s on %s", strings.Join(schemas, ", "), strings.TrimPrefix(u.Path, "/"), host)
	if !*yes {
		if !stdinIsTerminal() {
			return usageErr(stderr, name, fmt.Errorf("refusing to drop %s without confirmation: stdin is not a terminal, pass --yes", what))
		}
		fmt.Fprintf(stderr, "This drops %s and all their data, then applies all migrations. Type 'yes' to continue: ", what)
		answer, _ := bufio.NewReader(stdin).ReadString('\n')
		if strings.TrimSpace(answer) != "yes" {
			fmt.Fprintln(stderr, "Aborted: nothing was changed.")
			return exitUsage
		}
	}
	db, err := connectSession(ctx, *dbURL)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	defer db.Close()
	// The Atlas CLI's guard, before anything is dropped.
	if err := migration.CheckRevisionsSchema(ctx, db, bound, *revFlag); err != nil {
		if code, ok := ambiguous(stderr, name, err); ok {
			return code
		}
		return failErr(stderr, name, err)
	}
	var b strings.Builder
	for _, s := range schemas {
		fmt.Fprintf(&b, "DROP SCHEMA IF EXISTS %s CASCADE;\n", pq.QuoteIdentifier(s))
	}
	fmt.Fprintf(&b, "CREATE SCHEMA %s;\n", pq.QuoteIdentifier(appSchema))
	tx, err := db.BeginTx(ctx, nil)
	if err == nil {
		if _, err = tx.ExecContext(ctx, b.String()); err == nil {
			err = tx.Commit()
		} else {
			_ = tx.Rollback()
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: drop %s: %s\n", name, strings.Join(schemas, ", "), oneLine(err.Error()))
		return exitFail
	}
	res := resetResult{Dropped: schemas, Applied: []string{}}
	report, err := migration.Apply(ctx, db, dir, migration.ApplyOptions{RevisionsSchema: revSchema, RevisionsSchemaGiven: *revFlag != "", Schema: bound})
	if report != nil {
		for _, f := range report.Applied {
			res.Applied = append(res.Applied, f.Name())
		}
	}
	if *asJSON {
		writeJSON(stdout, res)
	} else {
		fmt.Fprintf(stdout, "Dropped %s\n", strings.Join(schemas, ", "))
		for _, f := range res.Applied {
			fmt.Fprintf(stdout, "Applied %s\n", f)
		}
	}
	if err != nil {
		return failErr(stderr, name, err)
	}
	if !*asJSON {
		fmt.Fprintln(stdout, "Database reset: all migrations applied")
	}
	return exitOK
}
