package pgtest

import (
	"context"
	"errors"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // The second driver, chosen by TEST_DB_DRIVER.
	"github.com/peterldowns/pgtestdb"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/pgcluster"
)

// Driver returns the database/sql driver the tests' pools use:
// TEST_DB_DRIVER when set ("postgres" for lib/pq, "pgx" for pgx's stdlib),
// else lib/pq. make test runs the service suites under each.
func Driver() string {
	if d := os.Getenv("TEST_DB_DRIVER"); d != "" {
		return d
	}
	return database.DriverPQ
}

// Bouncer is a PgBouncer in front of the test server.
type Bouncer struct {
	*pgcluster.Bouncer
}

var (
	bouncerMu sync.Mutex
	bouncers  = map[string]*pgcluster.Bouncer{}
)

// StartBouncer returns a PgBouncer in front of the test server in the
// given pool mode ([pgcluster.PoolTransaction] or [pgcluster.PoolSession])
// with poolSize server connections per database, started once per test
// binary for each mode and size and stopped by [Main]. The test fails with
// one line saying what to install when there is no pgbouncer. Extra roles
// it must let in are passed as users (role to password).
func StartBouncer(t testing.TB, mode string, poolSize int, users map[string]string) *Bouncer {
	t.Helper()
	s := Start(t)
	key := mode + "/" + strconv.Itoa(poolSize)
	for u := range users {
		key += "/" + u
	}
	bouncerMu.Lock()
	defer bouncerMu.Unlock()
	if b := bouncers[key]; b != nil {
		return &Bouncer{b}
	}
	all := map[string]string{
		pgtestdb.DefaultRoleUsername: pgtestdb.DefaultRolePassword,
		s.adminUser():                s.adminPassword(),
	}
	for u, p := range users {
		all[u] = p
	}
	b, err := pgcluster.StartBouncer(context.Background(), pgcluster.BouncerOptions{
		Host: s.conf.Host, Port: atoi(s.conf.Port), Users: all, PoolMode: mode, PoolSize: poolSize,
	})
	if errors.Is(err, pgcluster.ErrNoBouncer) {
		t.Fatalf("pgtest: %v", err)
	}
	if err != nil {
		t.Fatalf("pgtest: start pgbouncer: %v", err)
	}
	bouncers[key] = b
	return &Bouncer{b}
}

// URL returns dbURL (a URL of the test server) pointed at the bouncer,
// with the given extra query parameters.
func (b *Bouncer) URL(t testing.TB, dbURL string, params ...string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	u.Host = b.Addr()
	q := u.Query()
	for i := 0; i+1 < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func stopBouncers() {
	bouncerMu.Lock()
	defer bouncerMu.Unlock()
	for k, b := range bouncers {
		_ = b.Stop()
		delete(bouncers, k)
	}
}

func (s *Server) adminUser() string {
	u, _ := url.Parse(s.AdminURL)
	return u.User.Username()
}

func (s *Server) adminPassword() string {
	u, _ := url.Parse(s.AdminURL)
	p, _ := u.User.Password()
	return p
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// ThroughBouncer returns dbURL, a URL of the test server, rewritten to go
// through a PgBouncer of its own in the given pool mode, which lets in
// dbURL's role and is stopped when the test ends. Unlike [StartBouncer],
// whose bouncers the tests of a binary share, nothing else uses it: tests
// of what a pooler leaves behind (a lock held by an idle server
// connection) see only their own traffic.
func ThroughBouncer(t testing.TB, dbURL, mode string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	pw, _ := u.User.Password()
	b, err := pgcluster.StartBouncer(context.Background(), pgcluster.BouncerOptions{
		Host: u.Hostname(), Port: atoi(u.Port()), Users: map[string]string{u.User.Username(): pw}, PoolMode: mode,
	})
	if errors.Is(err, pgcluster.ErrNoBouncer) {
		t.Fatalf("pgtest: %v", err)
	}
	if err != nil {
		t.Fatalf("pgtest: start pgbouncer: %v", err)
	}
	t.Cleanup(func() { _ = b.Stop() })
	u.Host = b.Addr()
	return u.String()
}
