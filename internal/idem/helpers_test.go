package idem

import (
	"database/sql"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// clock is a settable clock for lease and TTL tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// bounded returns a pool on url with at most n connections.
func bounded(t testing.TB, url string, n int) *sql.DB {
	t.Helper()
	db := pgtest.Open(t, url)
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	return db
}

// deadDB returns a pool on a port nothing listens on: a store that is down.
func deadDB(t testing.TB) *sql.DB {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	db, err := database.Open("postgres://idem:idem@" + addr + "/idem?connect_timeout=2")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}
