package lockout_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/lockout"
)

// A caller does not queue behind another caller's first prepare: while one
// call waits without a deadline for a connection to prepare on, others
// return when their own contexts end.
func TestPrepareRespectsEachCallersContext(t *testing.T) {
	t.Parallel()
	s, db, _ := newService(t, lockout.Config{})
	db.SetMaxOpenConns(1)
	held, err := db.Conn(context.Background()) // the pool's only connection
	require.NoError(t, err)

	first := make(chan error, 1)
	go func() {
		_, err := s.Check(context.Background(), ann, "192.0.2.1")
		first <- err
	}()
	// However the goroutine above is scheduled, each of these calls must
	// end with its own short context.
	for range 3 {
		done := make(chan error, 1)
		go func() {
			ctx, stop := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer stop()
			d, err := s.Check(ctx, ann, "192.0.2.1")
			assert.False(t, d.Allowed)
			done <- err
		}()
		select {
		case err := <-done:
			assert.ErrorIs(t, err, context.DeadlineExceeded)
		case <-time.After(10 * time.Second):
			t.Fatal("a call with a 200ms context waited for another caller's prepare")
		}
	}
	select {
	case err := <-first:
		t.Fatalf("the call without a deadline ended while the pool had no connection: %v", err)
	default:
	}
	require.NoError(t, held.Close())
	assert.NoError(t, <-first, "it proceeds once a connection is free")
	d, err := s.Check(context.Background(), ann, "192.0.2.1")
	assert.NoError(t, err)
	assert.True(t, d.Allowed)
}
