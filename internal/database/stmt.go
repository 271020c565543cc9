package database

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// Statements runs a service's fixed SQL on a pool. On a pool opened
// without pgbouncer=true each statement is prepared on first use and kept:
// the server parses and plans it once per connection (database/sql
// prepares it again on each connection it runs on), and a call is one
// round trip of Bind and Execute. On a pooler-safe pool ([PoolerSafe])
// nothing is prepared: each call sends the statement as an unnamed one,
// still in one round trip.
//
// Preparing is lazy, so a service starts while the database is down, and
// a failed prepare is not kept, so it recovers. No lock is held across a
// round trip: while the database is slow each caller waits only for its
// own prepare, bounded by its own context; callers racing on first use may
// each prepare, the first to finish is kept and the others close theirs.
// The zero value is not usable; call [NewStatements].
type Statements struct {
	db      *sql.DB
	prepare bool
	mu      sync.Mutex
	m       map[string]*sql.Stmt
}

// NewStatements returns the statements of a service on db.
func NewStatements(db *sql.DB) *Statements {
	return &Statements{db: db, prepare: !PoolerSafe(db)}
}

// Stmt is one statement of [Statements], ready to run on the pool or, with
// [Stmt.In], in a transaction.
type Stmt struct {
	query string
	db    *sql.DB
	tx    *sql.Tx
	st    *sql.Stmt // nil in pooler-safe mode
}

// Get returns the statement for query, preparing it unless the pool is
// pooler-safe. Get the statements a transaction uses before beginning it:
// preparing takes a connection from the pool, which a transaction holding
// the last one would wait for forever.
func (s *Statements) Get(ctx context.Context, query string) (Stmt, error) {
	if !s.prepare {
		return Stmt{query: query, db: s.db}, nil
	}
	s.mu.Lock()
	st := s.m[query]
	s.mu.Unlock()
	if st != nil {
		return Stmt{query: query, st: st}, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return Stmt{}, err
	}
	s.mu.Lock()
	if won, ok := s.m[query]; ok {
		s.mu.Unlock()
		_ = st.Close() // another caller's statement won
		return Stmt{query: query, st: won}, nil
	}
	if s.m == nil {
		s.m = make(map[string]*sql.Stmt)
	}
	s.m[query] = st
	s.mu.Unlock()
	return Stmt{query: query, st: st}, nil
}

// Scan gets query, runs it with args and scans its one row into dest. It
// returns sql.ErrNoRows when there is no row.
func (s *Statements) Scan(ctx context.Context, query string, args []any, dest ...any) error {
	st, err := s.Get(ctx, query)
	if err != nil {
		return err
	}
	return st.QueryRow(ctx, args...).Scan(dest...)
}

// Exec gets query and runs it with args.
func (s *Statements) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := s.Get(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.Exec(ctx, args...)
}

// Close releases the prepared statements. It does not close the pool; a
// Statements used after Close prepares again.
func (s *Statements) Close() error {
	s.mu.Lock()
	m := s.m
	s.m = nil
	s.mu.Unlock()
	var errs []error
	for _, st := range m {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}

// In returns st bound to tx. A prepared statement is bound with
// (*sql.Tx).StmtContext, which tx closes when it ends.
func (st Stmt) In(ctx context.Context, tx *sql.Tx) Stmt {
	if st.st != nil {
		return Stmt{query: st.query, st: tx.StmtContext(ctx, st.st)}
	}
	return Stmt{query: st.query, tx: tx}
}

// QueryRow runs the statement and returns its first row.
func (st Stmt) QueryRow(ctx context.Context, args ...any) *sql.Row {
	switch {
	case st.st != nil:
		return st.st.QueryRowContext(ctx, args...)
	case st.tx != nil:
		return st.tx.QueryRowContext(ctx, st.query, args...)
	}
	return st.db.QueryRowContext(ctx, st.query, args...)
}

// Exec runs the statement.
func (st Stmt) Exec(ctx context.Context, args ...any) (sql.Result, error) {
	switch {
	case st.st != nil:
		return st.st.ExecContext(ctx, args...)
	case st.tx != nil:
		return st.tx.ExecContext(ctx, st.query, args...)
	}
	return st.db.ExecContext(ctx, st.query, args...)
}
