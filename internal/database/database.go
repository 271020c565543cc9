// Package database opens connections the way the schema needs them.
//
// The time columns are timestamp(3) without time zone: PostgreSQL stores the
// wall-clock value it is given and evaluates DEFAULT CURRENT_TIMESTAMP in the
// session's time zone. Sessions opened here therefore run with timezone=UTC,
// and the ent schema hook writes every time.Time as UTC milliseconds, so the
// columns hold UTC whatever the process's TZ or the server's TimeZone.
//
// [OpenConfig] also decides how the services' statements travel: prepared
// once per connection by default, or unnamed in one round trip on a URL
// with pgbouncer=true, for PgBouncer's transaction pooling ([Statements]);
// which driver runs them (lib/pq, or pgx's stdlib); and how a URL naming a
// primary and its standbys finds the writable one. docs/topologies.md says
// what to set for each topology.
package database

import (
	"database/sql"
	"errors"
	"net"
	"net/url"
	"strings"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	_ "github.com/lib/pq" // The postgres driver.

	"github.com/klozd/api/ent"
)

// Open opens a pool on rawURL with [DSN]'s settings. It does not connect;
// call PingContext to check the server is reachable.
func Open(rawURL string) (*sql.DB, error) {
	return OpenConfig(rawURL, Config{})
}

// Config holds the pool and session limits that decide how a service
// behaves when the database is slow or busy. The zero value leaves each
// limit to database/sql and the server.
//
// Retries and deadlines: on a pool opened by [OpenConfig], database/sql
// runs a statement again on a new connection only when nothing of it was
// sent (a connection found dead at reuse, one the server ended while it was
// idle, a session that turned read-only, which refuses a write before it
// runs); a statement whose connection broke after it was sent fails with
// [ErrOutcomeUnknown] and is never run again, so no write runs twice. Every
// call returns by its context's deadline plus [DeadlineSlack], whatever the
// network or the server does, and the connection is then dropped. The
// services give each call a deadline when its context has none, answer
// 503 and fail closed on a failure, bounded by StatementTimeout,
// LockTimeout and the caller's context.
type Config struct {
	// Driver is the database/sql driver: [DriverPQ] ("postgres", lib/pq,
	// the default) or [DriverPGX] ("pgx", which the program registers by
	// importing github.com/jackc/pgx/v5/stdlib).
	Driver string
	// MaxOpenConns caps the pool (sql.DB.SetMaxOpenConns). Callers beyond it
	// wait for a free connection until their context ends. Default: no cap.
	MaxOpenConns int
	// MaxIdleConns is kept at most idle. Default: database/sql's, 2.
	MaxIdleConns int
	// StatementTimeout is the server's statement_timeout for each session:
	// a statement running longer is cancelled with SQLSTATE 57014. It is
	// sent at connection start, except in pooler-safe mode (pgbouncer=true),
	// where PgBouncer refuses it as a startup parameter: there the role
	// must carry it (ALTER ROLE name SET statement_timeout = '2s'), and
	// each new connection checks that the server's value is set and no
	// longer than this, failing with an error that says what to run.
	StatementTimeout time.Duration
	// LockTimeout is the server's lock_timeout: a statement waiting longer
	// for a row, table or advisory lock fails with SQLSTATE 55P03. It
	// travels, and is checked, as StatementTimeout is.
	LockTimeout time.Duration
	// ConnectTimeout bounds each new connection. Default: none (lib/pq).
	ConnectTimeout time.Duration
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
	if !isPostgresURL(rawURL) {
		return "<not a postgres:// URL>"
	}
	u, hosts, ports, err := parseURL(rawURL)
	if err != nil {
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
	if len(hosts) == 0 {
		return u.String()
	}
	// Put the host list back where the URL had it.
	list := make([]string, len(hosts))
	for i, h := range hosts {
		list[i] = net.JoinHostPort(h, ports[i])
	}
	v := *u
	v.User, v.Host = nil, ""
	user := ""
	if u.User != nil {
		user = u.User.String() + "@"
	}
	_, tail, _ := strings.Cut(v.String(), "://")
	return u.Scheme + "://" + user + strings.Join(list, ",") + tail
}

func isPostgresURL(raw string) bool {
	return strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://")
}
