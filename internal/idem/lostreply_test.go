package idem

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/database"
	"github.com/klozd/api/internal/faultproxy"
	"github.com/klozd/api/internal/pgtest"
)

// proxied returns a store on a new test database reached through a fault
// proxy, with the tests' driver.
func proxied(t *testing.T, cfg StoreConfig) (*Store, *faultproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(pgtest.URL(t))
	require.NoError(t, err)
	p, err := faultproxy.Start(u.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	u.Host = p.Addr()
	db, err := database.OpenConfig(u.String(), database.Config{Driver: pgtest.Driver(), MaxOpenConns: 1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return NewStore(db, cfg), p
}

// The reply to a claim is lost after the claim committed: Begin runs the
// statement again with the same token and finds the claim as its own,
// instead of answering that a request with the key is in flight.
func TestBeginLostReplyFindsItsOwnClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, p := proxied(t, StoreConfig{})
	// Warm the connection: the claim statement is prepared on it, so the
	// next claim is one round trip whose reply carries the commit.
	res, err := s.Begin(ctx, storeReq("warm"))
	require.NoError(t, err)
	require.NotNil(t, res.Claim)

	p.DropNextReply()
	res, err = s.Begin(ctx, storeReq("k"))
	require.NoError(t, err, "the lost reply is settled by the token")
	require.NotNil(t, res.Claim)
	require.NoError(t, s.Complete(ctx, res.Claim, Response{Status: 201, Header: http.Header{}, Body: []byte(`{}`)}))
	var n int
	require.NoError(t, s.db.QueryRowContext(ctx, `SELECT count(*) FROM idempotency_records WHERE "key" = $1`, storedKey("org_1", "k")).Scan(&n))
	assert.Equal(t, 1, n)
}

// A claim whose reply does not come back before the request gives up is
// removed by its token, so the key can be retried at once rather than
// after the lease.
func TestBeginGivenUpIsForgotten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, p := proxied(t, StoreConfig{Lease: time.Minute})
	_, err := s.Begin(ctx, storeReq("warm"))
	require.NoError(t, err)

	p.Delay(time.Second) // replies arrive after the request has given up
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = s.Begin(short, storeReq("k"))
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	p.Delay(0)

	// The claim committed on the server; its removal follows shortly.
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := s.Begin(ctx, storeReq("k"))
		if err == nil {
			require.NotNil(t, res.Claim, "claimed again, long before the lease of a minute")
			return
		}
		require.ErrorIs(t, err, ErrInFlight)
		require.True(t, time.Now().Before(deadline), "the given-up claim was never removed")
	}
}

// The reply to a Release is lost after the row was deleted: the release
// counts as done, with no false "claim not released" alarm, and the key
// runs again at once.
func TestReleaseLostReplyIsNoAlarm(t *testing.T) {
	t.Parallel()
	s, p := proxied(t, StoreConfig{})
	var alarms atomic.Int64
	var events []Event
	h := serve(Config{Store: s, OnEvent: func(e Event) { events = append(events, e) },
		Logger: slog.New(onMessage{"not released", func() { alarms.Add(1) }})},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.DropNextReply() // the next reply is the release's
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
	assert.Equal(t, http.StatusServiceUnavailable, post(h, "k", "{}").Code)
	assert.Zero(t, alarms.Load(), "no false alarm")
	if assert.Len(t, events, 1) {
		assert.Equal(t, EventReleased, events[0].Kind)
	}
	var n int
	require.NoError(t, s.db.QueryRowContext(context.Background(), `SELECT count(*) FROM idempotency_records`).Scan(&n))
	assert.Zero(t, n, "released")
}
