package lockout_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/lockout"
	"github.com/klozd/api/internal/pgtest"
)

// countingDriver is lib/pq counting, per connection string, the statements
// executed, the statements prepared and the transactions begun.
type countingDriver struct{}

type counts struct{ statements, prepares, begins atomic.Int64 }

var (
	registerCounting sync.Once
	countsByDSN      sync.Map // dsn → *counts
)

func (countingDriver) Open(dsn string) (driver.Conn, error) {
	c, err := pq.Driver{}.Open(dsn)
	if err != nil {
		return nil, err
	}
	n, _ := countsByDSN.LoadOrStore(dsn, &counts{})
	return &countingConn{Conn: c, n: n.(*counts)}, nil
}

type countingConn struct {
	driver.Conn
	n *counts
}

func (c *countingConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	c.n.statements.Add(1)
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, q, args)
}

func (c *countingConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	c.n.statements.Add(1)
	return c.Conn.(driver.ExecerContext).ExecContext(ctx, q, args)
}

func (c *countingConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	c.n.prepares.Add(1)
	st, err := c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return &countingStmt{Stmt: st, n: c.n}, nil
}

type countingStmt struct {
	driver.Stmt
	n *counts
}

func (s *countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.n.statements.Add(1)
	return s.Stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
}

func (s *countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.n.statements.Add(1)
	return s.Stmt.(driver.StmtExecContext).ExecContext(ctx, args)
}

func (c *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.n.begins.Add(1)
	return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

func (c *countingConn) ResetSession(ctx context.Context) error {
	return c.Conn.(driver.SessionResetter).ResetSession(ctx)
}

func (c *countingConn) IsValid() bool { return c.Conn.(driver.Validator).IsValid() }

// Check is one query and RecordFailure one statement (no transaction) for
// a known IP; for an unknown IP RecordFailure is one short transaction.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	registerCounting.Do(func() { sql.Register("postgres-counting", countingDriver{}) })
	dsn, err := database.DSN(pgtest.URL(t))
	require.NoError(t, err)
	db, err := sql.Open("postgres-counting", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(1)
	require.NoError(t, db.Ping())
	v, ok := countsByDSN.Load(dsn)
	require.True(t, ok)
	n := v.(*counts)

	s, err := lockout.New(db, lockout.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	type cost struct{ statements, prepares, begins int64 }
	measure := func(f func()) cost {
		s0, p0, b0 := n.statements.Load(), n.prepares.Load(), n.begins.Load()
		f()
		return cost{n.statements.Load() - s0, n.prepares.Load() - p0, n.begins.Load() - b0}
	}
	check := func() {
		_, err := s.Check(ctx, ann, "192.0.2.1")
		require.NoError(t, err)
	}
	failure := func() {
		_, err := s.RecordFailure(ctx, ann, "192.0.2.1")
		require.NoError(t, err)
	}
	// The first call on a connection prepares the statement once.
	assert.Equal(t, cost{1, 1, 0}, measure(check), "first Check: prepare, one query")
	assert.Equal(t, cost{1, 1, 0}, measure(failure), "first RecordFailure: prepare, one statement")
	for i := range 6 { // through the lock and past it
		assert.Equal(t, cost{1, 0, 0}, measure(check), "Check %d: one query", i)
		assert.Equal(t, cost{1, 0, 0}, measure(failure), "RecordFailure %d: one statement, no transaction", i)
	}
	nullIP := func() {
		_, err := s.RecordFailure(ctx, ann, "")
		require.NoError(t, err)
	}
	assert.Equal(t, cost{3, 2, 1}, measure(nullIP), "unknown IP, new row: lock, update, insert in one transaction")
	assert.Equal(t, cost{2, 0, 1}, measure(nullIP), "unknown IP, existing row: lock, update in one transaction")
}
