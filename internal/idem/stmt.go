package idem

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// stmts caches the Store's prepared statements. Preparing saves a round
// trip per statement with lib/pq (Bind+Execute instead of Parse+Describe,
// then Bind+Execute) and lets PostgreSQL reuse the plan of the claim
// statement, whose planning otherwise costs more than its execution.
// database/sql re-prepares a statement on each connection that first runs
// it. A failed prepare is not cached, so a store that was down recovers.
type stmts struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	s.stmts.mu.Lock()
	defer s.stmts.mu.Unlock()
	if st, ok := s.stmts.m[query]; ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if s.stmts.m == nil {
		s.stmts.m = make(map[string]*sql.Stmt)
	}
	s.stmts.m[query] = st
	return st, nil
}

// Close releases the Store's prepared statements. It does not close the
// *sql.DB, which the caller owns; a Store used after Close prepares again.
func (s *Store) Close() error {
	s.stmts.mu.Lock()
	defer s.stmts.mu.Unlock()
	var first error
	for q, st := range s.stmts.m {
		if err := st.Close(); err != nil && first == nil {
			first = fmt.Errorf("idem: close statement: %w", err)
		}
		delete(s.stmts.m, q)
	}
	return first
}
