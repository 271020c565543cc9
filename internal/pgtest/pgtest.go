// Package pgtest gives each test its own PostgreSQL database with every
// migration applied, in the manner of pgtestdb (which it builds on): the
// migrations run once into a template database, and each test gets a
// CREATE DATABASE … TEMPLATE clone, so tests run in parallel without seeing
// each other.
//
// The server is TEST_DATABASE_URL (or DATABASE_URL) when set, a role there
// needing CREATEDB and CREATEROLE; otherwise a private cluster started from
// the machine's PostgreSQL binaries once per test binary. A package using
// pgtest stops that cluster by calling [Main] from its TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// A failed test's database is not dropped, and its URL is logged. On
// TEST_DATABASE_URL's server it stays for good, to be looked at after the
// run; on the local cluster it lasts only until the test binary ends, since
// [Main] removes the cluster with all its databases (a binary that dies
// without reaching the end of Main leaves the cluster's files until the next
// cluster is started).
package pgtest

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/peterldowns/pgtestdb"

	"github.com/klozd/api/ent"
	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/migration"
	"github.com/klozd/api/internal/pgcluster"
)

// Server is the PostgreSQL server the tests of this binary use.
type Server struct {
	// AdminURL connects as a superuser (or the role of TEST_DATABASE_URL) to
	// the server's maintenance database.
	AdminURL string
	// Cluster is the local cluster pgtest started, nil when the server came
	// from TEST_DATABASE_URL or DATABASE_URL. Fault tests restart it.
	Cluster *pgcluster.Cluster
	conf    pgtestdb.Config
}

var (
	once    sync.Once
	server  *Server
	initErr error
)

// Main runs the package's tests and then stops the cluster, if one was
// started. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	stopBouncers()
	if server != nil && server.Cluster != nil {
		_ = server.Cluster.Stop()
	}
	os.Exit(code)
}

// Start returns the server, starting the local cluster on first use. Tests
// fail with one line saying what to install or set when there is none.
func Start(t testing.TB) *Server {
	t.Helper()
	once.Do(func() { server, initErr = start() })
	if initErr != nil {
		hint := ""
		if errors.Is(initErr, pgcluster.ErrNoBinaries) {
			hint = ", or set TEST_DATABASE_URL to a server (a role with CREATEDB and CREATEROLE)"
		}
		t.Fatalf("pgtest: no PostgreSQL for tests: %v%s", initErr, hint)
	}
	return server
}

func start() (*Server, error) {
	raw := os.Getenv("TEST_DATABASE_URL")
	if raw == "" {
		raw = os.Getenv("DATABASE_URL")
	}
	s := &Server{}
	if raw == "" {
		c, err := pgcluster.Start(context.Background(), pgcluster.Options{})
		if err != nil {
			return nil, err
		}
		s.Cluster = c
		raw = c.URL("postgres")
	}
	u, err := url.Parse(raw)
	opts := u.Query() // nil-safe: u is nil only with err set
	if err != nil || (u.Host == "" && opts.Get("host") == "") {
		return nil, fmt.Errorf("TEST_DATABASE_URL must be a URL such as postgres://user:pass@localhost:5432/postgres?sslmode=disable")
	}
	host := u.Hostname()
	if opts.Get("sslmode") == "" && (host == "" || database.IsLocalHost(host)) {
		opts.Set("sslmode", "disable")
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6
	}
	// pgtestdb joins these into a URL as they are: escape what a URL
	// needs escaped, so that a password with '@', '/' or '#' stays one.
	user, pw := u.User.Username(), ""
	if p, ok := u.User.Password(); ok {
		pw = strings.TrimPrefix(url.UserPassword(user, p).String(), url.User(user).String()+":")
	}
	s.conf = pgtestdb.Config{
		DriverName:                "postgres",
		Host:                      host,
		Port:                      cmp.Or(u.Port(), "5432"),
		User:                      url.User(user).String(),
		Password:                  pw,
		Database:                  cmp.Or(strings.TrimPrefix(u.Path, "/"), "postgres"),
		Options:                   opts.Encode(),
		ForceTerminateConnections: true,
	}
	s.AdminURL = s.conf.URL()
	db, err := sql.Open("postgres", s.AdminURL)
	if err == nil {
		err = db.Ping()
		_ = db.Close()
	}
	if err != nil {
		if s.Cluster != nil {
			_ = s.Cluster.Stop()
		}
		return nil, fmt.Errorf("cannot connect to %s: %w", database.Redact(raw), err)
	}
	return s, nil
}

// URL returns the connection URL of a new database, private to t, with all
// migrations applied. Connections through it use timezone=UTC.
func URL(t testing.TB) string {
	t.Helper()
	s := Start(t)
	return withUTC(pgtestdb.Custom(t, s.conf, migrator{}).URL())
}

// EmptyURL returns the URL of a new empty database private to t.
func EmptyURL(t testing.TB) string {
	t.Helper()
	s := Start(t)
	return withUTC(pgtestdb.Custom(t, s.conf, pgtestdb.NoopMigrator{}).URL())
}

// DB returns a pool on a new migrated database private to t, closed when
// the test ends.
func DB(t testing.TB) *sql.DB {
	t.Helper()
	return Open(t, URL(t))
}

// Open returns a pool on url (opened by [database.OpenConfig] with the
// tests' [Driver]), closed when the test ends. Each call is an independent
// pool, as a separate instance of a service would have.
func Open(t testing.TB, url string) *sql.DB {
	t.Helper()
	db, err := database.OpenConfig(url, database.Config{Driver: Driver()})
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// Client returns an ent client on a new migrated database private to t.
func Client(t testing.TB) *ent.Client {
	t.Helper()
	return database.NewClient(DB(t))
}

func withUTC(raw string) string {
	dsn, err := database.DSN(raw)
	if err != nil {
		return raw
	}
	return dsn
}

// migrator applies the embedded migrations to the template database.
type migrator struct{}

func (migrator) Hash() (string, error) {
	dir, err := migration.Embedded()
	if err != nil {
		return "", err
	}
	sum, err := dir.Checksum()
	if err != nil {
		return "", err
	}
	return "klozd-" + sum.Sum(), nil
}

func (migrator) Migrate(ctx context.Context, db *sql.DB, _ pgtestdb.Config) error {
	dir, err := migration.Embedded()
	if err != nil {
		return err
	}
	_, err = migration.Apply(ctx, db, dir, migration.ApplyOptions{})
	return err
}
