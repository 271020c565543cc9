package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"ariga.io/atlas/sql/migrate"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/devdb"
	"github.com/klozd/api/internal/migration"
)

// newFlags returns a flag set that prints usage with an example and
// reports errors in one line.
func newFlags(name, synopsis, example string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [flags]\n\n%s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nExample:\n  %s\n", example)
	}
	return fs
}

// parse parses args; it returns false with the exit code to use when the
// command must stop (help asked for, or a bad flag, reported in one line).
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	usage := fs.Usage
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	fs.SetOutput(stderr) // where Usage's PrintDefaults writes the flags
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return exitOK, false
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v (see %s -h)\n", fs.Name(), err, fs.Name())
		return exitUsage, false
	}
	return 0, true
}

// urlUsage is the help of --url; the package doc says why DIRECT_URL
// comes first.
const urlUsage = "database `URL`, direct to PostgreSQL, not through a transaction pooler (default: $DIRECT_URL, else $DATABASE_URL; see dbctl -h)"

// urlFlag adds --url, defaulting to DIRECT_URL, else DATABASE_URL.
func urlFlag(fs *flag.FlagSet) *string {
	return envFlag(fs, "url", urlUsage, "DIRECT_URL", "DATABASE_URL")
}

// envFlag adds a string flag defaulting to the first of the environment
// variables envs that is set, whose value -h does not print: a database
// URL may hold a password.
func envFlag(fs *flag.FlagSet, name, usage string, envs ...string) *string {
	v := envValue{p: new(string)}
	for _, env := range envs {
		if *v.p = os.Getenv(env); *v.p != "" {
			break
		}
	}
	fs.Var(v, name, usage)
	return v.p
}

type envValue struct{ p *string }

func (v envValue) String() string     { return "" } // keeps the default out of -h
func (v envValue) Set(s string) error { *v.p = s; return nil }

// revisionsSchemaFlag adds --revisions-schema, the Atlas CLI's flag.
func revisionsSchemaFlag(fs *flag.FlagSet) *string {
	return fs.String("revisions-schema", "",
		"`SCHEMA` of the revisions table, as the Atlas CLI's flag (default: the URL's search_path schema, else atlas_schema_revisions)")
}

// revisionsSchemas returns the schema of the revisions table and the
// schema the URL is bound to, by the Atlas CLI's rule.
func revisionsSchemas(rawURL, flag string) (revisions, bound string, err error) {
	if _, bound, err = migration.SchemasFor(rawURL); err != nil {
		return "", "", err
	}
	if strings.ContainsAny(flag, ", ") {
		return "", "", fmt.Errorf("--revisions-schema %q: give exactly one schema", flag)
	}
	return migration.RevisionsSchemaFor(bound, flag), bound, nil
}

// ambiguous reports the Atlas CLI's refusal when err is one, in one line
// naming the flag, and returns exitFail; ok is false for other errors.
func ambiguous(stderr io.Writer, name string, err error) (int, bool) {
	var ae *migration.AmbiguousRevisionsError
	if !errors.As(err, &ae) {
		return 0, false
	}
	fmt.Fprintf(stderr, "%s: %s\n", name, oneLine(strings.TrimPrefix(err.Error(), "migration: ")))
	return exitFail, true
}

// dirFlag adds --dir, the migration directory.
func dirFlag(fs *flag.FlagSet) *string {
	return fs.String("dir", "migrations", "migration directory")
}

func devURLFlag(fs *flag.FlagSet) *string {
	return envFlag(fs, "dev-url",
		"`URL` of a server for scratch databases, needs CREATEDB (default: $DEV_DATABASE_URL, else a throwaway local PostgreSQL)",
		"DEV_DATABASE_URL")
}

func openDir(path string) (*migrate.LocalDir, error) {
	if st, err := os.Stat(path); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("migration directory %q not found: run dbctl from the repository root or pass --dir", path)
	}
	return migrate.NewLocalDir(path)
}

// errNoURL is the error for a command without a database URL.
var errNoURL = errors.New("no database URL: pass --url or set DIRECT_URL or DATABASE_URL")

// connectSession is [connect] for the commands that need a PostgreSQL
// session to last from one statement to the next: it refuses, with one
// line naming the fix, a URL that goes through a transaction pooler (see
// [migration.CheckSession]).
func connectSession(ctx context.Context, rawURL string) (*sql.DB, error) {
	db, err := connect(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	if err := migration.CheckSession(ctx, db); err != nil {
		_ = db.Close()
		return nil, sessionError(rawURL, err)
	}
	return db, nil
}

// sessionError explains a failed [migration.CheckSession] on rawURL.
func sessionError(rawURL string, err error) error {
	if !errors.Is(err, migration.ErrPooled) {
		return err
	}
	host, herr := database.EffectiveHost(rawURL)
	if herr != nil {
		host = "the URL's host"
	}
	return fmt.Errorf("%s pools connections by transaction (%s), which breaks the migration lock and prepared statements: "+
		"point --url or DIRECT_URL at PostgreSQL itself or a session pooler (as Prisma's directUrl)",
		host, strings.TrimPrefix(err.Error(), migration.ErrPooled.Error()+": "))
}

// connect opens and pings the database at rawURL, returning an error of one
// line that names the host and port when it cannot be reached.
func connect(ctx context.Context, rawURL string) (*sql.DB, error) {
	if rawURL == "" {
		return nil, errNoURL
	}
	db, err := database.Open(rawURL)
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, reachError(rawURL, err)
	}
	return db, nil
}

// reachError names the host the driver really tried (see
// [database.EffectiveHost]), which for a URL without one is ?host= or
// $PGHOST, not localhost.
func reachError(rawURL string, err error) error {
	host, herr := database.EffectiveHost(rawURL)
	if herr != nil {
		host = "the URL's host"
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		return fmt.Errorf("cannot reach PostgreSQL at %s: %v", host, ne.Err)
	}
	return fmt.Errorf("cannot connect to PostgreSQL at %s: %v", host, err)
}

func devServer(ctx context.Context, devURL string) (*devdb.Server, error) {
	if devURL != "" {
		if _, err := database.DSN(devURL); err != nil {
			return nil, fmt.Errorf("--dev-url: %w", err)
		}
	}
	s, err := devdb.Connect(ctx, devURL)
	if err != nil && devURL != "" {
		return nil, reachError(devURL, err)
	}
	return s, err
}

// usageErr reports err in one line and returns [exitUsage].
func usageErr(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "%s: %s\n", name, oneLine(err.Error()))
	return exitUsage
}

// failErr prints err on one line after the command's name and returns
// exitFail, for a command that could not do its work.
func failErr(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "%s: %s\n", name, oneLine(err.Error()))
	return exitFail
}

// oneLine collapses runs of white space, newlines included, to one space.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
