package soak

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/pgcluster"
)

// The failover scenarios run on a primary and a streaming standby of their
// own, which the suite starts for each; the services reach them through one
// multi-host URL that lists the primary, then the standby, with
// target_session_attrs=read-write, so their new connections find whichever
// accepts writes. The fault stalls replication for Config.FailoverLag,
// stops the primary in immediate mode, and promotes the standby.

// standbyName is the standby's application_name.
const standbyName = "soak_standby"

// newFailoverEnv starts a primary with a migrated database and a standby
// of it (synchronous when sync is set), and returns the scenario's env on
// them. Its drop stops both servers.
func newFailoverEnv(ctx context.Context, sync bool) (*env, error) {
	// Both scenarios commit with synchronous_commit on, so that the only
	// difference is whether the primary waits for the standby.
	primary, err := pgcluster.Start(ctx, pgcluster.Options{Settings: map[string]string{
		"max_connections": "200", "synchronous_commit": "on",
	}})
	if err != nil {
		return nil, fmt.Errorf("start the primary: %w", err)
	}
	var standby *pgcluster.Cluster
	var admin *sql.DB
	drop := func() {
		if admin != nil {
			_ = admin.Close()
		}
		if standby != nil {
			_ = standby.Stop()
		}
		_ = primary.Stop()
	}
	const dbName = "soak"
	if admin, err = database.Open(primary.URL("postgres")); err == nil {
		_, err = admin.ExecContext(ctx, `CREATE DATABASE `+dbName)
	}
	if err == nil {
		err = (&env{url: primary.URL(dbName)}).prepare(ctx)
	}
	if err == nil {
		standby, err = primary.StartStandby(ctx, pgcluster.StandbyOptions{Name: standbyName, Synchronous: sync})
	}
	if err != nil {
		drop()
		return nil, err
	}
	url := fmt.Sprintf("postgres://postgres@/%s?host=127.0.0.1,127.0.0.1&port=%d,%d&target_session_attrs=read-write&sslmode=disable",
		dbName, primary.Port(), standby.Port())
	return &env{url: url, drop: drop, faults: &Faults{cluster: primary, standby: standby, admin: admin, dbName: dbName}}, nil
}

// Failover stalls the primary's replication to the standby for lag (its
// walsender stopped with SIGSTOP: the standby receives nothing while the
// primary goes on committing, or, with a synchronous standby, while its
// commits wait), then stops the primary in immediate mode, the walsender
// dying before it sends anything more, and promotes the standby. It
// returns when the standby accepts writes, with the time the promotion
// took and the outage, from the stall to the promotion.
func (f *Faults) Failover(ctx context.Context, lag time.Duration) (promote, outage time.Duration, err error) {
	var walsender int
	if err := f.admin.QueryRowContext(ctx, `SELECT pid FROM pg_stat_replication WHERE application_name = $1`, standbyName).Scan(&walsender); err != nil {
		return 0, 0, fmt.Errorf("failover: find the walsender: %w", err)
	}
	start := time.Now()
	if err := syscall.Kill(walsender, syscall.SIGSTOP); err != nil {
		return 0, 0, fmt.Errorf("failover: stop the walsender: %w", err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(lag): // the standby lags for lag: the fault itself
	}
	// SIGQUIT waits, pending, while the walsender is stopped; once it
	// continues it exits before sending more WAL. The postmaster's SIGQUIT
	// is pg_ctl stop -m immediate.
	kill := errors.Join(syscall.Kill(walsender, syscall.SIGQUIT), syscall.Kill(f.cluster.Pid(), syscall.SIGQUIT),
		syscall.Kill(walsender, syscall.SIGCONT), f.cluster.StopImmediate())
	if kill != nil {
		return 0, 0, fmt.Errorf("failover: stop the primary: %w", kill)
	}
	promoting := time.Now()
	if err := f.standby.Promote(ctx); err != nil {
		return 0, 0, fmt.Errorf("failover: %w", err)
	}
	f.admin.SetMaxIdleConns(0) // the admin pool's connections died with the primary
	return time.Since(promoting), time.Since(start), nil
}

func faultFailover(ctx context.Context, e *env, cfg Config, arm func()) (faultRun, error) {
	arm() // the load goes on through the stall and the failover
	promote, outage, err := e.faults.Failover(ctx, cfg.FailoverLag)
	if err != nil {
		return faultRun{}, err
	}
	return faultRun{
		what: fmt.Sprintf("stalled replication for %s, stopped the primary (immediate), promoted the standby in %s",
			cfg.FailoverLag, promote.Round(time.Millisecond)),
		outage: outage,
	}, nil
}

// losses are the acknowledged writes the promoted standby does not have.
type losses struct {
	records, ranAgain, increments int
	acked, ackedIncrements        int
	// ambiguous counts the writes a client was told failed (a 503) that
	// the promoted standby has anyway: a commit the primary died waiting
	// on, which had reached the standby. A key's handler then ran again on
	// retry; a pair counts more failures than clients were told. Neither
	// is a lost acknowledged write.
	ambiguousKeys, ambiguousPairs int
	lostKeys, ambKeys             map[string]bool
	lostPairs, ambPairs           map[*pair]bool
}

// countLosses compares what clients were told was done with what the
// database (after the failover, the promoted standby) holds: a key whose
// first original response is not its stored record was acknowledged and
// lost (ranAgain: its handler ran again when the key was retried); a pair
// whose failuresCount is below the failures clients were told were
// recorded lost the difference.
func countLosses(ctx context.Context, e *env, keys map[string]*keyState, pairs []*pair) (losses, error) {
	l := losses{lostKeys: map[string]bool{}, lostPairs: map[*pair]bool{}, ambKeys: map[string]bool{}, ambPairs: map[*pair]bool{}}
	db, err := database.Open(e.url)
	if err != nil {
		return l, err
	}
	defer db.Close()
	// The stored key is a hash of the tenant and the key: the records are
	// matched by the order their response holds.
	stored := map[string]string{} // key → nonce of its stored response
	if err := eachRow(ctx, db, `SELECT "responseBodyJson" FROM idempotency_records WHERE "responseStatus" > 0`, func(r *sql.Rows) error {
		var raw string
		if err := r.Scan(&raw); err != nil {
			return err
		}
		var env struct {
			Body string `json:"body"`
		}
		var o order
		if json.Unmarshal([]byte(raw), &env) == nil && json.Unmarshal([]byte(env.Body), &o) == nil {
			stored[o.Key] = o.Nonce
		}
		return nil
	}); err != nil {
		return l, err
	}
	effects := map[string][]string{} // key → nonces of its handler's runs
	if err := eachRow(ctx, db, `SELECT "key", "nonce" FROM soak_effects`, func(r *sql.Rows) error {
		var k, nonce string
		if err := r.Scan(&k, &nonce); err != nil {
			return err
		}
		effects[k] = append(effects[k], nonce)
		return nil
	}); err != nil {
		return l, err
	}
	for k, st := range keys {
		seen := map[string]bool{}
		for _, r := range st.responses {
			var o order
			if json.Unmarshal([]byte(r.body), &o) == nil {
				seen[o.Nonce] = true
			}
		}
		for _, n := range effects[k] {
			if !seen[n] {
				l.ambiguousKeys++
				l.ambKeys[k] = true
				break
			}
		}
		var first *response
		for i := range st.responses {
			if !st.responses[i].replayed {
				first = &st.responses[i]
				break
			}
		}
		if first == nil {
			continue
		}
		l.acked++
		var o order
		if json.Unmarshal([]byte(first.body), &o) == nil && o.Nonce != "" && stored[k] == o.Nonce {
			continue
		}
		l.records++
		l.lostKeys[k] = true
		if st.originals > 1 {
			l.ranAgain++
		}
	}
	failures := map[[2]string]int{}
	if err := eachRow(ctx, db, `SELECT "email", coalesce("ip", ''), "failuresCount" FROM auth_attempts`, func(r *sql.Rows) error {
		var k [2]string
		var n int
		if err := r.Scan(&k[0], &k[1], &n); err != nil {
			return err
		}
		failures[k] = n
		return nil
	}); err != nil {
		return l, err
	}
	for _, p := range pairs {
		l.ackedIncrements += p.recorded
		switch n := failures[[2]string{p.email, p.ip}]; {
		case n < p.recorded:
			l.increments += p.recorded - n
			l.lostPairs[p] = true
		case n > p.recorded:
			l.ambiguousPairs++
			l.ambPairs[p] = true
		}
	}
	return l, nil
}

// lossNote is the summary's line of a failover's losses.
func (l losses) note() string {
	return fmt.Sprintf("acknowledged idempotency records lost: %d of %d (handlers run again on retry: %d); acknowledged lockout increments lost: %d of %d; "+
		"writes answered 503 but on the promoted standby (commit outcome unknown to the client): %d keys, %d login pairs",
		l.records, l.acked, l.ranAgain, l.increments, l.ackedIncrements, l.ambiguousKeys, l.ambiguousPairs)
}

// without returns keys and pairs without the ambiguous ones, and without
// the lost ones too when lost is set.
func (l losses) without(keys map[string]*keyState, pairs []*pair, lost bool) (map[string]*keyState, []*pair) {
	kept := map[string]*keyState{}
	for k, st := range keys {
		if !l.ambKeys[k] && !(lost && l.lostKeys[k]) {
			kept[k] = st
		}
	}
	var ps []*pair
	for _, p := range pairs {
		if !l.ambPairs[p] && !(lost && l.lostPairs[p]) {
			ps = append(ps, p)
		}
	}
	return kept, ps
}

// lagConfigError explains why a synchronous failover can lose commits: a
// commit whose wait for the standby is cancelled (statement_timeout) is
// acknowledged with a warning while it is on the primary alone.
func lagConfigError(cfg Config) string {
	if cfg.FailoverLag < cfg.StatementTimeout {
		return ""
	}
	return fmt.Sprintf("the replication stall of %s is at least the statement timeout of %s: a commit waiting for the synchronous standby "+
		"is then cancelled and acknowledged while on the primary alone (PostgreSQL's documented limit), so losses are not a defect; "+
		"lower -failover-lag (Config.FailoverLag) below -statement-timeout", cfg.FailoverLag, cfg.StatementTimeout)
}
