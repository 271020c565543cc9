package soak

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/devdb"
	"github.com/klozd/api/internal/pgcluster"
)

// Result is one scenario's line of the summary.
//
// Sent, the outcome counts, P50, P99 and the throughputs cover the load
// phase alone: the retries after it (Retried), the recovery probe and the
// re-send after the lease count in none of them.
type Result struct {
	Scenario    string `json:"scenario"`
	Sent        int    `json:"sent"`
	Succeeded   int    `json:"succeeded"`
	Replayed    int    `json:"replayed"`
	Conflicted  int    `json:"conflicted"`
	FailedClean int    `json:"failed_clean"`
	// Resent is the number of keys sent once more after every lease had
	// passed; ReplayedAfterLease how many of them came back as a replay,
	// which every one must.
	Resent             int           `json:"resent"`
	ReplayedAfterLease int           `json:"replayed_after_lease"`
	Violations         []string      `json:"violations"`
	P50                time.Duration `json:"p50_ns"`
	P99                time.Duration `json:"p99_ns"`
	Throughput         float64       `json:"throughput_rps"`
	// OrdersThroughput is the idempotent endpoint's answers (whatever
	// their outcome) per second of the load phase's wall time, logins
	// interleaved. Two scenarios with the same Config send the same jobs
	// in the same order, so two-instances against two-instances-bare
	// compares the time the same load took with and without the
	// middleware (the bare handler runs for both requests of a key; the
	// middleware runs it once and answers the duplicate with a replay or
	// a 409).
	OrdersThroughput float64 `json:"orders_throughput_rps"`
	// Retried is the number of requests sent after the load, to keys that
	// had no final answer yet.
	Retried int `json:"retried"`
	// Recovery is, after a restart, the time from the server accepting
	// connections to both services answering successfully (the target is
	// RecoveryTarget). Not recovering within RequestTimeout is a violation.
	Recovery time.Duration `json:"recovery_ns,omitempty"`
	// Lease is the idempotency claim lease the scenario ran with; Outage
	// the longest time a fault kept the database from serving, from the
	// fault's start until it accepted connections (restart) or released
	// its locks (slow database).
	Lease  time.Duration `json:"lease_ns"`
	Outage time.Duration `json:"outage_ns,omitempty"`
	Faults []string      `json:"faults,omitempty"`
	// KilledInUse is how many of the connections the killed-connections
	// fault terminated were in use (running a statement or inside a
	// transaction).
	KilledInUse int `json:"killed_in_use,omitempty"`
	// ConfigErrors are errors of the run's configuration, not of the
	// product: a fault that outlasted the lease, past which idem does not
	// promise at most once. The at-most-once violations such a fault
	// explains (keys whose handler ran more than once) are then listed in
	// Unchecked instead of Violations.
	ConfigErrors []string `json:"config_errors,omitempty"`
	// Overlaps is the number of pairs of runs of one key whose [start,
	// end] intervals overlap (see findOverlaps); each is a violation,
	// unless the earlier run's handler itself ran past its lease, which is
	// reported as a configuration error and listed in Unchecked, or it
	// answered 5xx and its key is counted in FailedLanded.
	Overlaps int `json:"overlaps"`
	// LateCalls is the number of client calls that took longer than the
	// request timeout plus CallSlack, LateWorst the longest; any is a
	// violation.
	LateCalls int           `json:"late_calls"`
	LateWorst time.Duration `json:"late_worst_ns,omitempty"`
	Unchecked []string      `json:"unchecked,omitempty"`
	Note      string        `json:"note,omitempty"`

	// The failover scenarios' count of acknowledged writes the promoted
	// standby does not have: idempotency keys whose first original answer
	// is not their stored record (RanAgain of them had their handler run
	// again when retried), of AckedRecords keys answered; and lockout
	// failures clients were told were recorded but are not counted, of
	// AckedIncrements. With asynchronous replication they are the cost of
	// the failover, reported and not counted as violations (the invariants
	// are checked on the other keys and pairs); with synchronous
	// replication any is a violation.
	LostRecords     int `json:"lost_records"`
	RanAgain        int `json:"ran_again"`
	AckedRecords    int `json:"acked_records"`
	LostIncrements  int `json:"lost_increments"`
	AckedIncrements int `json:"acked_increments"`
	// AmbiguousKeys and AmbiguousPairs are writes clients were told failed
	// (503) that the promoted standby has: the primary died waiting for
	// the commit, which had reached the standby. A key's handler then ran
	// again on retry. Reported, not checked: no client was told it was done.
	AmbiguousKeys  int `json:"ambiguous_keys"`
	AmbiguousPairs int `json:"ambiguous_pairs"`

	// FailedLanded is the number of keys of the non-transactional endpoint
	// whose handler ran again because an earlier run answered 5xx for a
	// write whose outcome it did not know, and the write landed anyway:
	// the documented limit of the non-transactional mode, reported (with
	// the runs, in Note) and not counted as violations.
	FailedLanded int `json:"failed_landed"`
	// The transactional endpoint's counts (see checkTxOrders): its keys,
	// their orders and stored records (equal, one each per key answered),
	// the 2xx answers that found their order, and with an asynchronous
	// failover the acknowledged keys whose record and order vanished
	// together.
	TxKeys   int `json:"tx_keys"`
	TxOrders int `json:"tx_orders"`
	TxStored int `json:"tx_stored"`
	TxFound  int `json:"tx_found"`
	TxLost   int `json:"tx_lost"`
}

// scenario is one fault and the shape of the load around it.
type scenario struct {
	name        string
	instances   int
	poolSize    int // overrides Config.PoolSize when set
	concurrency int // overrides Config.Concurrency when set
	bare        bool
	// replication is "async" or "sync" for the failover scenarios, which
	// run on a primary and a standby of their own (see failover.go).
	replication string
	// restartLease: the scenario runs with the larger of Config.Lease and
	// Config.RestartLease.
	restartLease bool
	// marks are where the fault runs, as fractions of the scenario's
	// jobs: the fault at mark m starts when job ⌊m×len(jobs)⌋ is taken, by
	// request count, not by time (see gate).
	marks []float64
	// fault injects one fault. It calls arm once the load may go on (a
	// table lock taken, a server stopped); the runner arms it when the
	// fault returns, if it has not.
	fault func(ctx context.Context, e *env, cfg Config, arm func()) (faultRun, error)
	// minLease, when set, is the least lease the scenario runs with (the
	// larger of it and Config.Lease).
	minLease func(Config) time.Duration
	// proxied puts a fault proxy between each instance and PostgreSQL
	// (env.proxies): the network scenarios.
	proxied bool
}

// faultRun is what one run of a fault did.
type faultRun struct {
	what string
	// outage is how long the database did not serve: from the fault's
	// start until it accepted connections again or released its locks.
	outage time.Duration
	inUse  int // connections in use that the fault terminated
}

// lease returns the lease s runs with and the knob that sets it.
func (s scenario) lease(cfg Config) (time.Duration, string) {
	if s.restartLease {
		return max(cfg.Lease, cfg.RestartLease), "-restart-lease (Config.RestartLease)"
	}
	if s.minLease != nil {
		return max(cfg.Lease, s.minLease(cfg)), "-lease (Config.Lease)"
	}
	return cfg.Lease, "-lease (Config.Lease)"
}

// Scenarios lists the scenario names in the order [Run] runs them.
func Scenarios() []string {
	var names []string
	for _, s := range scenarios() {
		names = append(names, s.name)
	}
	return names
}

func scenarios() []scenario {
	return []scenario{
		{name: "restart", instances: 1, restartLease: true, marks: []float64{0.35}, fault: faultRestart},
		{name: "killed-connections", instances: 1, marks: []float64{0.25, 0.5, 0.75}, fault: faultKill},
		{name: "slow-database", instances: 1, marks: []float64{0.35}, fault: faultSlow},
		{name: "pool-exhaustion", instances: 1, poolSize: 2, concurrency: 64, minLease: poolLease},
		{name: "two-instances", instances: 2},
		{name: "two-instances-bare", instances: 2, bare: true},
		{name: "partition", instances: 2, proxied: true, marks: []float64{0.3}, fault: faultPartition},
		{name: "lost-replies", instances: 2, proxied: true, marks: []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}, fault: faultLostReplies},
		{name: "resets", instances: 2, proxied: true, marks: []float64{0.2, 0.4, 0.6, 0.8}, fault: faultResets},
		{name: "latency", instances: 2, proxied: true, marks: []float64{0.3}, fault: faultLatency, minLease: latencyLease},
		{name: "failover-async", instances: 2, replication: "async", restartLease: true, marks: []float64{0.4}, fault: faultFailover},
		{name: "failover-sync", instances: 2, replication: "sync", restartLease: true, marks: []float64{0.4}, fault: faultFailover},
	}
}

// The recovery after a restart is measured by the runner, which has the
// instances.
func faultRestart(ctx context.Context, e *env, cfg Config, arm func()) (faultRun, error) {
	start := time.Now()
	if err := e.faults.Restart(ctx, cfg.restartPause, arm); err != nil {
		return faultRun{}, err
	}
	d := time.Since(start)
	return faultRun{what: fmt.Sprintf("restarted in %s", d.Round(time.Millisecond)), outage: d}, nil
}

// The database keeps accepting connections: the pools replace the ones
// terminated at once, so the fault has no outage.
func faultKill(ctx context.Context, e *env, cfg Config, arm func()) (faultRun, error) {
	n, inUse, err := e.faults.KillConnections(ctx, e.url, cfg.LockTimeout/2, arm)
	return faultRun{what: fmt.Sprintf("terminated %d connections, %d of them in use", n, inUse), inUse: inUse}, err
}

func faultSlow(ctx context.Context, e *env, cfg Config, arm func()) (faultRun, error) {
	d := 2 * cfg.StatementTimeout
	start := time.Now()
	err := e.faults.HoldLocks(ctx, e.url, d, arm)
	return faultRun{what: fmt.Sprintf("held exclusive table locks for %s", d), outage: time.Since(start)}, err
}

// poolLease is the least lease of pool-exhaustion: 64 clients share two
// connections, so a request waits for one before each statement, for
// hundreds of milliseconds on a loaded machine. A lease shorter than a
// request's waits lets its key be claimed again before its response is
// stored (idem's documented limit, the store being out of reach for the
// lease), which is not what the scenario tests: it runs with at least
// Config.RestartLease (default 5s), which only a claim left in flight
// waits out.
func poolLease(cfg Config) time.Duration { return cfg.RestartLease }

// Run starts a throwaway cluster and runs the named scenarios (all when
// names is empty), one fresh database each.
func Run(ctx context.Context, cfg Config, names []string) ([]Result, error) {
	cfg = cfg.withDefaults()
	var todo []scenario
	for _, s := range scenarios() {
		if len(names) == 0 || slices.Contains(names, s.name) {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		return nil, fmt.Errorf("soak: no scenario among %v; choose from %v", names, Scenarios())
	}
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{Settings: map[string]string{"max_connections": "200"}})
	if errors.Is(err, pgcluster.ErrNoBinaries) {
		return nil, errors.New("soak: no PostgreSQL server binaries (initdb, postgres) on PATH, in $PG_BINDIR or in /usr/lib/postgresql/*/bin: " +
			"the suite starts and restarts a server of its own, so install them (Debian: apt-get install postgresql)")
	}
	if err != nil {
		return nil, fmt.Errorf("soak: start PostgreSQL: %w", err)
	}
	defer cluster.Stop()
	admin, err := database.Open(cluster.URL("postgres"))
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	defer admin.Close()
	dev, err := devdb.Connect(ctx, cluster.URL("postgres"))
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	defer dev.Close()
	var results []Result
	for _, s := range todo {
		var e *env
		if s.replication != "" {
			e, err = newFailoverEnv(ctx, s.replication == "sync")
		} else {
			e, err = newEnv(ctx, cluster, admin, dev)
		}
		if err != nil {
			return results, fmt.Errorf("soak: %s: %w", s.name, err)
		}
		r, err := runScenario(ctx, e, cfg, s)
		e.drop()
		if err != nil {
			return results, fmt.Errorf("soak: %s: %w", s.name, err)
		}
		results = append(results, r)
	}
	return results, nil
}

func runScenario(ctx context.Context, e *env, cfg Config, s scenario) (Result, error) {
	if s.poolSize > 0 {
		cfg.PoolSize = s.poolSize
	}
	if s.concurrency > 0 {
		cfg.Concurrency = s.concurrency
	}
	lease, leaseKnob := s.lease(cfg)
	cfg.Lease = lease
	var insts []*instance
	for i := range s.instances {
		url := e.url
		if s.proxied {
			p, u, err := proxyTo(e.url)
			if err != nil {
				return Result{}, err
			}
			defer p.Close()
			e.proxies = append(e.proxies, p)
			url = u
		}
		in, err := newInstance(fmt.Sprintf("i%d", i), url, cfg, s.bare)
		if err != nil {
			return Result{}, err
		}
		defer in.close()
		insts = append(insts, in)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency}
	defer transport.CloseIdleConnections()
	cl := &client{http: &http.Client{Transport: transport}, rec: NewRecorder(), orders: NewRecorder(), timeout: cfg.RequestTimeout, late: &lateCalls{}}

	keys := map[string]*keyState{}
	var jobs []job
	pairs := make([]*pair, cfg.LoginPairs)
	for i := range pairs {
		pairs[i] = &pair{email: fmt.Sprintf("user%d@example.com", i), ip: fmt.Sprintf("198.51.100.%d", i%250+1)}
	}
	// Each key twice in a row, so two clients send it at once; logins
	// spread in between. Every other key goes to the transactional
	// endpoint (POST /tx-orders), the others to POST /orders, so the load
	// sends as many requests as before.
	logins := cfg.LoginPairs * cfg.LoginsPerPair
	for i := range cfg.Orders {
		k := fmt.Sprintf("%s-%06d", s.name, i)
		st := &keyState{tx: i%2 == 1}
		if st.tx {
			k = fmt.Sprintf("%s-tx-%06d", s.name, i)
		}
		keys[k] = st
		jobs = append(jobs, job{order: k}, job{order: k})
		for j := i * logins / cfg.Orders; j < (i+1)*logins/cfg.Orders; j++ {
			jobs = append(jobs, job{pair: pairs[j%len(pairs)]})
		}
	}

	// The faults' own requests count in no recorder of the load.
	e.insts, e.keys, e.cl = insts, keys, cl.derive()
	loadCtx, cancel := context.WithTimeout(ctx, cfg.TimeLimit)
	defer cancel()
	gates := newGates(s.marks, len(jobs), cfg.Concurrency)
	var (
		next, done atomic.Int64
		wg         sync.WaitGroup
	)
	for w := range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for loadCtx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) || !gates.pass(loadCtx, i) {
					return
				}
				base := insts[(w+i)%len(insts)].server.URL
				if j := jobs[i]; j.order != "" {
					cl.order(loadCtx, base, j.order, keys[j.order])
				} else {
					cl.login(loadCtx, base, j.pair)
				}
				done.Add(1)
			}
		}()
	}
	var (
		faultErr error
		recovery time.Duration
		faults   []string
		// unavailable is the longest time from a fault's start until the
		// database served again (and, after a restart, the services did).
		unavailable time.Duration
		outage      time.Duration
		inUse       int
		faultWG     sync.WaitGroup
	)
	if s.fault != nil {
		faultWG.Add(1)
		go func() {
			defer faultWG.Done()
			defer gates.openAll() // a fault that failed holds no worker
			for _, g := range gates {
				select {
				case <-g.trigger:
				case <-loadCtx.Done():
					// The time limit ended the load before the trigger.
					return
				}
				run, err := s.fault(ctx, e, cfg, g.arm)
				g.arm()
				if err != nil {
					faultErr = err
					return
				}
				if loadCtx.Err() != nil {
					run.what += " (after the load had ended)"
				}
				faults = append(faults, run.what)
				inUse += run.inUse
				outage = max(outage, run.outage)
				down := run.outage
				if s.name == "restart" {
					var ok bool
					recovery, ok = measureRecovery(ctx, cl, insts[0].server.URL, cfg)
					down += recovery
					if !ok && ctx.Err() == nil {
						cl.dirtyf("the services did not both answer successfully within %s of the server accepting connections again", cfg.RequestTimeout)
					}
				}
				if s.replication != "" {
					// From the promotion, until every instance answers.
					var ok bool
					recovery, ok = measureRecoveryAll(ctx, cl, insts, cfg)
					down += recovery
					if !ok && ctx.Err() == nil {
						cl.dirtyf("the services did not all answer successfully within %s of the promotion", cfg.RequestTimeout)
					} else if recovery > RecoveryTarget {
						cl.dirtyf("the services answered %s after the promotion, over the %s target", recovery.Round(time.Millisecond), RecoveryTarget)
					}
				}
				unavailable = max(unavailable, down)
				g.finish()
			}
		}()
	}
	wg.Wait()
	cl.rec.Stop()
	cl.orders.Stop()
	cancel()
	faultWG.Wait()
	if faultErr != nil {
		return Result{}, faultErr
	}
	timedOut := done.Load() < int64(len(jobs))

	// Retry every key that got no final answer, as a client would.
	// They count in a recorder of their own, so that the load's req/s and
	// latencies are the load's alone.
	for _, d := range e.cl.dirty {
		cl.dirtyf("a fault's request: %s", d)
	}
	retry := cl.derive()
	retryUnanswered(ctx, retry, insts, keys, cfg)
	for _, d := range retry.dirty {
		cl.dirtyf("retry after the load: %s", d)
	}

	// At most once, for keys answered 2xx whose response might not have
	// been stored: once a claim's lease has passed, a key whose claim was
	// left in flight is claimable again, so re-sending it would run the
	// handler a second time (a second soak_effects row, which
	// checkInvariants flags). Waiting out the leases of the claims still in
	// flight is the fault model under test (a claim outliving its
	// instance), not a wait for a race. No request is in flight now, so
	// every claim was taken before this point.
	var resent, replayedAfter int
	var resendDirty []string
	if !s.bare {
		if err := waitLeases(ctx, e); err != nil {
			return Result{}, err
		}
		resent, replayedAfter, resendDirty = resendAll(ctx, cl, insts, keys, cfg)
	}
	if err := recordEnds(ctx, e, insts); err != nil {
		return Result{}, err
	}

	r := Result{
		Scenario:    s.name,
		Sent:        cl.rec.Sent(),
		Succeeded:   cl.rec.Count(Succeeded),
		Replayed:    cl.rec.Count(Replayed),
		Conflicted:  cl.rec.Count(Conflicted),
		FailedClean: cl.rec.Count(FailedClean),
		P50:         cl.rec.Percentile(50),
		P99:         cl.rec.Percentile(99),
		Throughput:  cl.rec.Throughput(),
		Recovery:    recovery,
		Lease:       lease,
		Outage:      outage,
		Faults:      faults,
		KilledInUse: inUse,

		Resent:             resent,
		ReplayedAfterLease: replayedAfter,

		OrdersThroughput: cl.orders.Throughput(),
		Retried:          retry.rec.Sent() + e.cl.rec.Sent(),
	}
	r.LateCalls, r.LateWorst = cl.late.count()
	if r.LateCalls > 0 {
		r.Violations = append(r.Violations, fmt.Sprintf("%d client calls took longer than the request timeout %s plus %s, the longest %s",
			r.LateCalls, cfg.RequestTimeout, CallSlack, r.LateWorst.Round(time.Millisecond)))
	}
	var notes []string
	if timedOut {
		notes = append(notes, fmt.Sprintf("time limit %s reached after %d of %d requests", cfg.TimeLimit, done.Load(), len(jobs)))
	}
	if recovery > RecoveryTarget {
		notes = append(notes, fmt.Sprintf("recovery took %s, over the %s target", recovery.Round(time.Millisecond), RecoveryTarget))
	}
	r.Note = strings.Join(notes, "; ")
	r.Violations = append(r.Violations, cl.dirty...)
	r.Violations = append(r.Violations, resendDirty...)
	// A network scenario's partition outlasts the lease by design: the keys
	// it explains are sorted out one by one below.
	outlasted := unavailable >= lease
	if outlasted && !s.proxied {
		r.ConfigErrors = append(r.ConfigErrors, fmt.Sprintf(
			"a fault kept the database from serving for %s, at least the lease of %s: a response sent before it may not be stored, "+
				"and its key runs again when re-sent after the lease (idem's documented limit, not a defect); raise %s above the outage",
			unavailable.Round(time.Millisecond), lease, leaseKnob))
	}
	allKeys := keys // the failover's losses are taken out of keys below
	if s.replication != "" {
		l, err := countLosses(ctx, e, keys, pairs)
		if err != nil {
			return r, err
		}
		r.LostRecords, r.RanAgain, r.AckedRecords = l.records, l.ranAgain, l.acked
		r.LostIncrements, r.AckedIncrements = l.increments, l.ackedIncrements
		r.AmbiguousKeys, r.AmbiguousPairs = l.ambiguousKeys, l.ambiguousPairs
		notes = append(notes, l.note())
		// The ambiguous writes are reported above and not checked; the lost
		// ones are the cost of asynchronous replication, and a violation
		// with synchronous replication.
		keys, pairs = l.without(keys, pairs, s.replication == "async")
		if s.replication == "sync" {
			if c := lagConfigError(cfg); c != "" {
				r.ConfigErrors = append(r.ConfigErrors, c)
			} else if l.records > 0 || l.increments > 0 {
				r.Violations = append(r.Violations, "synchronous replication lost acknowledged writes: "+l.note())
			}
		}
		r.Note = strings.Join(notes, "; ")
	}
	if !s.bare {
		t, err := checkTxOrders(ctx, e, allKeys, s.replication == "async")
		if err != nil {
			return r, err
		}
		r.Violations = append(r.Violations, t.v...)
		r.TxKeys, r.TxOrders, r.TxStored, r.TxFound, r.TxLost = t.keys, t.orders, t.stored, t.found, t.lost
		r.Note = strings.TrimPrefix(r.Note+"; "+t.note(), "; ")
		f, err := checkInvariants(ctx, e, keys, pairs)
		if err != nil {
			return r, err
		}
		r.Violations = append(r.Violations, f.v...)
		r.Overlaps = len(f.overlaps)
		if f.ambiguousPairs > 0 {
			r.AmbiguousPairs = f.ambiguousPairs
			r.Note = strings.TrimPrefix(r.Note+"; "+fmt.Sprintf("%d login pairs count more failures than clients were told, no more than the 503s they got (a recorded failure whose reply was lost)", f.ambiguousPairs), "; ")
		}
		// Keys whose runs overlapped because a handler ran past its
		// lease: idem's limit while a fault outlasts the lease.
		pastLease, overlapped := map[string]bool{}, map[string]bool{}
		var unchecked []string
		limited := map[string][]string{} // key → what explains it: its runs, its overlaps
		for _, o := range f.overlaps {
			overlapped[o.a.key] = true
			switch {
			case o.pastLease():
				pastLease[o.a.key] = true
				unchecked = append(unchecked, o.String()+": the first handler ran past its lease")
			case f.limit[o.a.key] && o.a.status >= 500:
				// The first handler answered 5xx for a write whose outcome
				// it did not know, which landed after the retry had started.
				limited[o.a.key] = append(limited[o.a.key], o.String()+": the first handler had answered 5xx")
			default:
				r.Violations = append(r.Violations, o.String()+": the first handler had returned before the second started, and its effect landed after")
			}
		}
		if len(pastLease) > 0 {
			r.ConfigErrors = append(r.ConfigErrors, fmt.Sprintf(
				"%d keys ran twice at once because a handler kept running after its lease had ended while a fault kept its instance from the database: "+
					"idem does not stop a handler before its lease ends (not promised yet); the keys are listed as not counted", len(pastLease)))
		}
		var notStored int
		for _, k := range slices.Sorted(maps.Keys(f.once)) {
			msg := f.once[k]
			switch {
			case pastLease[k]:
				unchecked = append(unchecked, msg)
			case f.limit[k]:
				// The documented limit of the non-transactional mode: a
				// handler answered 5xx for a write whose outcome it did not
				// know, which landed anyway; the retry ran the key again.
				// The transactional endpoint exists for it.
				limited[k] = append(limited[k], msg)
			case s.proxied && outlasted && !overlapped[k] && f.firstAnswered[k]:
				// A response sent (a client got the first run's as the
				// original) but not stored before the lease ended: the
				// documented limit of an outage longer than the lease.
				notStored++
				unchecked = append(unchecked, msg)
			case !s.proxied && len(r.ConfigErrors) > 0:
				unchecked = append(unchecked, msg)
			case s.replication != "":
				// A failover can hide a commit's outcome from the instance
				// that made it (the primary died waiting on the standby's
				// acknowledgement, which it had received): the middleware
				// answers 503 and the retry runs the key again. The keys are
				// reported, not counted as violations: at most once holds only
				// while the store answers.
				unchecked = append(unchecked, msg)
				r.Note += "; " + msg + " after a commit whose outcome the failover hid"
			default:
				r.Violations = append(r.Violations, msg)
			}
		}
		if len(limited) > 0 {
			r.FailedLanded = len(limited)
			msgs := []string{fmt.Sprintf("%d non-transactional keys ran again after a handler answered 5xx for a write that landed anyway "+
				"(the documented limit of the non-transactional mode, not a violation)", len(limited))}
			for _, k := range slices.Sorted(maps.Keys(limited)) {
				if len(msgs) <= 5 {
					msgs = append(msgs, limited[k]...)
				}
			}
			r.Note = strings.TrimPrefix(r.Note+"; "+strings.Join(msgs, "; "), "; ")
		}
		if notStored > 0 {
			r.ConfigErrors = append(r.ConfigErrors, fmt.Sprintf(
				"a fault kept an instance from the database for %s, at least the lease of %s: %d keys whose response was sent but not stored ran again after the lease "+
					"(idem's documented limit, not a defect)", unavailable.Round(time.Millisecond), lease, notStored))
		}
		r.Unchecked = append(r.Unchecked, unchecked...)
	}
	return r, nil
}

// RecoveryTarget is how soon after the database accepts connections again
// the services should answer successfully. A slower recovery is noted in
// the result; none within Config.RequestTimeout is a violation.
const RecoveryTarget = 2 * time.Second

// measureRecovery sends a new order and a login until both succeed, and
// returns how long that took from the server accepting connections, and
// whether they did succeed before cfg.RequestTimeout had passed (or ctx
// was done). The probe's answers count in no recorder, but a dirty one
// (a hang, an error that is not a clean problem+json) is a violation like
// any other.
func measureRecovery(ctx context.Context, cl *client, base string, cfg Config) (time.Duration, bool) {
	start := time.Now()
	probe := cl.derive()
	probe.timeout = cfg.RequestTimeout
	defer func() {
		for _, d := range probe.dirty {
			cl.dirtyf("recovery probe: %s", d)
		}
	}()
	p := &pair{email: "recovery@example.com", ip: "203.0.113.1"}
	deadline := time.NewTimer(cfg.RequestTimeout)
	defer deadline.Stop()
	for i := 0; ; i++ {
		okOrder := probe.order(ctx, base, fmt.Sprintf("recovery-%d", i), &keyState{})
		okLogin := probe.login(ctx, base, p)
		if okOrder && okLogin {
			return time.Since(start), true
		}
		select {
		case <-ctx.Done():
			return time.Since(start), false
		case <-deadline.C:
			return time.Since(start), false
		case <-time.After(20 * time.Millisecond): // client back-off between probes
		}
	}
}

// measureRecoveryAll runs measureRecovery on every instance at once and
// returns the longest, and whether all recovered.
func measureRecoveryAll(ctx context.Context, cl *client, insts []*instance, cfg Config) (time.Duration, bool) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		longest time.Duration
		all     = true
	)
	for _, in := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, ok := measureRecovery(ctx, cl, in.server.URL, cfg)
			mu.Lock()
			defer mu.Unlock()
			longest, all = max(longest, d), all && ok
		}()
	}
	wg.Wait()
	return longest, all
}

// retryUnanswered resends each key without a final answer until it gets
// one, the lease of any claim left behind has long passed, or ctx is done.
func retryUnanswered(ctx context.Context, cl *client, insts []*instance, keys map[string]*keyState, cfg Config) {
	deadline := time.Now().Add(cfg.Lease + cfg.RequestTimeout)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for k, st := range keys {
		st.mu.Lock()
		answered := st.answered
		st.mu.Unlock()
		if answered || ctx.Err() != nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for i := 0; time.Now().Before(deadline); i++ {
				if cl.order(ctx, insts[i%len(insts)].server.URL, k, st) {
					return
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(100 * time.Millisecond): // client back-off, as Retry-After asks
				}
			}
		}()
	}
	wg.Wait()
}

// leaseMargin covers the millisecond truncation of the stored lease and
// the clocks of the client and the instances, which are one machine's.
const leaseMargin = 50 * time.Millisecond

// waitLeases returns once no claim in e's database is in flight with its
// lease still running, reading the leases from the records: a claim left
// in flight is claimable again from then on. It returns at once when every
// claim was completed or released.
func waitLeases(ctx context.Context, e *env) error {
	db, err := database.Open(e.url)
	if err != nil {
		return err
	}
	defer db.Close()
	for {
		var left float64 // seconds of the longest lease still running
		if err := db.QueryRowContext(ctx, `
SELECT coalesce(extract(epoch FROM max("expiresAt") - (statement_timestamp() AT TIME ZONE 'UTC')), 0)::float8
FROM idempotency_records WHERE "responseStatus" = 0`).Scan(&left); err != nil {
			return fmt.Errorf("read the leases in flight: %w", err)
		}
		if left <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(left*float64(time.Second)) + leaseMargin):
		}
	}
}

// resendAll sends every key once more, spread over the instances, and
// returns how many it sent, how many came back as a replay, and a
// violation for each that did not.
func resendAll(ctx context.Context, cl *client, insts []*instance, keys map[string]*keyState, cfg Config) (sent, replayed int, dirty []string) {
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, cfg.Concurrency)
		i   int
	)
	for k, st := range keys {
		base := insts[i%len(insts)].server.URL
		i++
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ok, what := cl.resend(ctx, base, k, st)
			mu.Lock()
			defer mu.Unlock()
			sent++
			if ok {
				replayed++
			} else if what != ranAgain && len(dirty) < 20 {
				dirty = append(dirty, fmt.Sprintf("key %s: re-sent after the lease: %s, want a replay", k, what))
			}
		}()
	}
	wg.Wait()
	return sent, replayed, dirty
}

// checkInvariants reads the side effects, records and lockout rows and
// compares them with what the clients saw. It returns the violations apart
// from once, those of keys whose handler ran more than once: a fault that
// outlasted the lease explains these (see Config.Lease), and nothing else.
func checkInvariants(ctx context.Context, e *env, keys map[string]*keyState, pairs []*pair) (f findings, err error) {
	db, err := database.Open(e.url)
	if err != nil {
		return f, err
	}
	defer db.Close()
	f.once, f.firstAnswered, f.limit = map[string]string{}, map[string]bool{}, map[string]bool{}
	violate := func(format string, args ...any) {
		if len(f.v) < 50 {
			f.v = append(f.v, fmt.Sprintf(format, args...))
		}
	}
	runs, err := readRuns(ctx, db)
	if err != nil {
		return f, err
	}
	effects := map[string][]string{} // key → nonces
	byKey := map[string][]effectRun{}
	for _, r := range runs {
		effects[r.key] = append(effects[r.key], r.nonce)
		byKey[r.key] = append(byKey[r.key], r)
	}
	for _, o := range findOverlaps(runs) {
		if keys[o.a.key] != nil {
			f.overlaps = append(f.overlaps, o)
		}
	}
	for k, st := range keys {
		if st.tx {
			continue // checkTxOrders checks the transactional endpoint's keys
		}
		nonces := effects[k]
		violate := violate
		if len(nonces) > 1 {
			f.once[k] = fmt.Sprintf("key %s: the handler ran %d times", k, len(nonces))
			if byKey[k][0].started != byKey[k][0].landed { // the runs' times are known
				f.once[k] += ": " + describeRuns(byKey[k], st)
			}
			if failedLanded(byKey[k]) {
				f.limit[k] = true
			}
			if firstOriginal(byKey[k], st) {
				f.firstAnswered[k] = true
			}
			violate = func(string, ...any) {} // the runs explain the rest
		}
		if !st.answered {
			violate("key %s: no success after the fault, even when retried", k)
			continue
		}
		if len(nonces) == 0 {
			violate("key %s: a client got a final answer but the side effect is missing", k)
			continue
		}
		if st.originals > 1 {
			violate("key %s: %d clients got the original (non-replayed) response", k, st.originals)
		}
		ref := st.responses[0]
		for _, r := range st.responses {
			if !r.replayed {
				ref = r
				break
			}
		}
		for _, r := range st.responses {
			if r.status == http.StatusCreated {
				var o order
				if json.Unmarshal([]byte(r.body), &o) != nil || o.Nonce != nonces[0] {
					violate("key %s: a response differs from the side effect: %.120s", k, r.body)
					continue
				}
			}
			if d := r.differs(ref); d != "" {
				violate("key %s: a response differs from the original in its %s", k, d)
			}
		}
	}
	var stored5xx int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM idempotency_records WHERE "responseStatus" >= 500`).Scan(&stored5xx); err != nil {
		return f, err
	}
	if stored5xx > 0 {
		violate("%d stored records have a 5xx status", stored5xx)
	}
	type row struct {
		failures int
		locked   bool
	}
	rows := map[[2]string]row{}
	if err := eachRow(ctx, db, `SELECT "email", coalesce("ip", ''), "failuresCount", "lockedUntil" IS NOT NULL FROM auth_attempts`, func(r *sql.Rows) error {
		var k [2]string
		var x row
		if err := r.Scan(&k[0], &k[1], &x.failures, &x.locked); err != nil {
			return err
		}
		rows[k] = x
		return nil
	}); err != nil {
		return f, err
	}
	for _, p := range pairs {
		got := rows[[2]string{p.email, p.ip}]
		if len(e.proxies) > 0 && got.failures > p.recorded && got.failures <= p.recorded+p.unknown {
			// Behind a fault proxy a 503 can follow a failure recorded
			// whose reply was lost: more failures than clients were told,
			// at most one per 503 (fail closed). Fewer is still a violation.
			f.ambiguousPairs++
		} else if got.failures != p.recorded {
			violate("login %s from %s: failuresCount is %d, clients were told %d failures were recorded", p.email, p.ip, got.failures, p.recorded)
		}
		if p.recorded >= maxFailures && !got.locked {
			violate("login %s from %s: %d failures recorded but the pair is not locked", p.email, p.ip, p.recorded)
		}
	}
	return f, nil
}

// findings are checkInvariants' results.
type findings struct {
	v []string
	// once holds, by key, the keys whose handler ran more than once: a
	// fault that outlasted the lease explains these (see Config.Lease),
	// and nothing else.
	once     map[string]string
	overlaps []overlap
	// firstAnswered holds the keys of once whose first run's response a
	// client got as the original: that run finished and answered.
	firstAnswered map[string]bool
	// limit holds the keys of once whose runs all answered a 5xx but one
	// at most (see failedLanded): the documented limit of the
	// non-transactional mode, reported apart.
	limit map[string]bool
	// ambiguousPairs counts, behind a fault proxy, the login pairs with
	// more failures recorded than clients were told, but no more than
	// clients were answered 503.
	ambiguousPairs int
}

// failedLanded reports whether a key's runs are explained by the
// documented limit of the non-transactional mode: every run but one at
// most had its handler answer a 5xx (it reported failure, its client got
// a 5xx and the middleware released the key) while its effect landed
// anyway, so a retry ran the key again. A run whose answer was not
// recorded, or any second run that answered other than 5xx, is not
// explained.
func failedLanded(runs []effectRun) bool {
	if len(runs) < 2 {
		return false
	}
	ok := 0
	for _, r := range runs {
		switch {
		case r.status == 0:
			return false
		case r.status < 500:
			ok++
		}
	}
	return ok <= 1
}

func eachRow(ctx context.Context, db *sql.DB, query string, each func(*sql.Rows) error) error {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
