package soak

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/faultproxy"
)

// The network scenarios put a fault proxy (internal/faultproxy) between
// each instance's pool and PostgreSQL, on loopback, and fault the network
// rather than the server: a partition of one instance longer than the
// lease, lost replies, connections reset mid-statement, and replies
// delayed past the statement timeout.

// proxyTo starts a fault proxy to the server of dbURL and returns it with
// dbURL rewritten to go through it.
func proxyTo(dbURL string) (*faultproxy.Proxy, string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return nil, "", fmt.Errorf("proxy: %w", err)
	}
	p, err := faultproxy.Start(u.Host)
	if err != nil {
		return nil, "", err
	}
	u.Host = p.Addr()
	return p, u.String(), nil
}

// partitionFor is how long the partition scenario cuts its instance off:
// half a lease longer than the lease, so that the instance's claims expire
// while it is cut off and the other instance takes the keys over.
func partitionFor(lease time.Duration) time.Duration { return lease + lease/2 }

// faultPartition cuts instance i0 off from the database (a stall: nothing
// forwarded either way, sockets open) for longer than the lease while
// handlers of i0 run: it holds the next handler to start on i0 before its
// side effect, stalls the proxy, then lets the held handlers send their
// INSERTs into the partition. Meanwhile instance i1 is sent the held keys
// again and again, as a client that retries elsewhere would, until each
// gets a final answer or the partition ends. Then it heals.
func faultPartition(ctx context.Context, e *env, cfg Config, arm func()) (faultRun, error) {
	in, p := e.insts[0], e.proxies[0]
	d := partitionFor(cfg.Lease)
	held, release := in.holdHandlers()
	defer release()
	arm() // the load goes on, so that a handler starts on i0
	var keys []string
	select {
	case k := <-held:
		keys = append(keys, k)
	case <-time.After(cfg.RequestTimeout):
		return faultRun{}, fmt.Errorf("partition: no handler started on %s within %s", in.name, cfg.RequestTimeout)
	case <-ctx.Done():
		return faultRun{}, ctx.Err()
	}
	p.Stall()
	start := time.Now()
	release()
	for more := true; more; {
		select {
		case k := <-held:
			keys = append(keys, k)
		default:
			more = false
		}
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		tries int
	)
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < d && ctx.Err() == nil {
				mu.Lock()
				tries++
				mu.Unlock()
				if e.cl.order(ctx, e.insts[1].server.URL, k, e.keys[k]) {
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond): // client back-off
				}
			}
		}()
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(start.Add(d))): // the partition itself
	}
	p.Heal()
	outage := time.Since(start)
	wg.Wait()
	return faultRun{
		what: fmt.Sprintf("partitioned %s from the database for %s (lease %s) with %d of its handlers held into it (%s); %s was sent their keys %d times meanwhile",
			in.name, outage.Round(time.Millisecond), cfg.Lease, len(keys), strings.Join(keys, ", "), e.insts[1].name, tries),
		outage: outage,
	}, nil
}

// faultLostReplies loses the next reply the database sends to each
// instance: that statement ran, its connection is closed before the
// client hears of it.
func faultLostReplies(_ context.Context, e *env, _ Config, arm func()) (faultRun, error) {
	for _, p := range e.proxies {
		p.DropNextReply()
	}
	arm()
	return faultRun{what: fmt.Sprintf("the next reply to each of %d instances lost", len(e.proxies))}, nil
}

// faultResets resets every connection of every instance while statements
// are in flight on them: like KillConnections, it locks both tables for at
// most LockTimeout/2 (on a connection of its own, not through a proxy) so
// that the statements sent meanwhile wait on the lock, resets the proxies'
// connections as soon as one such statement waits, and then releases the
// lock. The server does not see the reset until it answers: a statement
// that waited runs once the lock is released, its client gone.
func faultResets(ctx context.Context, e *env, cfg Config, arm func()) (faultRun, error) {
	db, err := database.Open(e.url)
	if err != nil {
		return faultRun{}, err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return faultRun{}, fmt.Errorf("resets: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var holder int
	if err := tx.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&holder); err != nil {
		return faultRun{}, fmt.Errorf("resets: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `LOCK TABLE "idempotency_records", "auth_attempts" IN ACCESS EXCLUSIVE MODE`); err != nil {
		return faultRun{}, fmt.Errorf("resets: %w", err)
	}
	arm()
	deadline := time.Now().Add(cfg.LockTimeout / 2)
	var waiting int
	for {
		if err := e.faults.admin.QueryRowContext(ctx, `
SELECT count(*) FROM pg_stat_activity
WHERE datname = $1 AND pid NOT IN (pg_backend_pid(), $2) AND backend_type = 'client backend' AND wait_event_type = 'Lock'`,
			e.faults.dbName, holder).Scan(&waiting); err != nil {
			return faultRun{}, fmt.Errorf("resets: %w", err)
		}
		if waiting > 0 || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return faultRun{}, ctx.Err()
		case <-time.After(2 * time.Millisecond): // look again for a statement waiting
		}
	}
	var conns int
	for _, p := range e.proxies {
		conns += p.Conns()
		p.ResetAll()
	}
	return faultRun{what: fmt.Sprintf("reset %d connections while %d statements waited on a lock", conns, waiting), inUse: waiting}, nil
}

// latencyDelay is how long the latency scenario holds each reply: one
// and a half statement timeouts.
func latencyDelay(cfg Config) time.Duration { return cfg.StatementTimeout + cfg.StatementTimeout/2 }

// latencyLease is the least lease of the latency scenario: the delayed
// replies must not keep the store from answering for a whole lease, which
// would void at most once by idem's documented limit (a response sent
// but not stored runs again) rather than test it. A statement waits for a
// connection, whose setup takes a delayed reply or two, then for its own
// reply, through the window: four delays and the window cover that.
func latencyLease(cfg Config) time.Duration { return 4*latencyDelay(cfg) + latencyWindow(cfg) }

// latencyWindow is how long the latency scenario delays replies.
func latencyWindow(cfg Config) time.Duration { return 2 * cfg.StatementTimeout }

// faultLatency delays every reply to every instance by one and a half
// statement timeouts for latencyWindow: each statement finishes on the
// server within its timeout, and its client hears of it only after that.
func faultLatency(ctx context.Context, e *env, cfg Config, arm func()) (faultRun, error) {
	d := latencyDelay(cfg)
	for _, p := range e.proxies {
		p.Delay(d)
	}
	arm()
	var err error
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(latencyWindow(cfg)): // the fault's window
	}
	for _, p := range e.proxies {
		p.Delay(0)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return faultRun{}, err
	}
	return faultRun{what: fmt.Sprintf("delayed every reply by %s for %s", d, latencyWindow(cfg)), outage: d}, nil
}
