package idem

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klozd/api/internal/pgtest"
)

func storeReq(key string) Request {
	return Request{Key: key, Route: "POST /orders", Tenant: "org_1",
		Fingerprint: Fingerprint("POST", "POST /orders", "", "org_1", "application/json", []byte(`{"a":1}`))}
}

func TestStoreBeginCompleteReplay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	s := NewStore(bounded(t, pgtest.URL(t), 4), StoreConfig{Now: clk.Now})

	res, err := s.Begin(ctx, storeReq("k1"))
	require.NoError(t, err)
	require.NotNil(t, res.Claim)
	assert.Nil(t, res.Replay)
	assert.Equal(t, clk.Now().Add(DefaultLease), res.Claim.LeaseExpiresAt())

	_, err = s.Begin(ctx, storeReq("k1"))
	assert.ErrorIs(t, err, ErrInFlight)

	other := storeReq("k1")
	other.Fingerprint = Fingerprint("POST", "POST /orders", "", "org_1", "application/json", []byte(`{"a":2}`))
	_, err = s.Begin(ctx, other)
	assert.ErrorIs(t, err, ErrMismatch, "mismatch is reported even while in flight")

	body := []byte("{\"id\":\"ord_1\",\"note\":\"<é>\"}\n")
	want := Response{Status: 201, Header: http.Header{"Content-Type": {"application/vnd.api+json"}, "Location": {"/orders/1"}}, Body: body}
	require.NoError(t, s.Complete(ctx, res.Claim, want))

	got, err := s.Begin(ctx, storeReq("k1"))
	require.NoError(t, err)
	require.NotNil(t, got.Replay)
	assert.Nil(t, got.Claim)
	assert.Equal(t, want, *got.Replay)

	_, err = s.Begin(ctx, other)
	assert.ErrorIs(t, err, ErrMismatch)

	// The stored row: hashed key, tenant, expiry = completion + TTL.
	var key, org string
	var expires time.Time
	var ip *string
	require.NoError(t, s.db.QueryRowContext(ctx, `SELECT "key", "organizationId", "expiresAt", "ip" FROM idempotency_records`).Scan(&key, &org, &expires, &ip))
	assert.Equal(t, storedKey("org_1", "k1"), key)
	assert.NotContains(t, key, "k1")
	assert.Equal(t, "org_1", org)
	assert.True(t, expires.Equal(clk.Now().Add(DefaultTTL)), "expiresAt %v", expires)
	assert.Nil(t, ip, "ip is stored only when given")
}

func TestStoreBinaryBody(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	res, err := s.Begin(ctx, storeReq("bin"))
	require.NoError(t, err)
	body := []byte{0x00, 0xff, 0xfe, 'a', 0x80}
	require.NoError(t, s.Complete(ctx, res.Claim, Response{Status: 200, Header: http.Header{"Content-Type": {"application/octet-stream"}}, Body: body}))
	got, err := s.Begin(ctx, storeReq("bin"))
	require.NoError(t, err)
	require.NotNil(t, got.Replay)
	assert.Equal(t, body, got.Replay.Body)
}

func TestStoreReleaseMakesKeyClaimable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	res, err := s.Begin(ctx, storeReq("k"))
	require.NoError(t, err)
	require.NoError(t, s.Release(ctx, res.Claim))
	assert.ErrorIs(t, s.Release(ctx, res.Claim), ErrClaimLost, "a claim is released once")

	again, err := s.Begin(ctx, storeReq("k"))
	require.NoError(t, err)
	assert.NotNil(t, again.Claim)
}

// A claim abandoned by a crashed instance is claimable after its lease, and
// the stale instance can no longer complete or release it: the row's id is
// the fencing token.
func TestStoreLeaseExpiryAndFencing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	clk := newClock()
	a := NewStore(bounded(t, url, 2), StoreConfig{Now: clk.Now, Lease: 30 * time.Second})
	b := NewStore(bounded(t, url, 2), StoreConfig{Now: clk.Now, Lease: 30 * time.Second})

	first, err := a.Begin(ctx, storeReq("k"))
	require.NoError(t, err)
	require.NotNil(t, first.Claim)

	clk.Advance(30*time.Second - time.Millisecond)
	_, err = b.Begin(ctx, storeReq("k"))
	require.ErrorIs(t, err, ErrInFlight, "the lease still runs")

	clk.Advance(time.Millisecond)
	second, err := b.Begin(ctx, storeReq("k"))
	require.NoError(t, err)
	require.NotNil(t, second.Claim, "the abandoned claim is taken over at the end of its lease")

	assert.ErrorIs(t, a.Complete(ctx, first.Claim, Response{Status: 200}), ErrClaimLost)
	assert.ErrorIs(t, a.Release(ctx, first.Claim), ErrClaimLost)

	require.NoError(t, b.Complete(ctx, second.Claim, Response{Status: 201, Body: []byte("second")}))
	got, err := a.Begin(ctx, storeReq("k"))
	require.NoError(t, err)
	require.NotNil(t, got.Replay)
	assert.Equal(t, 201, got.Replay.Status)
	assert.Equal(t, "second", string(got.Replay.Body))
}

func TestStoreExpiredRecordReplaced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{Now: clk.Now, TTL: time.Hour})

	res, err := s.Begin(ctx, storeReq("k"))
	require.NoError(t, err)
	require.NoError(t, s.Complete(ctx, res.Claim, Response{Status: 200, Body: []byte("old")}))

	clk.Advance(time.Hour - time.Millisecond)
	got, err := s.Begin(ctx, storeReq("k"))
	require.NoError(t, err)
	require.NotNil(t, got.Replay, "still within the TTL")

	clk.Advance(time.Millisecond)
	// Expired: absent, even for another payload (no 422).
	other := storeReq("k")
	other.Fingerprint = Fingerprint("POST", "POST /orders", "", "org_1", "", []byte(`{"a":2}`))
	got, err = s.Begin(ctx, other)
	require.NoError(t, err)
	require.NotNil(t, got.Claim, "an expired record is replaced")

	var n int
	require.NoError(t, s.db.QueryRowContext(ctx, `SELECT count(*) FROM idempotency_records`).Scan(&n))
	assert.Equal(t, 1, n, "replaced in place, not duplicated")
}

func TestStoreTenantsAreSeparate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	a := Request{Key: "same", Route: "r", Tenant: "org_a", Fingerprint: Fingerprint("POST", "r", "", "org_a", "", nil)}
	b := Request{Key: "same", Route: "r", Tenant: "org_b", Fingerprint: Fingerprint("POST", "r", "", "org_b", "", nil)}
	ra, err := s.Begin(ctx, a)
	require.NoError(t, err)
	require.NotNil(t, ra.Claim)
	rb, err := s.Begin(ctx, b)
	require.NoError(t, err, "another tenant's claim on the same key neither blocks nor mismatches")
	require.NotNil(t, rb.Claim)
}

func TestStoreDown(t *testing.T) {
	t.Parallel()
	s := NewStore(deadDB(t), StoreConfig{})
	_, err := s.Begin(context.Background(), storeReq("k"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "idem: begin key")
	assert.NotErrorIs(t, err, ErrInFlight)
}

// A second Complete with the same response, after the first committed (its
// reply lost, say), succeeds: Complete is idempotent. Another response is
// still refused.
func TestStoreCompleteIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	res, err := s.Begin(ctx, storeReq("k"))
	require.NoError(t, err)
	resp := Response{Status: 201, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"id":1}`)}
	require.NoError(t, s.Complete(ctx, res.Claim, resp))
	require.NoError(t, s.Complete(ctx, res.Claim, resp), "a retry after a committed Complete succeeds")

	other := resp
	other.Body = []byte(`{"id":2}`)
	assert.ErrorIs(t, s.Complete(ctx, res.Claim, other), ErrClaimLost, "a different response is not stored over the first")

	got, err := s.Begin(ctx, storeReq("k"))
	require.NoError(t, err)
	require.NotNil(t, got.Replay)
	assert.Equal(t, resp, *got.Replay)
}

// databaseTime reads the database's clock as the store keeps time: UTC, in
// milliseconds.
func databaseTime(t *testing.T, s *Store) time.Time {
	t.Helper()
	var now time.Time
	require.NoError(t, s.db.QueryRow(`SELECT date_trunc('milliseconds', clock_timestamp() AT TIME ZONE 'UTC')`).Scan(&now))
	return now.UTC()
}

// Without an injected clock, every lease and TTL is written and judged by
// the database's clock, never an instance's own: two instances whose clocks
// disagree (by more than the lease, say) still agree on whether a claim is
// live, so neither takes over the other's claim early.
func TestStoreUsesDatabaseClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	a := NewStore(bounded(t, url, 2), StoreConfig{Lease: time.Minute, TTL: time.Hour})
	b := NewStore(bounded(t, url, 2), StoreConfig{Lease: time.Minute, TTL: time.Hour})
	row := func() (created, expires time.Time) {
		t.Helper()
		require.NoError(t, a.db.QueryRow(`SELECT "createdAt", "expiresAt" FROM idempotency_records`).Scan(&created, &expires))
		return created.UTC(), expires.UTC()
	}

	before := databaseTime(t, a)
	ra, err := a.Begin(ctx, storeReq("k"))
	after := databaseTime(t, a)
	require.NoError(t, err)
	require.NotNil(t, ra.Claim)
	created, expires := row()
	assert.False(t, created.Before(before) || created.After(after), "createdAt %v is the database's time, in [%v, %v]", created, before, after)
	assert.Equal(t, created.Add(time.Minute), expires)
	assert.Equal(t, expires, ra.Claim.LeaseExpiresAt())

	_, err = b.Begin(ctx, storeReq("k"))
	require.ErrorIs(t, err, ErrInFlight, "the lease runs by the database's clock")

	// Ten seconds before its end by the database's clock, the lease still
	// runs; at its end, it is over for every instance.
	_, err = a.db.Exec(`UPDATE idempotency_records SET "expiresAt" = ` + dbNow + ` + interval '10 seconds'`)
	require.NoError(t, err)
	_, err = b.Begin(ctx, storeReq("k"))
	require.ErrorIs(t, err, ErrInFlight)
	_, err = a.db.Exec(`UPDATE idempotency_records SET "expiresAt" = ` + dbNow)
	require.NoError(t, err)
	rb, err := b.Begin(ctx, storeReq("k"))
	require.NoError(t, err)
	require.NotNil(t, rb.Claim, "taken over once the database's clock reaches the lease end")

	before = databaseTime(t, b)
	require.NoError(t, b.Complete(ctx, rb.Claim, Response{Status: 201}))
	after = databaseTime(t, b)
	_, expires = row()
	assert.False(t, expires.Before(before.Add(time.Hour)) || expires.After(after.Add(time.Hour)),
		"expiresAt %v is completion + TTL by the database's clock, in [%v, %v] + 1h", expires, before, after)
	assert.ErrorIs(t, a.Complete(ctx, ra.Claim, Response{Status: 200}), ErrClaimLost)
}

// Header values are replayed byte for byte, obs-text (bytes that are not
// UTF-8) included. Such a header needs a version 2 envelope; any other
// response is still stored as version 1, and version 1 is still read.
func TestStoreHeaderBytesRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := NewStore(bounded(t, pgtest.URL(t), 2), StoreConfig{})
	stored := func(key string) string {
		t.Helper()
		var env string
		require.NoError(t, s.db.QueryRow(`SELECT "responseBodyJson" FROM idempotency_records WHERE "key" = $1`, storedKey("org_1", key)).Scan(&env))
		return env
	}

	res, err := s.Begin(ctx, storeReq("obs-text"))
	require.NoError(t, err)
	want := Response{Status: 201, Header: http.Header{
		"Location":     {"/files/caf\xe9", "/files/plain"},
		"Content-Type": {"text/plain; charset=iso-8859-1"},
	}, Body: []byte("caf\xe9")}
	require.NoError(t, s.Complete(ctx, res.Claim, want))
	got, err := s.Begin(ctx, storeReq("obs-text"))
	require.NoError(t, err)
	require.NotNil(t, got.Replay)
	assert.Equal(t, want, *got.Replay)
	assert.True(t, strings.HasPrefix(stored("obs-text"), `{"v":2,`), stored("obs-text"))

	res, err = s.Begin(ctx, storeReq("utf-8"))
	require.NoError(t, err)
	require.NoError(t, s.Complete(ctx, res.Claim, Response{Status: 201, Header: http.Header{"Location": {"/files/café"}}}))
	assert.True(t, strings.HasPrefix(stored("utf-8"), `{"v":1,`), stored("utf-8"))

	// A record written as version 1, as by an earlier release.
	_, err = s.db.Exec(`UPDATE idempotency_records SET "responseBodyJson" = $1 WHERE "key" = $2`,
		`{"v":1,"header":{"Location":["/orders/1"]},"body":"{\"id\":1}"}`, storedKey("org_1", "utf-8"))
	require.NoError(t, err)
	got, err = s.Begin(ctx, storeReq("utf-8"))
	require.NoError(t, err)
	require.NotNil(t, got.Replay)
	assert.Equal(t, Response{Status: 201, Header: http.Header{"Location": {"/orders/1"}}, Body: []byte(`{"id":1}`)}, *got.Replay)
}

// The statements take whole milliseconds, so the configured durations are
// truncated to them: the local lease deadline then never runs past the
// lease the database wrote.
func TestStoreConfigDurationsAreWholeMilliseconds(t *testing.T) {
	t.Parallel()
	cfg := StoreConfig{Lease: 10*time.Second + 500*time.Microsecond, TTL: time.Hour + time.Nanosecond}.resolve()
	assert.Equal(t, 10*time.Second, cfg.Lease)
	assert.Equal(t, time.Hour, cfg.TTL)
}
