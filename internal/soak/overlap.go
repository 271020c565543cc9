package soak

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klozd/api/internal/database"
)

// effectRun is one handler run whose side effect landed: a row of
// soak_effects.
type effectRun struct {
	key, instance, nonce string
	started, landed      time.Time
	ended                time.Time // zero when the instance did not record it
	status               int       // what the handler answered; 0 when not recorded
}

// end is when the run was last doing something: the later of its
// handler's return and its effect's landing, which a statement held in
// the network can delay past the return.
func (r effectRun) end() time.Time {
	if r.ended.After(r.landed) {
		return r.ended
	}
	return r.landed
}

// overlap is two runs of one key, a started first, whose [started, end]
// intervals overlap: b ran while a was still running or its effect had
// not landed yet.
type overlap struct {
	a, b effectRun
}

// pastLease reports whether a's handler itself was still running when b
// started. b's claim could be taken only once a's claim was released,
// which happens after a's handler returns, or its lease had ended: so a's
// handler ran past its lease. That is idem's limit while a fault outlasts
// the lease (the middleware does not yet stop a handler before its lease
// ends), reported apart like a configuration error. Otherwise a's handler
// had returned, and only its side effect landed late: a violation.
func (o overlap) pastLease() bool { return o.a.ended.After(o.b.started) }

func (o overlap) String() string {
	ts := stamp
	return fmt.Sprintf("key %s: runs overlap: %s's run started %s, its handler returned %s, its effect landed %s; %s's run started %s, returned %s, landed %s",
		o.a.key, o.a.instance, ts(o.a.started), ts(o.a.ended), ts(o.a.landed), o.b.instance, ts(o.b.started), ts(o.b.ended), ts(o.b.landed))
}

// findOverlaps returns every pair of runs of one key whose intervals
// overlap, by key and start.
func findOverlaps(runs []effectRun) []overlap {
	runs = slices.Clone(runs)
	slices.SortFunc(runs, func(x, y effectRun) int {
		return cmp.Or(cmp.Compare(x.key, y.key), x.started.Compare(y.started))
	})
	var out []overlap
	for i, a := range runs {
		for _, b := range runs[i+1:] {
			if b.key != a.key {
				break
			}
			// Sorted by start: b starts no earlier than a, so they overlap
			// when b starts before a ends.
			if b.started.Before(a.end()) {
				out = append(out, overlap{a: a, b: b})
			}
		}
	}
	return out
}

// readRuns reads soak_effects.
func readRuns(ctx context.Context, db *sql.DB) ([]effectRun, error) {
	var runs []effectRun
	err := eachRow(ctx, db, `SELECT "key", "instance", "nonce", coalesce("started", "landed"), "landed", "ended", coalesce("status", 0) FROM soak_effects`, func(rows *sql.Rows) error {
		var r effectRun
		var ended sql.NullTime
		if err := rows.Scan(&r.key, &r.instance, &r.nonce, &r.started, &r.landed, &ended, &r.status); err != nil {
			return err
		}
		r.ended = ended.Time
		runs = append(runs, r)
		return nil
	})
	return runs, err
}

// recordEnds writes into soak_effects when each handler returned and what
// it answered, as the instances recorded it, once no request is in flight.
func recordEnds(ctx context.Context, e *env, insts []*instance) error {
	type end struct {
		Nonce  string    `json:"nonce"`
		Ended  time.Time `json:"ended"`
		Status int       `json:"status"`
	}
	var ends []end
	for _, in := range insts {
		in.mu.Lock()
		for n, t := range in.ends {
			ends = append(ends, end{n, t, in.statuses[n]})
		}
		in.mu.Unlock()
	}
	if len(ends) == 0 {
		return nil
	}
	data, err := json.Marshal(ends)
	if err != nil {
		return err
	}
	db, err := database.Open(e.url)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `
UPDATE soak_effects s SET "ended" = v.ended, "status" = v.status
FROM json_to_recordset($1::json) AS v(nonce text, ended timestamptz, status integer) WHERE s."nonce" = v.nonce`, string(data)); err != nil {
		return fmt.Errorf("record the handlers' ends: %w", err)
	}
	return nil
}

// CallSlack is how long past its request timeout a client call may take
// to return before it counts as late (Result.LateCalls): the timer and
// the transport's cancellation on a loaded machine. A call that has not
// returned by then hangs, which no fault excuses.
const CallSlack = 250 * time.Millisecond

// lateCalls counts the client calls that took longer than their timeout
// plus CallSlack; shared by the clients of a scenario.
type lateCalls struct {
	mu    sync.Mutex
	n     int
	worst time.Duration
}

// add counts a call that took took, if it is late; a nil counter counts
// nothing.
func (l *lateCalls) add(took, timeout time.Duration) {
	if l == nil || !late(took, timeout) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	l.worst = max(l.worst, took)
}

func (l *lateCalls) count() (int, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n, l.worst
}

// late reports whether a call that took took with timeout timeout is late.
func late(took, timeout time.Duration) bool { return took > timeout+CallSlack }

// describeRuns lists a key's runs in order of start, with their times and
// what clients got of each: the evidence of a key that ran more than once.
func describeRuns(runs []effectRun, st *keyState) string {
	runs = slices.Clone(runs)
	slices.SortFunc(runs, func(x, y effectRun) int { return x.started.Compare(y.started) })
	seen := map[string]string{}
	for _, r := range st.responses {
		var o order
		if json.Unmarshal([]byte(r.body), &o) == nil && o.Nonce != "" {
			if r.replayed {
				seen[o.Nonce] = cmp.Or(seen[o.Nonce], "replayed")
			} else {
				seen[o.Nonce] = "answered as the original"
			}
		}
	}
	var parts []string
	for _, r := range runs {
		parts = append(parts, fmt.Sprintf("%s started %s, returned %s, landed %s, %s", r.instance, stamp(r.started), stamp(r.ended), stamp(r.landed),
			cmp.Or(seen[r.nonce], "answered to no client")))
	}
	return strings.Join(parts, "; ")
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return t.UTC().Format("15:04:05.000000")
}

// firstOriginal reports whether a client got the response of the key's
// first run (by start) as the original.
func firstOriginal(runs []effectRun, st *keyState) bool {
	if len(runs) == 0 {
		return false
	}
	first := slices.MinFunc(runs, func(x, y effectRun) int { return x.started.Compare(y.started) })
	for _, r := range st.responses {
		var o order
		if !r.replayed && json.Unmarshal([]byte(r.body), &o) == nil && o.Nonce == first.nonce {
			return true
		}
	}
	return false
}
