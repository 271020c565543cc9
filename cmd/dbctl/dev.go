package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/migration"
	"github.com/klozd/api/internal/pgcluster"
)

type devResult struct {
	URL     string   `json:"url"`
	Applied []string `json:"applied"`
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "dbctl dev"
	fs := newFlags(name,
		"Starts a throwaway PostgreSQL from the local binaries (initdb on a free port, in a temporary\n"+
			"directory), creates the database klozd, applies all migrations and prints its URL. It runs\n"+
			"until Ctrl-C or SIGTERM, then stops the server and removes its files. The data is not kept.\n"+
			"Exit 0 stopped cleanly, 1 a failed migration, 2 no PostgreSQL binaries or bad usage.",
		"dbctl dev   # in its own terminal: it prints the URL and keeps running;\n"+
			"  export DATABASE_URL='postgres://postgres@127.0.0.1:PORT/klozd?sslmode=disable'   # in another, the URL it printed", stderr)
	dirPath := dirFlag(fs)
	asJSON := fs.Bool("json", false, "print the URL and applied files as one JSON line")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	dir, err := openDir(*dirPath)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		return usageErr(stderr, name, err)
	}
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(stderr, "%s: stop: %s\n", name, oneLine(err.Error()))
		}
	}()
	admin, err := connect(ctx, c.URL("postgres"))
	if err == nil {
		_, err = admin.ExecContext(ctx, "CREATE DATABASE klozd")
		_ = admin.Close()
	}
	if err != nil {
		return usageErr(stderr, name, err)
	}
	url := c.URL("klozd")
	db, err := database.Open(url)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	start := time.Now()
	report, err := migration.Apply(ctx, db, dir, migration.ApplyOptions{})
	_ = db.Close()
	if err != nil {
		return failErr(stderr, name, err)
	}
	res := devResult{URL: url, Applied: []string{}}
	for _, f := range report.Applied {
		res.Applied = append(res.Applied, f.Name())
	}
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(res) // one line, as -h says
	} else {
		fmt.Fprintln(stdout, url)
		fmt.Fprintf(stderr, "PostgreSQL is running with %d migration(s) applied in %s. Ctrl-C stops it and deletes its data.\n",
			len(res.Applied), time.Since(start).Round(time.Millisecond))
	}
	<-ctx.Done()
	fmt.Fprintln(stderr, "Stopping PostgreSQL.")
	return exitOK
}
