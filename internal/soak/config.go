package soak

import (
	"cmp"
	"time"
)

// Config bounds a run. The zero value means the defaults, sized for the
// 2-core machines the suite runs on.
type Config struct {
	// Orders is the number of idempotency keys per scenario; each key is
	// sent twice at once, so duplicates overlap. Default 300.
	Orders int
	// LoginPairs is the number of (email, ip) pairs per scenario, each sent
	// LoginsPerPair failed logins. Default 30.
	LoginPairs int
	// LoginsPerPair is the number of failed logins per pair. Default 8.
	LoginsPerPair int
	// Concurrency is the number of client goroutines. Default 32.
	Concurrency int
	// TimeLimit bounds each scenario's load phase. Default 60s.
	TimeLimit time.Duration
	// PoolSize is each instance's pool size. Default 8.
	PoolSize int
	// Driver is the instances' database/sql driver (database.Config.Driver):
	// "postgres" (lib/pq, the default) or "pgx".
	Driver string
	// StatementTimeout and LockTimeout are the services' session limits.
	// Defaults 2s and 1s.
	StatementTimeout, LockTimeout time.Duration
	// RequestTimeout is the clients' timeout: no answer within it is a
	// violation. Default 10s.
	RequestTimeout time.Duration
	// Lease is the idempotency claim lease of every scenario but restart
	// (see RestartLease). It must outlast the longest store outage a
	// scenario injects (the slow-database fault holds its locks for twice
	// StatementTimeout): the middleware retries storing a response already
	// sent only until the lease ends, and a key whose response was not
	// stored by then runs again when re-sent, which is idem's documented
	// limit, not a defect. A fault that outlasts the lease is therefore
	// reported as a configuration error of the run (Result.ConfigErrors),
	// not as violations. Default 2×StatementTimeout + 1s (5s with the
	// default timeouts).
	Lease time.Duration
	// RestartLease is the least lease of the restart scenario, which runs
	// with the larger of Lease and RestartLease. It must outlast the
	// restart's outage, from the shutdown until the services answer again:
	// about a second on an idle machine, several on a loaded one. Default 5s.
	RestartLease time.Duration
	// FailoverLag is how long the failover scenarios stall replication
	// before they stop the primary: the standby's lag at the failover.
	// With a synchronous standby it must stay below StatementTimeout,
	// which otherwise cancels the commits waiting for the standby and so
	// acknowledges them on the primary alone (reported as a configuration
	// error). The failover scenarios run with the larger of Lease and
	// RestartLease, which must outlast the stall and the promotion.
	// Default 1s.
	FailoverLag time.Duration

	// restartPause stretches the restart's outage: the server stays down
	// this long before it starts again. Tests use it to stand for a slow
	// machine.
	restartPause time.Duration
}

func (c Config) withDefaults() Config {
	c.Orders = cmp.Or(c.Orders, 300)
	c.LoginPairs = cmp.Or(c.LoginPairs, 30)
	c.LoginsPerPair = cmp.Or(c.LoginsPerPair, 8)
	c.Concurrency = cmp.Or(c.Concurrency, 32)
	c.TimeLimit = cmp.Or(c.TimeLimit, 60*time.Second)
	c.PoolSize = cmp.Or(c.PoolSize, 8)
	c.StatementTimeout = cmp.Or(c.StatementTimeout, 2*time.Second)
	c.LockTimeout = cmp.Or(c.LockTimeout, time.Second)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, 10*time.Second)
	c.Lease = cmp.Or(c.Lease, 2*c.StatementTimeout+time.Second)
	c.RestartLease = cmp.Or(c.RestartLease, 5*time.Second)
	c.FailoverLag = cmp.Or(c.FailoverLag, time.Second)
	return c
}
