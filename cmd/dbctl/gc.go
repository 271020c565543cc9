package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klozd/api/internal/idem"
	"github.com/klozd/api/internal/lockout"
)

// gcResult is what "dbctl gc" deleted, or would delete with --dry-run.
type gcResult struct {
	DryRun             bool  `json:"dry_run"`
	AuthAttempts       int64 `json:"auth_attempts"`
	IdempotencyRecords int64 `json:"idempotency_records"`
}

func runGC(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "dbctl gc"
	fs := newFlags(name,
		"Deletes stale auth_attempts rows (unlocked, no failure within the lockout window) and expired\n"+
			"idempotency_records, in batches that skip rows other sessions hold, so it is safe to run from\n"+
			"cron on several hosts at once. Prints how many rows went; --dry-run only counts them.\n"+
			"--window must be at least the Window of the lockout Policy your services use; a shorter one\n"+
			"deletes counters that are still counting. Exit 0 done, 1 a failed purge, 2 bad usage, an\n"+
			"unreachable database or a transaction pooler (use DIRECT_URL, see dbctl -h).",
		"dbctl gc --url postgres://app@db:5432/klozd --window 15m", stderr)
	dbURL := urlFlag(fs)
	dryRun := fs.Bool("dry-run", false, "count the rows that would be deleted, delete nothing")
	window := fs.Duration("window", lockout.DefaultWindow,
		"rows with no failure for this long are stale; it must be at least the Window of the lockout Policy\n"+
			"your services use: a shorter one deletes counters that are still counting (minimum 1m)")
	batch := fs.Int("batch", 1000, "rows deleted per statement")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if code, ok := parse(fs, args, stderr); !ok {
		return code
	}
	if *batch < 1 {
		return usageErr(stderr, name, fmt.Errorf("--batch must be at least 1, got %d (see %s -h)", *batch, name))
	}
	if *window < time.Minute {
		return usageErr(stderr, name, fmt.Errorf("--window %s is shorter than 1m, likely a mistake: it must be at least your lockout Policy's Window (default %s), or gc deletes counters still counting", *window, lockout.DefaultWindow))
	}
	db, err := connectSession(ctx, *dbURL)
	if err != nil {
		return usageErr(stderr, name, err)
	}
	defer db.Close()

	f, isFile := stdout.(*os.File)
	onTerminal := isFile && !*asJSON && isTerminal(f)
	progress := func(table string) func(int64) {
		if !onTerminal {
			return nil
		}
		return func(n int64) { fmt.Fprintf(stdout, "\r%s: %d deleted…", table, n) }
	}
	locks, err := lockout.New(db, lockout.Config{
		Policy: lockout.Policy{Window: *window}, PurgeBatch: *batch, OnPurge: progress("auth_attempts"),
	})
	if err != nil {
		return usageErr(stderr, name, err)
	}
	store := idem.NewStore(db, idem.StoreConfig{PurgeBatch: *batch, OnPurge: progress("idempotency_records")})
	defer store.Close()

	res := gcResult{DryRun: *dryRun}
	start := time.Now()
	if *dryRun {
		if res.AuthAttempts, err = locks.CountStale(ctx); err == nil {
			res.IdempotencyRecords, err = store.CountExpired(ctx)
		}
	} else {
		if res.AuthAttempts, err = locks.Purge(ctx); err == nil {
			res.IdempotencyRecords, err = store.Purge(ctx)
		}
		if onTerminal {
			fmt.Fprint(stdout, "\r\033[K") // clear the progress line
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %s (deleted so far: %d auth_attempts, %d idempotency_records)\n",
			name, oneLine(err.Error()), res.AuthAttempts, res.IdempotencyRecords)
		return exitFail
	}
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(res)
		return exitOK
	}
	verb := "deleted"
	if *dryRun {
		verb = "would delete"
	}
	fmt.Fprintf(stdout, "%s %d stale auth_attempts rows and %d expired idempotency_records in %s\n",
		verb, res.AuthAttempts, res.IdempotencyRecords, time.Since(start).Round(time.Millisecond))
	return exitOK
}
