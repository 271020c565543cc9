// Command soak runs the fault-and-load suite of internal/soak against a
// throwaway PostgreSQL and prints the summary table. It exits 1 when any
// invariant was violated, 2 when the run failed or its configuration could
// not check the invariants (a fault outlasted the lease).
//
//	go run ./cmd/soak                      # every scenario, default sizes
//	go run ./cmd/soak -scenario restart -orders 1000
//	go run ./cmd/soak -scenario partition,lost-replies,resets,latency   # the network scenarios
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // for -driver pgx

	"github.com/klozd/api/internal/soak"
)

func main() {
	var (
		cfg       soak.Config
		scenarios string
		asJSON    bool
	)
	flag.IntVar(&cfg.Orders, "orders", 0, "idempotency keys per scenario, each sent twice at once (default 300)")
	flag.IntVar(&cfg.LoginPairs, "login-pairs", 0, "(email, ip) pairs per scenario (default 30)")
	flag.IntVar(&cfg.LoginsPerPair, "logins-per-pair", 0, "failed logins per pair (default 8)")
	flag.IntVar(&cfg.Concurrency, "concurrency", 0, "client goroutines (default 32; pool-exhaustion always uses 64)")
	flag.IntVar(&cfg.PoolSize, "pool", 0, "connections per instance (default 8; pool-exhaustion always uses 2)")
	flag.DurationVar(&cfg.TimeLimit, "time-limit", 0, "time limit of each scenario's load (default 60s)")
	flag.DurationVar(&cfg.StatementTimeout, "statement-timeout", 0, "services' statement_timeout (default 2s)")
	flag.DurationVar(&cfg.LockTimeout, "lock-timeout", 0, "services' lock_timeout (default 1s)")
	flag.DurationVar(&cfg.RequestTimeout, "request-timeout", 0, "clients' timeout (default 10s)")
	flag.DurationVar(&cfg.Lease, "lease", 0, "idempotency claim lease of every scenario but restart; keep it above 2×statement-timeout, the slow-database fault (default 2×statement-timeout + 1s)")
	flag.DurationVar(&cfg.RestartLease, "restart-lease", 0, "least lease of the restart scenario, which uses the larger of -lease and this; keep it above the restart's outage plus recovery (default 5s)")
	flag.StringVar(&cfg.Driver, "driver", "", `database/sql driver of the instances: "postgres" (lib/pq) or "pgx" (default postgres)`)
	flag.DurationVar(&cfg.FailoverLag, "failover-lag", 0, "how long the failover scenarios stall replication before stopping the primary; keep it below -statement-timeout (default 1s)")
	flag.StringVar(&scenarios, "scenario", "", "comma-separated scenarios (default all: "+strings.Join(soak.Scenarios(), ",")+")")
	flag.BoolVar(&asJSON, "json", false, "print the results as JSON")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var names []string
	if scenarios != "" {
		names = strings.Split(scenarios, ",")
	}
	start := time.Now()
	results, err := soak.Run(ctx, cfg, names)
	switch {
	case asJSON:
		_ = json.NewEncoder(os.Stdout).Encode(results)
	case len(results) > 0:
		soak.PrintSummary(os.Stdout, results)
		fmt.Printf("total %s\n", time.Since(start).Round(time.Millisecond))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err) // Run's errors say "soak:" already
		os.Exit(2)
	}
	code := 0
	for _, r := range results {
		if len(r.ConfigErrors) > 0 {
			code = 2
		} else if len(r.Violations) > 0 && code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
