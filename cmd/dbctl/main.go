// Command dbctl is the migration workflow and schema drift check of the
// klozd API: what "prisma migrate" did for the TypeScript app, on the Atlas
// Go library, interchangeable with the Atlas CLI.
//
// Usage:
//
//	dbctl drift [--url URL] [--dev-url URL] [--json]
//	dbctl migrate new NAME [--dev-url URL]
//	dbctl migrate apply [--url URL]
//	dbctl migrate hash | validate
//
// Exit codes: 0 success (in sync, up to date), 1 drift or a failed
// migration, 2 bad usage or an unreachable database.
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
	exitFail  = 1 // drift found, a migration failed
	exitUsage = 2 // bad flags, unreachable database, unreadable files
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
		{"migrate", "create, apply, hash and validate migrations (dbctl migrate -h)", runMigrate},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
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

func usage(w io.Writer, prefix string, cmds []command) {
	fmt.Fprintf(w, "Usage: %s <command> [flags]\n\nCommands:\n", prefix)
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun '%s <command> -h' for a command's flags and an example.\n", prefix)
}
