package database_test

import (
	"context"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/faultproxy"
	"github.com/klozd/api/internal/pgtest"
)

// bound is how long past its deadline the tests let a call take before
// they call it stuck: far above database.DeadlineSlack, so a loaded
// machine does not fail them, and far below what a driver blocked on the
// network takes (forever, until the fault ends).
const bound = 3 * time.Second

// returnsBy runs f with a context that ends after d and fails the test
// unless f returns, with the context's error, by d + bound.
func returnsBy(t *testing.T, d time.Duration, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	select {
	case err := <-done:
		require.Error(t, err)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(d + bound):
		t.Fatalf("the call had not returned %s after its %s deadline", bound, d)
	}
}

// A server that accepts connections and never answers: connecting ends
// with the caller's context.
func TestConnectReturnsByDeadline(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var accepted []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c) // held open, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range accepted {
			_ = c.Close()
		}
	})
	for _, drv := range []string{database.DriverPQ, database.DriverPGX} {
		t.Run(drv, func(t *testing.T) {
			t.Parallel()
			db, err := database.OpenConfig("postgres://u@"+l.Addr().String()+"/db?sslmode=disable", database.Config{Driver: drv})
			require.NoError(t, err)
			defer db.Close()
			returnsBy(t, 300*time.Millisecond, func(ctx context.Context) error {
				return db.QueryRowContext(ctx, `SELECT 1`).Scan(new(int))
			})
		})
	}
}

// An established connection whose backend is frozen (SIGSTOP, as a
// partition or a stalled host would leave it): a statement, a
// transaction's commit and a read of rows end with the caller's context,
// and the connection is not used again.
func TestFrozenBackendReturnsByDeadline(t *testing.T) {
	t.Parallel()
	for _, drv := range []string{database.DriverPQ, database.DriverPGX} {
		t.Run(drv, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, err := database.OpenConfig(pgtest.URL(t), database.Config{Driver: drv, MaxOpenConns: 1})
			require.NoError(t, err)
			defer db.Close()
			for name, call := range map[string]func(ctx context.Context) error{
				"query": func(ctx context.Context) error {
					return db.QueryRowContext(ctx, `SELECT $1::int`, 1).Scan(new(int))
				},
				"exec": func(ctx context.Context) error {
					_, err := db.ExecContext(ctx, `SELECT $1::int`, 1)
					return err
				},
				"begin": func(ctx context.Context) error {
					tx, err := db.BeginTx(ctx, nil)
					if err == nil {
						_ = tx.Rollback()
					}
					return err
				},
			} {
				t.Run(name, func(t *testing.T) {
					thaw := pgtest.Freeze(t, db)
					returnsBy(t, 300*time.Millisecond, call)
					thaw()
					var n int
					require.NoError(t, db.QueryRowContext(ctx, `SELECT 1`).Scan(&n), "the pool goes on on a new connection")
				})
			}
			t.Run("commit after the freeze", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				tx, err := db.BeginTx(ctx, nil)
				require.NoError(t, err)
				_, err = tx.ExecContext(ctx, `SELECT 1`)
				require.NoError(t, err)
				pgtest.Freeze(t, tx)
				done := make(chan error, 1)
				go func() { done <- tx.Commit() }()
				select {
				case err := <-done:
					assert.Error(t, err, "the commit did not reach the frozen backend")
				case <-time.After(300*time.Millisecond + bound):
					t.Fatal("the commit had not returned after its transaction's deadline")
				}
			})
		})
	}
}

// A write whose reply is lost (the proxy drops it and closes the
// connection after the server committed) is not run again: the caller
// hears that its outcome is unknown, and the row is written once.
func TestLostReplyIsNotRunAgain(t *testing.T) {
	t.Parallel()
	for _, drv := range []string{database.DriverPQ, database.DriverPGX} {
		t.Run(drv, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dbURL := pgtest.URL(t)
			u, err := url.Parse(dbURL)
			require.NoError(t, err)
			p, err := faultproxy.Start(u.Host)
			require.NoError(t, err)
			t.Cleanup(func() { _ = p.Close() })
			u.Host = p.Addr()
			db, err := database.OpenConfig(u.String(), database.Config{Driver: drv, MaxOpenConns: 1})
			require.NoError(t, err)
			defer db.Close()
			_, err = db.ExecContext(ctx, `CREATE TABLE lost_reply (n int)`)
			require.NoError(t, err)
			// No parameters: one round trip, whose reply carries the
			// commit (lib/pq's simple protocol; pgx's cached statement,
			// warmed by the first run).
			for i, write := range []func() error{
				func() error { _, err := db.ExecContext(ctx, `INSERT INTO lost_reply VALUES (1)`); return err },
				func() error {
					return db.QueryRowContext(ctx, `INSERT INTO lost_reply VALUES (2) RETURNING n`).Scan(new(int))
				},
			} {
				require.NoError(t, write(), "write %d, warming up", i)
				p.DropNextReply()
				err := write()
				if drv == database.DriverPQ {
					// pgx never runs a sent statement again by itself; where
					// its reply lands between chunks the write may succeed.
					require.Error(t, err, "write %d: the reply was lost", i)
					assert.ErrorIs(t, err, database.ErrOutcomeUnknown, "write %d", i)
				}
			}
			var n int
			require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM lost_reply`).Scan(&n))
			assert.Equal(t, 4, n, "each write ran once: twice each, counting the warm-up")
		})
	}
}
