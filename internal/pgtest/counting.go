package pgtest

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"sync/atomic"
	"testing"

	"github.com/lib/pq"

	"github.com/klozd/api/internal/database"
)

// Counts are the round trips made through a pool from [Counting].
type Counts struct {
	// Statements counts queries and execs, ad hoc or prepared.
	Statements atomic.Int64
	// Prepares counts statements prepared.
	Prepares atomic.Int64
	// Begins counts transactions begun.
	Begins atomic.Int64
}

// Counting returns a pool on url (with [database.DSN]'s settings) whose
// connections count what they send, for tests that prove how many round
// trips an operation takes. It is closed when the test ends.
func Counting(t testing.TB, url string) (*sql.DB, *Counts) {
	t.Helper()
	dsn, err := database.DSN(url)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	c, err := pq.NewConnector(dsn)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	n := &Counts{}
	db := sql.OpenDB(countingConnector{Connector: c, n: n})
	t.Cleanup(func() { _ = db.Close() })
	return db, n
}

type countingConnector struct {
	*pq.Connector
	n *Counts
}

func (c countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, n: c.n}, nil
}

type countingConn struct {
	driver.Conn
	n *Counts
}

func (c *countingConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	c.n.Statements.Add(1)
	return c.Conn.(driver.QueryerContext).QueryContext(ctx, q, args)
}

func (c *countingConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	c.n.Statements.Add(1)
	return c.Conn.(driver.ExecerContext).ExecContext(ctx, q, args)
}

func (c *countingConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	c.n.Prepares.Add(1)
	st, err := c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	return &countingStmt{Stmt: st, n: c.n}, nil
}

func (c *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	c.n.Begins.Add(1)
	return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
}

func (c *countingConn) ResetSession(ctx context.Context) error {
	return c.Conn.(driver.SessionResetter).ResetSession(ctx)
}

func (c *countingConn) IsValid() bool { return c.Conn.(driver.Validator).IsValid() }

type countingStmt struct {
	driver.Stmt
	n *Counts
}

func (s *countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.n.Statements.Add(1)
	return s.Stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
}

func (s *countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.n.Statements.Add(1)
	return s.Stmt.(driver.StmtExecContext).ExecContext(ctx, args)
}
