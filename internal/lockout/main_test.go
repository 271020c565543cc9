package lockout_test

import (
	"context"
	"database/sql"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/lockout"
	"github.com/klozd/api/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// clock is a fake clock tests move by hand. Its location is not UTC, so
// the tests also prove the service writes UTC whatever the clock says.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

var tokyo = time.FixedZone("JST", 9*3600)

func newClock() *clock {
	return &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 123456789, tokyo)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newService returns a service with cfg on a fresh database, its pool and
// its clock.
func newService(t testing.TB, cfg lockout.Config) (*lockout.Service, *sql.DB, *clock) {
	t.Helper()
	db := pgtest.DB(t)
	db.SetMaxOpenConns(20)
	c := newClock()
	if cfg.Now == nil {
		cfg.Now = c.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout == 0 {
		// The tests check counts, not latency: a loaded machine may take
		// longer than the default.
		cfg.Timeout = time.Minute
	}
	s, err := lockout.New(db, cfg)
	require.NoError(t, err)
	return s, db, c
}

type row struct {
	Email       string
	IP          sql.NullString
	Failures    int
	LockedUntil sql.NullTime
	Last        time.Time
}

// rows returns every auth_attempts row, ordered by email and ip.
func rows(t testing.TB, db *sql.DB) []row {
	t.Helper()
	rs, err := db.QueryContext(context.Background(),
		`SELECT email, ip, "failuresCount", "lockedUntil", "lastAttemptAt" FROM auth_attempts ORDER BY email, ip NULLS FIRST`)
	require.NoError(t, err)
	defer rs.Close()
	var out []row
	for rs.Next() {
		var r row
		require.NoError(t, rs.Scan(&r.Email, &r.IP, &r.Failures, &r.LockedUntil, &r.Last))
		out = append(out, r)
	}
	require.NoError(t, rs.Err())
	return out
}
