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
//
// The mutex guards the map only and is never held across a round trip:
// while the database is down, each request's prepare fails on its own,
// bounded by its own context, instead of queueing behind one prepare.
// Callers that race to prepare the same statement all prepare it; the
// first to store it wins and the others close theirs.
type stmts struct {
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if st := s.stmts.get(query); st != nil {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if won := s.stmts.put(query, st); won != st {
		_ = st.Close()
		return won, nil
	}
	return st, nil
}

func (c *stmts) get(query string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[query]
}

// put stores st for query unless another statement got there first, and
// returns the statement that is cached.
func (c *stmts) put(query string, st *sql.Stmt) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if won, ok := c.m[query]; ok {
		return won
	}
	if c.m == nil {
		c.m = make(map[string]*sql.Stmt)
	}
	c.m[query] = st
	return st
}

// Close releases the Store's prepared statements. It does not close the
// *sql.DB, which the caller owns; a Store used after Close prepares again.
func (s *Store) Close() error {
	s.stmts.mu.Lock()
	m := s.stmts.m
	s.stmts.m = nil
	s.stmts.mu.Unlock()
	var first error
	for _, st := range m {
		if err := st.Close(); err != nil && first == nil {
			first = fmt.Errorf("idem: close statement: %w", err)
		}
	}
	return first
}
