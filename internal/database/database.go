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
	"fmt"
	"net/url"
	"strings"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	_ "github.com/lib/pq" // The postgres driver.

	"github.com/klozd/api/ent"
)

// DSN returns rawURL with timezone=UTC set, overriding any other time zone.
// It accepts postgres:// and postgresql:// URLs.
func DSN(rawURL string) (string, error) {
	if !strings.HasPrefix(rawURL, "postgres://") && !strings.HasPrefix(rawURL, "postgresql://") {
		return "", fmt.Errorf("database: %q is not a postgres:// URL", redact(rawURL))
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("database: parse URL: %w", err)
	}
	q := u.Query()
	q.Set("timezone", "UTC")
	if q.Get("sslmode") == "" && isLocal(u.Hostname()) {
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Open opens a pool on rawURL with [DSN]'s settings. It does not connect;
// call PingContext to check the server is reachable.
func Open(rawURL string) (*sql.DB, error) {
	dsn, err := DSN(rawURL)
	if err != nil {
		return nil, err
	}
	return sql.Open("postgres", dsn)
}

// NewClient returns an ent client on db.
func NewClient(db *sql.DB) *ent.Client {
	return ent.NewClient(ent.Driver(entsql.OpenDB(dialect.Postgres, db)))
}

func isLocal(host string) bool {
	return host == "" || host == "localhost" || host == "127.0.0.1" || host == "::1" || strings.HasPrefix(host, "/")
}

func redact(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "<unparsable>"
}
