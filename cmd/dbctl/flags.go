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

// urlFlag adds --url, defaulting to DATABASE_URL.
func urlFlag(fs *flag.FlagSet) *string {
	return envFlag(fs, "url", "DATABASE_URL", "database `URL` (default: $DATABASE_URL)")
}

// envFlag adds a string flag defaulting to the environment variable env,
// whose value -h does not print: a database URL may hold a password.
func envFlag(fs *flag.FlagSet, name, env, usage string) *string {
	v := envValue{p: new(string)}
	*v.p = os.Getenv(env)
	fs.Var(v, name, usage)
	return v.p
}

type envValue struct{ p *string }

func (v envValue) String() string     { return "" } // keeps the default out of -h
func (v envValue) Set(s string) error { *v.p = s; return nil }

// dirFlag adds --dir, the migration directory.
func dirFlag(fs *flag.FlagSet) *string {
	return fs.String("dir", "migrations", "migration directory")
}

func devURLFlag(fs *flag.FlagSet) *string {
	return envFlag(fs, "dev-url", "DEV_DATABASE_URL",
		"`URL` of a server for scratch databases, needs CREATEDB (default: $DEV_DATABASE_URL, else a throwaway local PostgreSQL)")
}

func openDir(path string) (*migrate.LocalDir, error) {
	if st, err := os.Stat(path); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("migration directory %q not found: run dbctl from the repository root or pass --dir", path)
	}
	return migrate.NewLocalDir(path)
}

// connect opens and pings the database at rawURL, returning an error of one
// line that names the host and port when it cannot be reached.
func connect(ctx context.Context, rawURL string) (*sql.DB, error) {
	if rawURL == "" {
		return nil, errors.New("no database URL: pass --url or set DATABASE_URL")
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
