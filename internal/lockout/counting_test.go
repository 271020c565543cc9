package lockout_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/lockout"
	"github.com/klozd/api/internal/pgtest"
)

// Check is one query and RecordFailure one statement (no transaction) for
// a known IP; for an unknown IP RecordFailure is one short transaction.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	db, n := pgtest.Counting(t, pgtest.URL(t))
	db.SetMaxOpenConns(1)
	require.NoError(t, db.Ping())

	s, err := lockout.New(db, lockout.Config{})
	require.NoError(t, err)
	ctx := context.Background()
	type cost struct{ statements, prepares, begins int64 }
	measure := func(f func()) cost {
		s0, p0, b0 := n.Statements.Load(), n.Prepares.Load(), n.Begins.Load()
		f()
		return cost{n.Statements.Load() - s0, n.Prepares.Load() - p0, n.Begins.Load() - b0}
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
