package lockout

import (
	"context"
	"database/sql"
	"sync/atomic"
)

// stmt is a statement prepared on first use, so that the server parses and
// plans the long lockout SQL once per connection instead of at every call
// (database/sql prepares it again on each connection it runs on).
// Preparing is lazy, so New does not touch the database, and retried after
// a failure, so the service starts and fails closed while it is down. Get
// a statement before beginning a transaction that uses it: preparing takes
// a connection from the pool, which a transaction holding the last one
// would wait for forever.
//
// No lock is held while preparing: while the database is down or slow,
// each caller waits only for its own attempt, bounded by its own context,
// instead of queueing behind another caller's. Callers that race on first
// use may each prepare; the first to finish is kept and the others close
// theirs.
type stmt struct {
	query string
	s     atomic.Pointer[sql.Stmt]
}

func (st *stmt) get(ctx context.Context, db *sql.DB) (*sql.Stmt, error) {
	if s := st.s.Load(); s != nil {
		return s, nil
	}
	s, err := db.PrepareContext(ctx, st.query)
	if err != nil {
		return nil, err
	}
	if st.s.CompareAndSwap(nil, s) {
		return s, nil
	}
	_ = s.Close() // another caller's statement won
	return st.s.Load(), nil
}

// scan runs st on db and scans its one row.
func (st *stmt) scan(ctx context.Context, db *sql.DB, args []any, dest ...any) error {
	s, err := st.get(ctx, db)
	if err != nil {
		return err
	}
	return s.QueryRowContext(ctx, args...).Scan(dest...)
}
