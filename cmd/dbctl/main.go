// Command dbctl is the migration workflow and schema drift check of the
// klozd API: what "prisma migrate" did for the TypeScript app, on the Atlas
// Go library, interchangeable with the Atlas CLI.
//
// Usage (flags come before a command's arguments):
//
//	dbctl drift [--url URL] [--dev-url URL] [--dir DIR] [--no-spec] [--json]
//	dbctl dev [--dir DIR] [--json]
//	dbctl migrate new [--dev-url URL] [--dir DIR] [--version VERSION] NAME
//	dbctl migrate apply [--url URL] [--dev-url URL] [--dir DIR] [--dry-run] [--baseline VERSION] [--lock-timeout D] [--json]
//	dbctl migrate status [--url URL] [--dir DIR] [--json]
//	dbctl migrate lint [--latest N] [--dev-url URL] [--dir DIR] [--json]
//	dbctl migrate reset [--url URL] [--dir DIR] [--yes] [--force] [--json]
//	dbctl migrate hash [--dir DIR]
//	dbctl migrate validate [--dir DIR]
//	dbctl gc [--url URL] [--dry-run] [--window D] [--batch N] [--json]
//	dbctl check-durability [--url URL] [--require-standby] [--json]
//
// --url defaults to $DIRECT_URL, else $DATABASE_URL, everywhere; --dev-url
// to $DEV_DATABASE_URL (else a throwaway local PostgreSQL); --dir to
// migrations. -h on a command lists its flags with an example. The
// revisions table is where the Atlas CLI puts it for the same URL:
// atlas_schema_revisions.atlas_schema_revisions, or
// <schema>.atlas_schema_revisions when the URL carries search_path=<schema>.
//
// # Direct connections
//
// dbctl needs a direct connection to PostgreSQL, or one through a session
// pooler: the migration lock is a session-level advisory lock, and lib/pq
// runs a statement with parameters in two round trips of one session. A
// transaction pooler (PgBouncer's pool_mode=transaction, as in front of
// many hosted databases) hands the server session to another client
// between transactions: concurrent runs would all take the lock, the lock
// would stay behind on an idle pooled connection, and statements would
// fail with "unnamed prepared statement does not exist". So, as Prisma
// reads directUrl for its migrations, dbctl reads $DIRECT_URL before
// $DATABASE_URL: keep DATABASE_URL on the pooler for the services and set
// DIRECT_URL to PostgreSQL itself. Every command that connects to the
// target database (migrate apply, status, reset, drift --url, gc) first
// probes for a transaction pooler and, finding one, changes nothing and
// exits 2 with one line naming the fix.
//
// gc's --window must be at least the Window of the lockout Policy the
// services use (default 15m): a shorter one deletes counters that are still
// counting. gc refuses a window under 1m.
//
// Exit codes:
//
//	0  success: in sync, applied, up to date, no lint errors
//	1  failure: drift found, a failed migration, a refused baseline, a
//	   destructive change without "-- atlas:nolint destructive", a file that
//	   fails to replay in lint, a held lock, a migration lock that could not
//	   be released, a failed gc purge, an internal error; for migrate
//	   status, the status could not be read
//	2  bad usage, unknown flag, unreachable database, bad credentials, a
//	   URL through a transaction pooler, an unusable dev database
//	3  migrate status: pending files
//	4  migrate status: a failed (partially applied) revision
//	5  migrate status: revisions the migration directory does not have
//
// When several status cases hold, the highest code wins: unknown (5), then
// failed (4), then pending (3).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // drift found, a migration failed, status unreadable, a lint error
	exitUsage = 2 // bad flags, unreachable database, unreadable files

	// migrate status
	exitPending = 3 // files not applied yet
	exitFailed  = 4 // a revision recorded an error or a partial apply
	exitUnknown = 5 // revisions the directory does not have
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one dbctl subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"drift", "compare ent schema, migrations, spec and (with --url) a live database; exit 1 on drift", runDrift},
		{"migrate", "create, apply, inspect, lint and reset migrations (dbctl migrate -h)", runMigrate},
		{"dev", "start a throwaway PostgreSQL with all migrations applied; Ctrl-C stops it", runDev},
		{"gc", "delete stale auth_attempts and expired idempotency_records in batches (cron-safe)", runGC},
		{"check-durability", "report standbys and synchronous replication; exit 1 when a failover or crash can lose acknowledged commits", runCheckDurability},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	defer recoverTo(stderr, &code)
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, "dbctl", commands())
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "dbctl: unknown command %q (see dbctl -h)\n", args[0])
	return exitUsage
}

// recoverTo turns a panic into one line on stderr and [exitFail], as any
// other failure is reported. Call it deferred.
func recoverTo(stderr io.Writer, code *int) {
	if r := recover(); r != nil {
		fmt.Fprintf(stderr, "dbctl: internal error: %s\n", oneLine(fmt.Sprint(r)))
		*code = exitFail
	}
}

func usage(w io.Writer, prefix string, cmds []command) {
	fmt.Fprintf(w, "Usage: %s <command> [flags]\n\nCommands:\n", prefix)
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun '%s <command> -h' for a command's flags and an example.\n", prefix)
	fmt.Fprint(w, `
--url defaults to $DIRECT_URL, else $DATABASE_URL: a direct connection to PostgreSQL
(as Prisma's directUrl), never through a transaction pooler. Exit codes:
  0 success   1 drift, failed migration, refused baseline, lint error, held lock,
              failed gc, status that could not be read, a lock that was not released
  2 bad usage, unknown flag, unreachable database, bad credentials, transaction pooler
  3 status: pending   4 status: failed   5 status: unknown revisions
`)
}
