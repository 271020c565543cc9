package soak

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// PrintSummary writes the results as a table, then each violation.
func PrintSummary(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tsent\tsucceeded\treplayed\tconflicted\tfailed cleanly\tretried\tresent\treplayed after lease\tviolations\toverlaps\tlate calls\ttx orders/stored/found\t5xx landed\tp50\tp99\treq/s\tlease\toutage\trecovery\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t%s\t%.0f\t%s\t%s\t%s\t\n", r.Scenario, r.Sent, r.Succeeded, r.Replayed,
			r.Conflicted, r.FailedClean, r.Retried, r.Resent, r.ReplayedAfterLease, len(r.Violations), r.Overlaps, r.LateCalls, fmt.Sprintf("%d/%d/%d", r.TxOrders, r.TxStored, r.TxFound), r.FailedLanded, r.P50.Round(100*time.Microsecond), r.P99.Round(100*time.Microsecond), r.Throughput,
			r.Lease, orDash(r.Outage), orDash(r.Recovery))
	}
	_ = tw.Flush()
	byName := map[string]Result{}
	for _, r := range results {
		byName[r.Scenario] = r
	}
	if mw, ok := byName["two-instances"]; ok {
		if bare, ok := byName["two-instances-bare"]; ok && bare.OrdersThroughput > 0 {
			// Both ran the same jobs: the ratio is that of the load phase's
			// wall times, with and without the middleware.
			fmt.Fprintf(w, "two instances, load phase: the idempotent endpoint answers %.0f req/s with the middleware, %.0f without: ratio %.2f\n",
				mw.OrdersThroughput, bare.OrdersThroughput, mw.OrdersThroughput/bare.OrdersThroughput)
		}
	}
	for _, r := range results {
		for _, f := range r.Faults {
			fmt.Fprintf(w, "%s: fault: %s\n", r.Scenario, f)
		}
		if r.Note != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Scenario, r.Note)
		}
		for _, c := range r.ConfigErrors {
			fmt.Fprintf(w, "%s: CONFIG ERROR: %s\n", r.Scenario, c)
		}
		for _, u := range r.Unchecked {
			fmt.Fprintf(w, "%s: not counted (see the config error): %s\n", r.Scenario, u)
		}
		for _, v := range r.Violations {
			fmt.Fprintf(w, "%s: VIOLATION: %s\n", r.Scenario, v)
		}
	}
}

func orDash(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return d.Round(time.Millisecond).String()
}
