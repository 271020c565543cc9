package idem

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A partition between the instance and the store blocks every renewal:
// the handler is told to stop on the local clock, a margin before its
// lease ends, so that no other request can claim the key while it runs
// un-cancelled. A handler that then returns without an answer gets the
// client a 503 to retry, not a 200.
func TestPartitionStopsHandlerBeforeLeaseEnds(t *testing.T) {
	t.Parallel()
	const lease = 2 * time.Second
	s, p := proxied(t, StoreConfig{Lease: lease})
	type stopped struct {
		at    time.Time
		cause error
	}
	entered, stoppedCh := make(chan struct{}, 1), make(chan stopped, 1)
	h := serve(Config{Store: s, OnEvent: func(Event) {}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
		stoppedCh <- stopped{at: time.Now(), cause: context.Cause(r.Context())}
		// returns without writing
	}))
	done := make(chan int, 1)
	go func() { done <- post(h, "k", "{}").Code }()
	<-entered
	var expires time.Time
	require.NoError(t, s.db.QueryRow(`SELECT "expiresAt" FROM idempotency_records`).Scan(&expires))
	p.Stall() // renewals, and everything else, hang
	st := <-stoppedCh
	p.Heal()
	assert.ErrorIs(t, st.cause, ErrLeaseLost)
	// Stopped at least half the margin before the lease's end by the
	// database's clock (expiresAt, in UTC like the database's clock here):
	// the guard fires at the margin; half of it covers a late timer.
	left := expires.Sub(st.at.UTC())
	assert.Greater(t, left, leaseMargin(lease)/2, "stopped %s before the lease ends", left)
	assert.Equal(t, http.StatusServiceUnavailable, <-done, "a handler stopped without an answer is a 503 to retry")
}
