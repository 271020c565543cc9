package idem

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
)

// The in-flight 409's Retry-After is what is left of the claim's lease,
// rounded up to whole seconds, no less than Config.RetryAfter.
func TestMiddlewareInFlightRetryAfterFollowsLease(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{Now: clk.Now, Lease: 10 * time.Second})
	var calls atomic.Int64
	body := `{"sku":"a"}`
	res, err := s.Begin(context.Background(), Request{Key: "k", Route: route, Fingerprint: Fingerprint(http.MethodPost, route, "/orders", "", "application/json", []byte(body))})
	require.NoError(t, err)
	require.NotNil(t, res.Claim)

	for _, tc := range []struct {
		advance, floor time.Duration
		want           string
	}{
		{0, 0, "10"},
		{3 * time.Second, 0, "7"},
		{2500 * time.Millisecond, 0, "5"}, // 4.5 s left, rounded up
		{0, 6 * time.Second, "6"},         // the floor
		{4 * time.Second, 0, "1"},         // 0.5 s left: the default floor
	} {
		clk.Advance(tc.advance)
		h := serve(Config{Store: s, RetryAfter: tc.floor}, created(&calls))
		w := post(h, "k", body)
		assertProblemType(t, w, http.StatusConflict, ProblemInFlight)
		assert.Equal(t, tc.want, w.Header().Get("Retry-After"), "after %s, floor %s", tc.advance, tc.floor)
	}
	assert.Zero(t, calls.Load())
}

// On the database's clock too: a claim just made has about a lease left.
func TestMiddlewareInFlightRetryAfterOnDatabaseClock(t *testing.T) {
	t.Parallel()
	const lease = 30 * time.Second
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{Lease: lease})
	body := `{"sku":"a"}`
	res, err := s.Begin(context.Background(), Request{Key: "k", Route: route, Fingerprint: Fingerprint(http.MethodPost, route, "/orders", "", "application/json", []byte(body))})
	require.NoError(t, err)
	require.NotNil(t, res.Claim)

	_, err = s.Begin(context.Background(), Request{Key: "k", Route: route, Fingerprint: Fingerprint(http.MethodPost, route, "/orders", "", "application/json", []byte(body))})
	var inFlight *InFlightError
	require.ErrorAs(t, err, &inFlight)
	assert.True(t, errors.Is(err, ErrInFlight))
	assert.Equal(t, res.Claim.LeaseExpiresAt(), inFlight.ExpiresAt)

	w := post(serve(Config{Store: s}, created(new(atomic.Int64))), "k", body)
	assertProblemType(t, w, http.StatusConflict, ProblemInFlight)
	secs, err := strconv.Atoi(w.Header().Get("Retry-After"))
	require.NoError(t, err)
	assert.InDelta(t, 30, secs, 2)
}
