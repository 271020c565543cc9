// Package database opens connections the way the schema needs them.
//
// The time columns are timestamp(3) without time zone: PostgreSQL stores the
// wall-clock value it is given and evaluates DEFAULT CURRENT_TIMESTAMP in the
// session's time zone. Sessions opened here therefore run with timezone=UTC,
// and the ent schema hook writes every time.Time as UTC milliseconds, so the
// columns hold UTC whatever the process's TZ or the server's TimeZone.
package database

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	_ "github.com/lib/pq" // The postgres driver.

	"github.com/klozd/api/ent"
)

// DSN returns rawURL with timezone=UTC set, overriding any other time zone
// parameter, however spelt.
// It accepts postgres:// and postgresql:// URLs.
func DSN(rawURL string) (string, error) {
	if !isPostgresURL(rawURL) {
		// Not echoed: a key=value connection string holds its password in
		// plain text.
		return "", errors.New("database: the database URL is not a postgres:// URL (postgres://user:password@host:5432/dbname)")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("database: parse URL: %w", ParseError(err))
	}
	q := u.Query()
	// lib/pq sends parameters in map order, so a "TimeZone" beside our
	// "timezone" would win at random: drop every spelling first.
	for k := range q {
		if strings.EqualFold(k, "timezone") {
			delete(q, k)
		}
	}
	q.Set("timezone", "UTC")
	if q.Get("sslmode") == "" {
		// TLS is off by default only where the driver really connects
		// locally: $PGHOST may send a URL without a host elsewhere.
		if host, err := EffectiveHost(rawURL); err == nil && IsLocalHost(host) {
			q.Set("sslmode", "disable")
		}
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Open opens a pool on rawURL with [DSN]'s settings. It does not connect;
// call PingContext to check the server is reachable.
func Open(rawURL string) (*sql.DB, error) {
	return OpenConfig(rawURL, Config{})
}

// Config holds the pool and session limits that decide how a service
// behaves when the database is slow or busy. The zero value leaves each
// limit to database/sql and the server.
//
// Retries: database/sql already retries an operation on a new connection
// when the driver finds its connection broken before sending anything
// (driver.ErrBadConn), which covers connections killed while idle and a
// restarted server; the soak suite (make soak) shows both recover without
// an error reaching clients. The services do not retry a statement that may
// have run: a failure counted twice, or a claim taken twice, is worse than
// a 503 the client retries. So a fault during a statement surfaces as an
// error (the services answer 503 and fail closed), bounded in time by
// StatementTimeout, LockTimeout and the caller's context.
type Config struct {
	// MaxOpenConns caps the pool (sql.DB.SetMaxOpenConns). Callers beyond it
	// wait for a free connection until their context ends. Default: no cap.
	MaxOpenConns int
	// MaxIdleConns is kept at most idle. Default: database/sql's, 2.
	MaxIdleConns int
	// StatementTimeout is the server's statement_timeout for each session:
	// a statement running longer is cancelled with SQLSTATE 57014.
	StatementTimeout time.Duration
	// LockTimeout is the server's lock_timeout: a statement waiting longer
	// for a row or table lock fails with SQLSTATE 55P03.
	LockTimeout time.Duration
	// ConnectTimeout bounds each new connection. Default: none (lib/pq).
	ConnectTimeout time.Duration
}

// OpenConfig opens a pool on rawURL with [DSN]'s settings and cfg's limits.
func OpenConfig(rawURL string, cfg Config) (*sql.DB, error) {
	dsn, err := DSN(rawURL)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(dsn) // DSN produced it
	q := u.Query()
	if cfg.StatementTimeout > 0 {
		q.Set("statement_timeout", strconv.FormatInt(cfg.StatementTimeout.Milliseconds(), 10))
	}
	if cfg.LockTimeout > 0 {
		q.Set("lock_timeout", strconv.FormatInt(cfg.LockTimeout.Milliseconds(), 10))
	}
	if cfg.ConnectTimeout > 0 {
		q.Set("connect_timeout", strconv.Itoa(max(1, int(cfg.ConnectTimeout.Seconds()))))
	}
	u.RawQuery = q.Encode()
	db, err := sql.Open("postgres", u.String())
	if err != nil {
		return nil, fmt.Errorf("database: open: %w", err)
	}
	if cfg.MaxOpenConns > 0 {
		db.SetMaxOpenConns(cfg.MaxOpenConns)
	}
	if cfg.MaxIdleConns > 0 {
		db.SetMaxIdleConns(cfg.MaxIdleConns)
	}
	return db, nil
}

// NewClient returns an ent client on db. Besides the schema's hook, which
// normalises the fields of create and update mutations, its driver passes
// every time.Time argument as UTC milliseconds, so that times written by
// paths the hook does not see (the update set of an upsert, Modify, raw
// ExecContext) are stored as the same instant too.
func NewClient(db *sql.DB) *ent.Client {
	return ent.NewClient(ent.Driver(utcDriver{entsql.OpenDB(dialect.Postgres, db)}))
}

// ParseError returns the reason of a url.Parse error without the URL, which
// may hold a password.
func ParseError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Redact returns rawURL fit for a message: the password of the user info
// and of password= and sslpassword= parameters replaced by "xxxxx". A
// string that is not a postgres:// URL is not echoed at all.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || !isPostgresURL(rawURL) {
		return "<not a postgres:// URL>"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	q := u.Query()
	secret := false
	for k := range q {
		if k == "password" || k == "sslpassword" {
			q.Set(k, "xxxxx")
			secret = true
		}
	}
	if secret {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func isPostgresURL(raw string) bool {
	return strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://")
}
